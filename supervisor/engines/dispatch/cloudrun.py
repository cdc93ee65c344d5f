"""Starting one launcher execution per dispatch: Cloud Run RunJob with overrides.

RunJob returns a long-running operation at once; its metadata is the new Execution, so the
execution's name is known without waiting (awaiting `op.result()` would wait for the execution to
*finish*). RunJob is never retried automatically: a retried call can start a second execution.
When the outcome is unknown (deadline, unavailable), the caller must find out from the next
executions listing before dispatching again.

Stopping one: CancelExecution, also a long-running operation whose result is the execution once it
has stopped (after the container's grace period). It is never awaited either: the executions
listing shows the end.
"""

from __future__ import annotations

import time
from datetime import timedelta

from google.api_core import exceptions as gexc
from google.cloud import run_v2

from launch_supervisor.calls.gcp import cancel_call
from launch_supervisor.calls.observe import ObserveCall, ignore_call

DISPATCH_ENV = "LAUNCH_SUPERVISOR_DISPATCH_ID"

_UNKNOWN = (gexc.DeadlineExceeded, gexc.ServiceUnavailable, gexc.InternalServerError, gexc.Aborted, gexc.Unknown)


class DispatchRefusedError(Exception):
    """RunJob was refused: no execution was created. Retrying at once would be refused the same way:
    the queue backs off (`QueueState.dispatch_refused`)."""


class DispatchUnknownError(Exception):
    """RunJob may or may not have created an execution."""


class CloudRunDispatcher:
    def __init__(self, jobs: run_v2.JobsAsyncClient, timeout: float, observe: ObserveCall = ignore_call) -> None:
        self._jobs = jobs
        self._timeout = timeout
        self._observe = observe

    async def run(self, job: str, queue: str, entity: str, dispatch_id: str, task_timeout: float) -> str:
        """Start one execution of `job` for `queue`; returns the execution's resource name."""
        request = run_v2.RunJobRequest(
            name=job,
            overrides=run_v2.RunJobRequest.Overrides(
                container_overrides=[
                    run_v2.RunJobRequest.Overrides.ContainerOverride(
                        args=["-q", queue, "-e", entity, "--max-jobs", "1"],
                        env=[run_v2.EnvVar(name=DISPATCH_ENV, value=dispatch_id)],
                    )
                ],
                task_count=1,
                timeout=timedelta(seconds=task_timeout),
            ),
        )
        started = time.monotonic()
        try:
            operation = await self._jobs.run_job(request=request, timeout=self._timeout, retry=None)
        except _UNKNOWN as exc:
            self._observe("cloudrun", "RunJob", exc.__class__.__name__, time.monotonic() - started)
            raise DispatchUnknownError(f"RunJob for {job}: {exc.__class__.__name__}: {exc.message}") from exc
        except gexc.GoogleAPICallError as exc:
            self._observe("cloudrun", "RunJob", exc.__class__.__name__, time.monotonic() - started)
            raise DispatchRefusedError(f"RunJob for {job}: {exc.__class__.__name__}: {exc.message}") from exc
        self._observe("cloudrun", "RunJob", "OK", time.monotonic() - started)
        execution = operation.metadata
        if execution is None or not getattr(execution, "name", ""):
            raise DispatchUnknownError(f"RunJob for {job} returned no execution in its metadata")
        return str(execution.name)


class CloudRunCanceller:
    def __init__(
        self, executions: run_v2.ExecutionsAsyncClient, timeout: float, observe: ObserveCall = ignore_call
    ) -> None:
        self._executions = executions
        self._timeout = timeout
        self._observe = observe

    async def cancel(self, execution: str) -> bool:
        """Ask Cloud Run to stop `execution` (SIGTERM, then SIGKILL after its grace). True when it
        accepted, False when there is nothing to cancel; any other error raises GoogleAPICallError.
        Not retried automatically: the caller asks again on a later tick if it still should."""
        request = run_v2.CancelExecutionRequest(name=execution)
        return await cancel_call(
            self._observe,
            "cloudrun",
            "CancelExecution",
            lambda: self._executions.cancel_execution(request=request, timeout=self._timeout, retry=None),
        )
