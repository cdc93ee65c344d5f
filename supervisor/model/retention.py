"""Retention: the daemon runs for months, so what it remembers of a queue stays bounded. Finished
executions and items no listing shows any more are kept for `retention_seconds`, and at most
`retention_max` of each; pending items are never dropped for the count."""

from __future__ import annotations

from supervisor.model.items import ItemState
from supervisor.model.queue import QueueState


def prune(state: QueueState, now: float) -> None:
    """Drop finished executions and gone items past retention."""
    policy = state.policy
    keep_after = now - policy.retention_seconds
    finished = sorted((e for e in state.executions.values() if not e.in_flight), key=lambda e: e.finished or e.created)
    excess = max(0, len(finished) - policy.retention_max)
    for index, execution in enumerate(finished):
        if index < excess or (execution.finished or execution.created) < keep_after:
            del state.executions[execution.name]
    for item_id in [i.id for i in state.items.values() if i.last_seen < keep_after]:
        del state.items[item_id]
    if len(state.items) > policy.retention_max * 2:
        oldest = sorted(state.items.values(), key=lambda i: i.last_seen)
        for item in oldest[: len(state.items) - policy.retention_max * 2]:
            if item.state is not ItemState.PENDING:
                del state.items[item.id]
