"""Retention: the daemon runs for months, so what it remembers of a queue stays bounded. Finished
executions and items no listing shows any more are kept for `retention_seconds`, and at most
`retention_max` of each; pending items are never dropped for the count.

An item whose CustomJob still runs is kept however long that takes (and is not counted): the listing
shows only the queue's first 100 items, so a training job may outlive every listing of its item, and
when it fails, the item must still be known to be failed."""

from __future__ import annotations

from collections.abc import Container

from launch_supervisor.model.items import ItemState
from launch_supervisor.model.queue import QueueState


def prune(state: QueueState, now: float, held: Container[str] = ()) -> None:
    """Drop finished executions and gone items past retention; `held` names the CustomJobs whose
    items are kept (running, or ended badly and their item not failed yet)."""
    policy = state.policy
    keep_after = now - policy.retention_seconds
    finished = sorted((e for e in state.executions.values() if not e.in_flight), key=lambda e: e.finished or e.created)
    excess = max(0, len(finished) - policy.retention_max)
    for index, execution in enumerate(finished):
        if index < excess or (execution.finished or execution.created) < keep_after:
            del state.executions[execution.name]
    kept = {i.id for i in state.items.values() if i.vertex_job in held and not i.failed_by_supervisor}
    for item_id in [i.id for i in state.items.values() if i.last_seen < keep_after and i.id not in kept]:
        del state.items[item_id]
    others = [i for i in state.items.values() if i.id not in kept]
    if len(others) > policy.retention_max * 2:
        oldest = sorted(others, key=lambda i: i.last_seen)
        for item in oldest[: len(others) - policy.retention_max * 2]:
            if item.state is not ItemState.PENDING:
                del state.items[item.id]
