"""The launcher job's CPU and memory, read once per queue: what its executions cost by
(docs/architecture.md, Cost). Unreadable (a missing `run.jobs.get`, a limit that is no quantity),
the executions are followed all the same and their cost is not counted until a later read succeeds."""

from __future__ import annotations

import structlog
from google.api_core.exceptions import GoogleAPICallError

from launch_supervisor.engines.trackers.launcher import LauncherReader, LimitError
from launch_supervisor.model.state import State

log = structlog.get_logger("launch_supervisor")


async def read_size(state: State, queue: str, reader: LauncherReader) -> None:
    """Read the queue's launcher job size into the state, unless known; an error is logged when new."""
    spending = state.queues[queue].spending
    if spending.launcher_size is not None:
        return
    job = state.queues[queue].policy.launcher_job
    try:
        vcpu, gib = await reader.size(job)
    except (GoogleAPICallError, LimitError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        if error != spending.size_error:
            log.warning("launcher.size_unreadable", queue=queue, job=job, error=error)
        spending.size_error = error
        return
    state.launcher_read(queue, vcpu, gib)
    log.info("launcher.size", queue=queue, vcpu=vcpu, gib=round(gib, 3))
