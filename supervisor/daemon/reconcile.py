"""One reconcile of one queue: ask the model how many executions to start, and start them
(docs/architecture.md, Dispatch).

RunJob is never retried blindly: an unknown result holds the queue until the next executions
listing shows whether an execution exists, and a refusal backs the queue off (the model decides how
long). The decision is logged at debug level whenever there is work, with the term that decided.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import structlog

from launch_supervisor.daemon import clock
from launch_supervisor.engines.dispatch.cloudrun import CloudRunDispatcher, DispatchRefusedError, DispatchUnknownError
from launch_supervisor.model.queue import QueueState
from launch_supervisor.surface.metrics import Metrics
from launch_supervisor.surface.report import report

log = structlog.get_logger("launch_supervisor")


async def reconcile(
    queue: QueueState, dispatcher: CloudRunDispatcher, metrics: Metrics, running: Callable[[], bool]
) -> None:
    """Start what the model decides, while `running()` holds (the daemon stops, the queue goes)."""
    name = queue.policy.name
    started, now = time.monotonic(), clock.now()
    decision = queue.decide(now)
    metrics.reconcile_duration.observe(time.monotonic() - started)
    if decision.want > 0:  # it starts work, or holds some back
        log.debug(
            "dispatch.decision",
            queue=name,
            start=decision.start,
            want=decision.want,
            pending=decision.pending,
            why=decision.why,
            retry_in_s=None if decision.not_before is None else round(decision.not_before - now, 1),
        )
    policy = queue.policy
    for _ in range(decision.start):
        if not running():
            return
        dispatch_id = uuid.uuid4().hex
        try:
            execution = await dispatcher.run(
                policy.launcher_job, name, policy.entity, dispatch_id, policy.execution_timeout
            )
        except DispatchUnknownError as exc:
            queue.dispatch_unknown(clock.now())
            metrics.dispatches.labels(name, "unknown").inc()
            log.warning("dispatch.unknown", queue=name, dispatch_id=dispatch_id, error=str(exc))
            return
        except DispatchRefusedError as exc:
            metrics.dispatches.labels(name, "refused").inc()
            report(metrics, queue.dispatch_refused(clock.now(), str(exc)))
            return
        facts = queue.dispatched(execution, clock.now())
        metrics.dispatches.labels(name, "started").inc()
        log.info(
            "dispatch.started",
            queue=name,
            execution=execution,
            dispatch_id=dispatch_id,
            probe=decision.probe,
            pending=decision.pending,
        )
        report(metrics, facts)
