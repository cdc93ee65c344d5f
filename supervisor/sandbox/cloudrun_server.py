"""A Cloud Run stand-in: Jobs.RunJob/GetJob, Executions.List/Get/Cancel and Operations.GetOperation.
GetJob answers with the job's container limits (`limits`), what its executions cost by.

RunJob returns at once with the new Execution in the operation's metadata, like the real API; the
execution then runs as a `Behaviour` decides (a simulation, or a real local process in the
sandbox). The task timeout from the overrides is enforced.

CancelExecution works as Cloud Run's does: it answers at once with a long-running operation whose
metadata is the Execution; the execution shows a `Completed` condition with reason CANCELLING while
its work is stopped (a process gets SIGTERM, then SIGKILL after the grace), then ends with
CONDITION_FAILED and reason CANCELLED. An execution that has ended cannot be cancelled
(FAILED_PRECONDITION); one already cancelling gets another operation and nothing else.
"""

from __future__ import annotations

import secrets
import string
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import grpc
from anyio.abc import TaskGroup, TaskStatus
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2

from launch_supervisor.sandbox import grpc_server
from launch_supervisor.sandbox.faults import Faults

C: Any = run_v2.Condition


@dataclass(slots=True)
class ExecutionHandle:
    """What a behaviour sees of one execution, and how it reports progress."""

    name: str
    job: str
    args: list[str]
    env: dict[str, str]
    timeout: float
    stand_in: CloudRunStandIn
    finished: bool = False
    cancel_scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def running(self) -> None:
        self.stand_in.mark_running(self.name)

    def finish(self, outcome: str, message: str = "") -> None:
        """outcome: succeeded | failed | cancelled."""
        if not self.finished:
            self.finished = True
            self.stand_in.mark_finished(self.name, outcome, message)

    def arg(self, *flags: str) -> str | None:
        for i, arg in enumerate(self.args[:-1]):
            if arg in flags:
                return self.args[i + 1]
        return None


class Behaviour(Protocol):
    async def run(self, handle: ExecutionHandle) -> None:
        """Run one execution to its end, calling handle.running() and handle.finish()."""


class CloudRunStandIn:
    def __init__(self, jobs: Sequence[str], behaviour: Behaviour, default_timeout: float = 600.0) -> None:
        self.jobs = dict.fromkeys(jobs, 0)
        self.behaviour = behaviour
        self.default_timeout = default_timeout
        self.executions: dict[str, run_v2.Execution] = {}
        self.handles: dict[str, ExecutionHandle] = {}
        self.operations: dict[str, str] = {}
        self.faults = Faults()
        self.limits = {"cpu": "2", "memory": "2Gi"}
        """Each launcher job's container limits, as GetJob returns them: deploy/gcp/launcher-job.yaml's."""
        self.run_job_times: list[float] = []
        """time.monotonic() at the arrival of each RunJob (for latency measurements)."""
        self.cancels: list[str] = []
        """The execution of each CancelExecution that was accepted, repeats included."""
        self.page_cap: int | None = None
        """Most executions per ListExecutions page, whatever the client asks (to force paging)."""
        self._tg: TaskGroup | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def mark_running(self, name: str) -> None:
        execution = self.executions[name]
        if not execution.start_time:
            execution.start_time = datetime.now(UTC)
        execution.running_count = 1

    def mark_cancelling(self, name: str) -> None:
        execution = self.executions[name]
        now = datetime.now(UTC)
        execution.reconciling = True
        execution.update_time = now
        execution.conditions = [
            C(
                type_="Completed",
                state=C.State.CONDITION_RECONCILING,
                execution_reason=C.ExecutionReason.CANCELLING,
                message="Execution is being cancelled",
                last_transition_time=now,
            )
        ]

    def mark_finished(self, name: str, outcome: str, message: str = "") -> None:
        execution = self.executions[name]
        now = datetime.now(UTC)
        execution.running_count = 0
        execution.reconciling = False
        execution.completion_time = now
        execution.update_time = now
        state = C.State.CONDITION_SUCCEEDED if outcome == "succeeded" else C.State.CONDITION_FAILED
        condition = C(type_="Completed", state=state, message=message, last_transition_time=now)
        if outcome == "cancelled":
            condition.execution_reason = C.ExecutionReason.CANCELLED
            execution.cancelled_count = 1
        elif outcome == "succeeded":
            execution.succeeded_count = 1
        else:
            condition.execution_reason = C.ExecutionReason.NON_ZERO_EXIT_CODE
            execution.failed_count = 1
        execution.conditions = [condition]

    def status(self, name: str) -> str:
        """pending | running | succeeded | failed | cancelled, as the supervisor classifies it."""
        execution = self.executions[name]
        for condition in execution.conditions:
            if condition.type_ == "Completed":
                if condition.state == C.State.CONDITION_SUCCEEDED:
                    return "succeeded"
                if condition.state == C.State.CONDITION_FAILED:
                    if condition.execution_reason == C.ExecutionReason.CANCELLED:
                        return "cancelled"
                    return "failed"
        return "running" if execution.start_time else "pending"

    async def _execute(self, handle: ExecutionHandle) -> None:
        with handle.cancel_scope:
            with anyio.move_on_after(handle.timeout) as timeout:
                await self.behaviour.run(handle)
            if timeout.cancelled_caught:
                handle.finish("failed", f"Task {handle.name} timed out after {handle.timeout:g}s")
        if handle.cancel_scope.cancelled_caught:
            handle.finish("cancelled", "Execution was cancelled")
        handle.finish("succeeded")  # a behaviour that returned without finishing exited 0

    # -- gRPC -------------------------------------------------------------------------------------

    async def _run_job(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.run_job_times.append(time.monotonic())
        late = await grpc_server.apply_fault(self.faults, "RunJob", context)
        if request.name not in self.jobs:
            await grpc_server.abort(context, grpc.StatusCode.NOT_FOUND, f"Job {request.name} not found")
        assert self._tg is not None
        self.jobs[request.name] += 1
        short = request.name.rsplit("/", 1)[1]
        suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        name = f"{request.name}/executions/{short}-{suffix}"
        overrides = request.overrides
        container = overrides.container_overrides[0] if overrides.container_overrides else None
        args = list(container.args) if container else []
        env = {e.name: e.value for e in container.env} if container else {}
        timeout = overrides.timeout.total_seconds() if overrides.timeout else self.default_timeout
        now = datetime.now(UTC)
        execution = run_v2.Execution(
            name=name,
            uid=str(uuid.uuid4()),
            job=short,
            create_time=now,
            task_count=overrides.task_count or 1,
            parallelism=1,
            template=run_v2.TaskTemplate(
                containers=[run_v2.Container(args=args, env=[run_v2.EnvVar(name=k, value=v) for k, v in env.items()])],
                max_retries=0,
                timeout=overrides.timeout or None,
            ),
        )
        self.executions[name] = execution
        handle = ExecutionHandle(name, request.name, args, env, timeout, self)
        self.handles[name] = handle
        self._tg.start_soon(self._execute, handle, name=f"execution {name}")
        location = request.name.split("/jobs/")[0]
        operation = operations_pb2.Operation(name=f"{location}/operations/{uuid.uuid4()}", done=False)
        operation.metadata.Pack(run_v2.Execution.pb(execution))
        self.operations[operation.name] = name
        if late is not None:
            await grpc_server.inflict(late, context)
        return operation

    async def _get_job(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await grpc_server.apply_fault(self.faults, "GetJob", context)
        if request.name not in self.jobs:
            await grpc_server.abort(context, grpc.StatusCode.NOT_FOUND, f"Job {request.name} not found")
        mine = [e for e in self.executions.values() if e.name.startswith(request.name + "/")]
        latest = max(mine, key=lambda e: e.create_time, default=None)
        container = run_v2.Container(resources=run_v2.ResourceRequirements(limits=self.limits))
        template = run_v2.ExecutionTemplate(template=run_v2.TaskTemplate(containers=[container]))
        job = run_v2.Job(name=request.name, execution_count=len(mine), template=template)
        if latest is not None:
            job.latest_created_execution = run_v2.ExecutionReference(name=latest.name, create_time=latest.create_time)
        return job

    async def _list(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await grpc_server.apply_fault(self.faults, "ListExecutions", context)
        if request.parent not in self.jobs:
            await grpc_server.abort(context, grpc.StatusCode.NOT_FOUND, f"Job {request.parent} not found")
        mine = sorted(
            (e for e in self.executions.values() if e.name.startswith(request.parent + "/")),
            key=lambda e: e.create_time,
            reverse=True,
        )
        size = min(request.page_size or 100, self.page_cap or 1000)
        start = int(request.page_token or 0)
        token = str(start + size) if start + size < len(mine) else ""
        return run_v2.ListExecutionsResponse(executions=mine[start : start + size], next_page_token=token)

    async def _get(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await grpc_server.apply_fault(self.faults, "GetExecution", context)
        execution = self.executions.get(request.name)
        if execution is None:
            await grpc_server.abort(context, grpc.StatusCode.NOT_FOUND, f"Execution {request.name} not found")
        return execution

    async def _cancel(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        late = await grpc_server.apply_fault(self.faults, "CancelExecution", context)
        handle = self.handles.get(request.name)
        if handle is None:
            await grpc_server.abort(context, grpc.StatusCode.NOT_FOUND, f"Execution {request.name} not found")
        if handle.finished or self.status(request.name) not in ("pending", "running"):
            await grpc_server.abort(
                context, grpc.StatusCode.FAILED_PRECONDITION, f"Execution {request.name} has already completed"
            )
        if not request.validate_only:
            self.cancels.append(request.name)
            if not handle.cancel_scope.cancel_called:
                self.mark_cancelling(request.name)
                handle.cancel_scope.cancel()
        location = request.name.split("/jobs/")[0]
        operation = operations_pb2.Operation(name=f"{location}/operations/{uuid.uuid4()}", done=False)
        operation.metadata.Pack(run_v2.Execution.pb(self.executions[request.name]))
        self.operations[operation.name] = request.name
        if late is not None:
            await grpc_server.inflict(late, context)
        return operation

    async def _get_operation(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        name = self.operations.get(request.name)
        if name is None:
            await grpc_server.abort(context, grpc.StatusCode.NOT_FOUND, f"Operation {request.name} not found")
        execution = self.executions[name]
        operation = operations_pb2.Operation(name=request.name, done=self.status(name) not in ("pending", "running"))
        operation.metadata.Pack(run_v2.Execution.pb(execution))
        if operation.done:
            operation.response.CopyFrom(_pack(execution))
        return operation

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        r, ops = run_v2, operations_pb2
        return [
            grpc.method_handlers_generic_handler(
                "google.cloud.run.v2.Jobs",
                {
                    "RunJob": grpc_server.unary(self._run_job, r.RunJobRequest, ops.Operation),
                    "GetJob": grpc_server.unary(self._get_job, r.GetJobRequest, r.Job),
                },
            ),
            grpc.method_handlers_generic_handler(
                "google.cloud.run.v2.Executions",
                {
                    "ListExecutions": grpc_server.unary(self._list, r.ListExecutionsRequest, r.ListExecutionsResponse),
                    "GetExecution": grpc_server.unary(self._get, r.GetExecutionRequest, r.Execution),
                    "CancelExecution": grpc_server.unary(self._cancel, r.CancelExecutionRequest, ops.Operation),
                },
            ),
            grpc.method_handlers_generic_handler(
                "google.longrunning.Operations",
                {"GetOperation": grpc_server.unary(self._get_operation, ops.GetOperationRequest, ops.Operation)},
            ),
        ]

    async def serve(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; executions still running are cancelled with it."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            address = await tg.start(grpc_server.serve, self.handlers())
            task_status.started(address)


def _pack(execution: run_v2.Execution) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(run_v2.Execution.pb(execution))
    return packed
