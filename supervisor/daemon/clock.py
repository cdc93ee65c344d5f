"""The daemon's clock: the wall time at start, advanced by the monotonic clock since.

The model compares times it was given with each other and with Google's timestamps (an execution's
creation, a CustomJob's). A wall clock that jumps (NTP stepping it, a suspended VM, an operator)
would move every deadline and window the model keeps: a jump back held dispatch for as long as the
jump. This clock never jumps; it only drifts as slowly as the machine's oscillator. Prometheus'
timestamps (`last_successful_poll_timestamp_seconds`) stay on the wall clock, as Prometheus reads
them against its own.
"""

from __future__ import annotations

import time

_EPOCH = time.time() - time.monotonic()


def now() -> float:
    """Seconds since the epoch, as the wall clock said at start plus the monotonic time since."""
    return _EPOCH + time.monotonic()
