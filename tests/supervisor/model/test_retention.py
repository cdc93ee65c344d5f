"""Retention keeps what the daemon remembers of a queue bounded."""

from __future__ import annotations

import pytest

from launch_supervisor.model.items import ItemState
from launch_supervisor.model.observations import ExecutionSeen, ItemSeen
from launch_supervisor.model.retention import prune
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


def test_an_item_whose_job_still_runs_outlives_retention() -> None:
    """A training job outlives every listing of its item: the item is kept while its job is held,
    and dropped like any other once it is not."""
    state = ready(retention_seconds=100.0, retention_max=1)
    state.observe_items([ItemSeen(i, ItemState.CLAIMED, f"run-{i}") for i in "abc"], 0.0)
    state.items["a"].vertex_job = "job-a"
    prune(state, 1000.0, held={"job-a"})
    assert list(state.items) == ["a"]
    prune(state, 1000.0, held=set())
    assert state.items == {}
