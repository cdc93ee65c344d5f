"""Retention keeps what the daemon remembers of a queue bounded."""

from __future__ import annotations

import pytest

from supervisor.model.observations import ExecutionSeen
from supervisor.model.retention import prune
from tests.supervisor.model.test_queue import ex, ready


@pytest.mark.parametrize("count", [10, 200])
def test_retention_bounds_memory(count: int) -> None:
    """Finished executions beyond retention_max, or older than retention_seconds, are dropped."""
    state = ready(retention_max=50, retention_seconds=100.0)
    for n in range(count):
        state.dispatched(ex(n), float(n))
    state.observe_executions([ExecutionSeen(ex(n), "succeeded", n, n, n + 1.0) for n in range(count)], count + 1.0)
    prune(state, count + 1.0)
    assert len(state.executions) == min(count, 50)
    prune(state, count + 200.0)
    assert state.executions == {}
