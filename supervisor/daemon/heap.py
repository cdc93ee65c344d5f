"""Giving memory the daemon freed back to the system (docs/reliability.md, Soak).

The daemon's threads (gRPC's, Pub/Sub's, anyio's workers) allocate through glibc, which keeps an
arena per thread and, in each, the pages of objects long freed: a full Vertex listing parses every
CustomJob of the lookback at once, and Pub/Sub messages come and go on other threads. RSS then
creeps up with traffic beyond what is kept. `malloc_trim(0)` returns the free pages of every
arena; it runs at most once a minute (the first a minute after the start), after a Vertex tick.
Where the C library is not glibc (musl, macOS) there is no such call, and nothing is done. The
systemd unit also caps the arenas (MALLOC_ARENA_MAX).
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

TRIM_EVERY = 60.0
"""Seconds between two trims at most."""


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class HeapTrim:
    def __init__(self, every: float = TRIM_EVERY) -> None:
        self.every = every
        self._trim = _malloc_trim()
        self._last = time.monotonic()
        """The first trim comes `every` seconds after the start, once the start-up listings are done."""

    @property
    def available(self) -> bool:
        return self._trim is not None

    def maybe(self) -> bool:
        """Trim if the last trim was `every` seconds ago or more; True when it ran."""
        now = time.monotonic()
        if self._trim is None or now - self._last < self.every:
            return False
        self._last = now
        self._trim(0)
        return True
