"""After each CustomJob listing: cancel the CustomJobs of runs stopped in W&B (docs/architecture.md,
Data flow).

The model names the runs to ask about (one W&B query per project) and the jobs to cancel
(`State.stop_queries`, `State.job_cancels`) and records the answers, so each job is cancelled once.
W&B failing to answer changes nothing: the runs are asked about again at the next listing.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from launch_supervisor.clients import Clients
from launch_supervisor.daemon import clock
from launch_supervisor.daemon.chores import try_cancel
from launch_supervisor.engines.sources.wandb import WandbError
from launch_supervisor.model.state import State
from launch_supervisor.model.stops import CancelJob
from launch_supervisor.surface.metrics import Metrics

log = structlog.get_logger("launch_supervisor")


async def cancel_stopped_runs(state: State, clients: Clients, metrics: Metrics, running: Callable[[], bool]) -> None:
    for query in state.stop_queries():
        if not running():
            return
        try:
            stopped = await clients.wandb.stopped_runs(query.entity, query.project, query.runs)
        except WandbError as exc:
            log.warning("wandb.stop_status_failed", entity=query.entity, project=query.project, error=str(exc))
            continue
        state.runs_read(query, stopped, clock.now())
    for action in state.job_cancels(clock.now()):
        if not running():
            return
        await _cancel(state, action, clients, metrics)


async def _cancel(state: State, action: CancelJob, clients: Clients, metrics: Metrics) -> None:
    await try_cancel(
        "vertex",
        lambda: clients.vertex.cancel(action.custom_job),
        lambda error: state.job_cancel_failed(action, error),
        lambda accepted: state.job_cancel_answered(action, accepted),
        metrics,
        queue=action.queue,
        custom_job=action.custom_job,
        run=action.run_id,
    )
