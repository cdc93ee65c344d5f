"""After each CustomJob listing, per queue: fail the items nothing will ever run, cancel the
executions still running after they submitted (docs/architecture.md, Data flow), and read the
launcher job's size until it is known (what its executions cost by).

The model names the calls (`State.chores`) and records their answers, so each item is failed once
and each execution cancelled once; a call that fails is tried again at the next listing, and its
error is logged when it is new.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from google.api_core.exceptions import GoogleAPICallError

from launch_supervisor.clients import Clients
from launch_supervisor.daemon import clock
from launch_supervisor.daemon.launcher import read_size
from launch_supervisor.model.facts import Fact
from launch_supervisor.model.remedies import CancelExecution, FailItem
from launch_supervisor.model.state import State
from launch_supervisor.surface.metrics import Metrics
from launch_supervisor.surface.report import report

log = structlog.get_logger("launch_supervisor")


async def do_chores(state: State, name: str, clients: Clients, metrics: Metrics, running: Callable[[], bool]) -> None:
    await read_size(state, name, clients.launcher)
    chores = state.chores(name, clock.now())
    report(metrics, chores.facts)
    for action in chores.fail:
        await _fail(state, name, action, clients, metrics)
    for action in chores.stranded:
        if action.source:  # the run id: look for its CustomJob however old, and take it in
            found = await clients.vertex.find_run(action.source)
            report(metrics, state.observe_vertex(found, clock.now(), horizon=0.0))
        if state.still_stranded(name, action.item_id):
            await _fail(state, name, action, clients, metrics)
    for cancel in chores.cancel:
        if not running():
            return
        await _cancel(state, cancel, clients, metrics)


async def _fail(state: State, name: str, action: FailItem, clients: Clients, metrics: Metrics) -> None:
    if not await clients.wandb.fail_item(action.item_id, action.message, action.stage):
        return
    state.item_failed(name, action.item_id)
    metrics.items_failed.labels(name, action.reason).inc()
    log.warning(
        "item.failed_by_supervisor",
        queue=name,
        item=action.item_id,
        reason=action.reason,
        source=action.source,
        message=action.message,
    )


async def _cancel(state: State, action: CancelExecution, clients: Clients, metrics: Metrics) -> None:
    await try_cancel(
        "execution",
        lambda: clients.canceller.cancel(action.execution),
        lambda error: state.cancel_failed(action, error),
        lambda accepted: state.cancel_answered(action, accepted),
        metrics,
        queue=action.queue,
        execution=action.execution,
    )


async def try_cancel(
    what: str,
    call: Callable[[], Awaitable[bool]],
    failed: Callable[[str], bool],
    answered: Callable[[bool], list[Fact]],
    metrics: Metrics,
    **fields: str | None,
) -> None:
    """One cancel call (`what`: `execution` or `vertex`, the log events' prefix). The model keeps an
    error, said to be new or not (logged only when new; tried again at the next tick), and records
    an answer for good: accepted, or nothing to cancel."""
    try:
        accepted = await call()
    except GoogleAPICallError as exc:
        error = f"{type(exc).__name__}: {exc}"
        if failed(error):
            log.warning(f"{what}.cancel_failed", error=error, **fields)
        return
    if not accepted:
        log.info(f"{what}.cancel_moot", **fields)
    report(metrics, answered(accepted))
