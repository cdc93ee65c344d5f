"""A queue's circuit breaker: stop starting executions that will only bail out again
(docs/architecture.md, State machines).

Categories that need a person (`permission`, `invalid_spec`, `not_found`, `image_pull`) open it at
the first bailout; the others open it after `threshold` bailouts within `window` seconds. Open →
after `cooldown` (doubling each time it reopens, capped) → half-open: one probe execution → closed
when a job is submitted, reopened on a bailout. Time is passed in; nothing here sleeps.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from launch_supervisor.model.transitions import allowed

DISPATCH_REFUSED = "dispatch_refused"
"""Cloud Run refused RunJob (no execution was created).

Counted, not immediate, though a persisting refusal (PERMISSION_DENIED, NOT_FOUND for the launcher
job) needs a person like `permission` or `not_found` does. Those open the breaker at once because
each costs a whole execution and a popped item; a refusal costs one API call, and the queue's
refusal backoff already spaces those out. A refusal can also pass by itself (RESOURCE_EXHAUSTED from
a rate limit), and one such should not pause the queue for a cooldown. A persisting one reaches the
threshold soon all the same: with the default threshold of 3, some 15 s after the first refusal.
"""
UNSEEN_PROBE = "(unseen)"
"""`Breaker.probe` while the half-open probe's RunJob had an unknown result: it may have started, so
no other execution starts until the next executions listing shows whether it did."""
IMMEDIATE = frozenset({"permission", "invalid_spec", "not_found", "image_pull"})
COUNTED = frozenset({"quota", "network", "http", "crash", "repeated_failure", "wandb", "timeout", DISPATCH_REFUSED})
CATEGORIES = tuple(sorted(IMMEDIATE | COUNTED))


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


TRANSITIONS = {
    BreakerState.CLOSED: frozenset({BreakerState.OPEN}),
    BreakerState.OPEN: frozenset({BreakerState.HALF_OPEN, BreakerState.CLOSED}),
    BreakerState.HALF_OPEN: frozenset({BreakerState.OPEN, BreakerState.CLOSED}),
}


@dataclass(slots=True)
class Breaker:
    threshold: int
    window: float
    base_cooldown: float
    max_cooldown: float
    state: BreakerState = BreakerState.CLOSED
    cooldown: float = 0.0
    opened_at: float | None = None
    reason: str | None = None
    probe: str | None = None
    """The half-open probe execution, once dispatched."""
    recent: deque[tuple[float, str]] = field(default_factory=deque)

    def configure(self, threshold: int, window: float, cooldown: float, max_cooldown: float) -> None:
        """New settings (a reload); the state and the recent bailouts stay."""
        self.threshold, self.window, self.base_cooldown, self.max_cooldown = threshold, window, cooldown, max_cooldown

    def _move(self, state: BreakerState) -> None:
        if allowed(TRANSITIONS, self.state, state):
            self.state = state

    def _open(self, now: float, reason: str) -> None:
        if self.state is BreakerState.CLOSED:
            self.cooldown = self.base_cooldown
        else:
            self.cooldown = min(self.max_cooldown, max(self.cooldown, self.base_cooldown) * 2)
        self._move(BreakerState.OPEN)
        self.opened_at = now
        self.reason = reason
        self.probe = None
        self.recent.clear()

    def bailout(self, now: float, category: str, execution: str | None = None) -> bool:
        """Record a bailout; True when it opened (or reopened) the breaker."""
        if self.state is BreakerState.OPEN:
            return False
        if self.state is BreakerState.HALF_OPEN:
            if self.probe is None or execution == self.probe:
                self._open(now, f"probe bailed out ({category})")
                return True
            return False
        if category in IMMEDIATE:
            self._open(now, f"{category} bailout needs a person")
            return True
        self.recent.append((now, category))
        while self.recent and self.recent[0][0] <= now - self.window:
            self.recent.popleft()
        if len(self.recent) >= self.threshold:
            self._open(now, f"{len(self.recent)} bailouts within {self.window:g}s")
            return True
        return False

    def submitted(self) -> None:
        """A job reached Vertex AI: a half-open breaker closes."""
        if self.state is BreakerState.HALF_OPEN:
            self.close()

    def close(self) -> None:
        """Closed by hand (`resume`) or by a successful probe."""
        if self.state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)
        self.cooldown = 0.0
        self.opened_at = None
        self.reason = None
        self.probe = None
        self.recent.clear()

    def tick(self, now: float, probe_over: bool = False) -> None:
        """Open → half-open once the cooldown has passed. Half-open with `probe_over` (the probe
        ended without a verdict: it found no item, or was cancelled first): another probe may go,
        or the queue would stay half-open, starting nothing, until someone resumes it."""
        if self.state is BreakerState.OPEN and self.opened_at is not None and now >= self.opened_at + self.cooldown:
            self._move(BreakerState.HALF_OPEN)
            self.probe = None
        elif self.state is BreakerState.HALF_OPEN and probe_over:
            self.probe = None

    def allowance(self) -> int | None:
        """How many executions may start: None for no limit, 0 while open, 1 for the probe."""
        if self.state is BreakerState.CLOSED:
            return None
        if self.state is BreakerState.HALF_OPEN and self.probe is None:
            return 1
        return 0

    def reopens_at(self) -> float | None:
        if self.state is BreakerState.OPEN and self.opened_at is not None:
            return self.opened_at + self.cooldown
        return None
