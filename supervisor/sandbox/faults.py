"""Failures on demand for the stand-ins: an error status or a delay for the next N calls of a method."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Fault:
    status: int | str | None = None
    """HTTP status (W&B) or grpc.StatusCode name (Google) to answer with."""
    delay: float = 0.0
    """Seconds to wait before answering (to trip client timeouts)."""
    body: str | None = None
    """Answer 200 with this raw body instead (W&B): malformed JSON, missing fields, wrong types."""
    late: bool = False
    """Do the work first, then delay or fail the answer: the call took effect but its answer is
    lost, as when a deadline passes on the client while the server goes on."""


@dataclass(slots=True)
class Faults:
    """Planned faults per method, consumed in order; every call is counted."""

    planned: dict[str, deque[Fault]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)

    def add(self, method: str, fault: Fault, times: int = 1) -> None:
        self.planned.setdefault(method, deque()).extend([fault] * times)

    def take(self, method: str) -> Fault | None:
        self.calls[method] += 1
        queue = self.planned.get(method)
        return queue.popleft() if queue else None
