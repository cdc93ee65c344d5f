"""A Vertex AI stand-in: JobService CustomJobs that move QUEUED → PENDING → RUNNING → SUCCEEDED
(or FAILED) on a schedule, listed with the filter grammar Vertex documents for ListCustomJobs and
its `read_mask`; it can be preloaded with thousands of ended jobs (`preload`), as a real project
holds after a few days of launches.

CreateCustomJob checks a spec the way Vertex refuses real ones: a machine type that does not exist or
does not take the accelerator (InvalidArgument), more accelerators than the project's quota
(ResourceExhausted), a service account the caller may not act as (PermissionDenied). A job is created
and later ends FAILED when its image cannot be pulled (a tag `:does-not-exist`), when its container
exits non-zero before `wandb.init` (an argument `--sandbox-exit=N`), or when its run id was planned
to fail (`fail_runs`). A container given `--sandbox-run-for=SECONDS` runs that long instead of the
schedule's end (long enough for its run to be stopped in W&B and its job cancelled).

A job asking for a machine or accelerator type listed in `no_capacity` waits as one whose
accelerators have no capacity does: PENDING with no start_time, for as long as the type stays listed
(Vertex AI's own wait limit exists only for FLEX_START scheduling). A job sets start_time when it
first runs and end_time when it ends, as Vertex's do (CustomJob reference: start_time "Time when the
CustomJob for the first time entered the JOB_STATE_RUNNING state", end_time "Time when the CustomJob
entered any of the following states: JOB_STATE_SUCCEEDED, JOB_STATE_FAILED, JOB_STATE_CANCELLED").

CancelCustomJob works as Vertex's does: it answers Empty at once and the job goes CANCELLING, then,
`cancel_delay` seconds later, CANCELLED with `error` code 1 (CANCELLED) and an end time; a cancelled
job is never driven on to its planned end. A job that has ended cannot be cancelled
(FAILED_PRECONDITION); one already cancelling is accepted again and nothing else changes.
`watch`, when set, sees each job at every change of its state (the sandbox's training code)."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import grpc
from anyio.abc import TaskStatus
from google.cloud import aiplatform_v1
from google.protobuf import empty_pb2, field_mask_pb2
from google.rpc import code_pb2, status_pb2

from launch_supervisor.sandbox import grpc_server
from launch_supervisor.sandbox.faults import Faults

S: Any = aiplatform_v1.JobState
SERVICE = "google.cloud.aiplatform.v1.JobService"


@dataclass(slots=True)
class Schedule:
    """Seconds from creation at which a job reaches each state."""

    pending: float = 0.05
    running: float = 0.15
    done: float = 0.4


ENDED = frozenset(
    {
        S.JOB_STATE_SUCCEEDED,
        S.JOB_STATE_FAILED,
        S.JOB_STATE_CANCELLED,
        S.JOB_STATE_EXPIRED,
        S.JOB_STATE_PARTIALLY_SUCCEEDED,
    }
)


@dataclass(slots=True)
class _Tracked:
    job: aiplatform_v1.CustomJob
    created: datetime
    fail_with: str | None = None
    runs_for: float | None = None
    """Seconds from creation to its end, when its container says (`--sandbox-run-for`); else the schedule's."""
    cancelled_at: datetime | None = None
    """When CancelCustomJob was first accepted for it."""


MACHINE_FAMILIES = {"n1-", "n2-", "e2-", "g2-", "a2-", "a3-"}
ACCELERATORS = {"NVIDIA_L4": "g2-", "NVIDIA_TESLA_A100": "a2-", "NVIDIA_H100_80GB": "a3-", "NVIDIA_TESLA_T4": "n1-"}
"""Accelerator → the machine family that takes it."""
QUOTA = {"NVIDIA_L4": 8, "NVIDIA_TESLA_A100": 8, "NVIDIA_H100_80GB": 0, "NVIDIA_TESLA_T4": 4}
MISSING_IMAGE_TAG = ":does-not-exist"
EXIT_ARG = "--sandbox-exit="
RUN_FOR_ARG = "--sandbox-run-for="


def refusal(job: aiplatform_v1.CustomJob, region: str) -> tuple[grpc.StatusCode, str] | None:
    """Why CreateCustomJob refuses this job, as Vertex words it; None to accept it."""
    account = job.job_spec.service_account
    if account.startswith("no-access"):
        return grpc.StatusCode.PERMISSION_DENIED, (
            f"Permission 'iam.serviceAccounts.actAs' denied on service account {account} (or it may not exist)."
        )
    for pool in job.job_spec.worker_pool_specs:
        machine = pool.machine_spec
        accelerator = aiplatform_v1.AcceleratorType(machine.accelerator_type).name
        family = ACCELERATORS.get(accelerator)
        if not any(machine.machine_type.startswith(f) for f in MACHINE_FAMILIES) or (
            family is not None and not machine.machine_type.startswith(family)
        ):
            with_accelerator = f" with accelerator {accelerator}" if family else ""
            return grpc.StatusCode.INVALID_ARGUMENT, (
                f'Machine type "{machine.machine_type}" is not supported{with_accelerator}.'
            )
        wanted = machine.accelerator_count * max(1, pool.replica_count)
        if family is not None and wanted > QUOTA[accelerator]:
            metric = f"custom_model_training_{accelerator.lower().removeprefix('nvidia_')}_gpus"
            return grpc.StatusCode.RESOURCE_EXHAUSTED, (
                f"The following quota metrics exceed quota limits: aiplatform.googleapis.com/{metric}. "
                f"Quota '{metric}' exceeded. Limit: {QUOTA[accelerator]} in region {region}."
            )
    return None


def planned_failure(job: aiplatform_v1.CustomJob) -> str | None:
    """The error a created job ends with: an image that cannot be pulled, a container that exits."""
    for index, pool in enumerate(job.job_spec.worker_pool_specs):
        container = pool.container_spec
        if container.image_uri.endswith(MISSING_IMAGE_TAG):
            return f'Failed to pull image "{container.image_uri}": manifest unknown. Check the image URI and access.'
        for arg in container.args:
            if arg.startswith(EXIT_ARG):
                code = arg[len(EXIT_ARG) :]
                return (
                    f"The replica workerpool{index}-0 exited with a non-zero status of {code}. "
                    "To find out more about why your job exited please check the logs."
                )
    return None


def planned_duration(job: aiplatform_v1.CustomJob) -> float | None:
    """Seconds the job's container runs, when an argument `--sandbox-run-for=SECONDS` says."""
    for pool in job.job_spec.worker_pool_specs:
        for arg in pool.container_spec.args:
            if arg.startswith(RUN_FOR_ARG):
                return float(arg[len(RUN_FOR_ARG) :])
    return None


@dataclass
class VertexStandIn:
    project_number: str = "123456"
    region: str = "us-central1"
    schedule: Schedule = field(default_factory=Schedule)
    fail_runs: dict[str, str] = field(default_factory=dict)
    """run id → error message: jobs with that wandb-run-id label end FAILED."""
    faults: Faults = field(default_factory=Faults)
    jobs: dict[str, _Tracked] = field(default_factory=dict)
    tls: tuple[bytes, bytes] | None = None
    """(PEM key, PEM certificate): also serve over TLS, as the real agent's client needs."""
    tls_address: str = ""
    """host:port of the TLS port, once serving with `tls`."""
    cancel_delay: float = 1.0
    """Seconds a cancelled job stays CANCELLING before it is CANCELLED (0: at the next read)."""
    cancels: list[str] = field(default_factory=list)
    """The job of each CancelCustomJob that was accepted, repeats included."""
    no_capacity: set[str] = field(default_factory=set)
    """Machine or accelerator types with no capacity: jobs asking for them stay PENDING."""
    listings: Counter[str] = field(default_factory=Counter)
    """ListCustomJobs listings (first pages) by filter: how often each kind of listing was asked for."""
    watch: Callable[[aiplatform_v1.CustomJob], None] | None = None
    """Called with a job each time its state changes (created QUEUED included)."""
    _ids: Any = field(default_factory=lambda: itertools.count(1000000001))
    _masked_ended: dict[tuple[str, tuple[str, ...]], Any] = field(default_factory=dict)
    _moving: set[str] = field(default_factory=set)
    """Jobs not yet ended: the only ones `advance` has to look at, however many have ended."""

    def create(self, custom_job: aiplatform_v1.CustomJob) -> aiplatform_v1.CustomJob:
        """Create a job as CreateCustomJob does (also used directly by the simulated launcher)."""
        now = datetime.now(UTC)
        name = f"projects/{self.project_number}/locations/{self.region}/customJobs/{next(self._ids)}"
        job = aiplatform_v1.CustomJob(custom_job)
        job.name = name
        job.state = S.JOB_STATE_QUEUED
        job.create_time = now
        job.update_time = now
        fail_with = self.fail_runs.get(job.labels.get("wandb-run-id", "")) or planned_failure(job)
        self.jobs[name] = _Tracked(job, now, fail_with, planned_duration(job))
        self._moving.add(name)
        self._changed(job)
        return job

    def preload(self, jobs: Iterable[aiplatform_v1.CustomJob], within: float = 86400.0) -> None:
        """Add CustomJobs (as the agent built them: `simulated.agent_job`) that ended within the past
        `within` seconds, spread evenly, one in ten FAILED: the history a project keeps after a day
        of launches, which every full listing reads."""
        now = datetime.now(UTC)
        built = list(jobs)
        for n, spec in enumerate(built):
            created = now - timedelta(seconds=within * (n + 1) / (len(built) + 1))
            job = aiplatform_v1.CustomJob(spec)
            job.name = f"projects/{self.project_number}/locations/{self.region}/customJobs/{next(self._ids)}"
            failed = n % 10 == 0
            job.state = S.JOB_STATE_FAILED if failed else S.JOB_STATE_SUCCEEDED
            if failed:
                job.error = status_pb2.Status(code=code_pb2.INTERNAL, message=_PRELOAD_FAILURE)
            job.create_time = created
            job.start_time = created + timedelta(seconds=90)
            job.end_time = job.update_time = created + timedelta(seconds=600)
            self.jobs[job.name] = _Tracked(job, created)

    def cancel(self, name: str, now: datetime | None = None) -> tuple[grpc.StatusCode, str] | None:
        """Cancel a job as CancelCustomJob does: None when accepted (it goes CANCELLING), else why not."""
        tracked = self.jobs.get(name)
        if tracked is None:
            return grpc.StatusCode.NOT_FOUND, f"CustomJob {name} not found"
        job = tracked.job
        if job.state in ENDED:
            state = aiplatform_v1.JobState(job.state).name
            return grpc.StatusCode.FAILED_PRECONDITION, f"CustomJob {name} is in state {state} and cannot be cancelled."
        self.cancels.append(name)
        if tracked.cancelled_at is None:
            tracked.cancelled_at = now or datetime.now(UTC)
            job.state = S.JOB_STATE_CANCELLING
            job.update_time = tracked.cancelled_at
            self._changed(job)
        return None

    def _masked(self, job: aiplatform_v1.CustomJob, paths: tuple[str, ...]) -> Any:
        """The raw job with only the fields `paths` names (all without any). An ended job no longer
        changes, so its masked copy is kept: a listing of thousands of ended jobs stays cheap here,
        and what a benchmark measures is the daemon."""
        source = aiplatform_v1.CustomJob.pb(job)
        if not paths:
            return source
        ended = job.state in ENDED
        key = (job.name, paths)
        if ended and (cached := self._masked_ended.get(key)) is not None:
            return cached
        out = type(source)()
        field_mask_pb2.FieldMask(paths=list(paths)).MergeMessage(source, out)
        if ended:
            self._masked_ended[key] = out
        return out

    def _changed(self, job: aiplatform_v1.CustomJob) -> None:
        if self.watch is not None:
            self.watch(job)

    def advance(self, now: datetime | None = None) -> None:
        """Move every job to the state its schedule says it has reached; a cancelled one to CANCELLED
        once `cancel_delay` has passed."""
        now = now or datetime.now(UTC)
        for name in list(self._moving):
            tracked = self.jobs.get(name)
            if tracked is None:  # removed from `jobs` by a test (deleted)
                self._moving.discard(name)
                continue
            before = tracked.job.state
            self._advance(tracked, now)
            if tracked.job.state != before:
                self._changed(tracked.job)
            if tracked.job.state in ENDED:
                self._moving.discard(name)

    def _advance(self, tracked: _Tracked, now: datetime) -> None:
        job = tracked.job
        if job.state in ENDED:  # an end state is final, however it was reached
            return
        if tracked.cancelled_at is not None:  # cancelled: never driven on to its planned end
            if (now - tracked.cancelled_at).total_seconds() >= self.cancel_delay:
                job.state = S.JOB_STATE_CANCELLED
                job.error = status_pb2.Status(code=code_pb2.CANCELLED, message="CustomJob was cancelled.")
                job.end_time = now
                job.update_time = now
            return
        age = (now - tracked.created).total_seconds()
        if job.state != S.JOB_STATE_RUNNING and self._waits_for_capacity(job):
            if age >= self.schedule.pending and job.state != S.JOB_STATE_PENDING:
                job.state = S.JOB_STATE_PENDING
                job.update_time = now
            return
        if age >= (self.schedule.done if tracked.runs_for is None else tracked.runs_for):
            if tracked.fail_with is not None:
                job.state = S.JOB_STATE_FAILED
                job.error = status_pb2.Status(code=code_pb2.INTERNAL, message=tracked.fail_with)
            else:
                job.state = S.JOB_STATE_SUCCEEDED
            job.end_time = now
        elif age >= self.schedule.running:
            job.state = S.JOB_STATE_RUNNING
            if not job.start_time:
                job.start_time = now
        elif age >= self.schedule.pending:
            job.state = S.JOB_STATE_PENDING
        job.update_time = now

    def _waits_for_capacity(self, job: aiplatform_v1.CustomJob) -> bool:
        for pool in job.job_spec.worker_pool_specs:
            machine = pool.machine_spec
            accelerator = aiplatform_v1.AcceleratorType(machine.accelerator_type).name
            if machine.machine_type in self.no_capacity or accelerator in self.no_capacity:
                return True
        return False

    # -- gRPC -----------------------------------------------------------------------------------

    async def _create(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await grpc_server.apply_fault(self.faults, "CreateCustomJob", context)
        refused = refusal(request.custom_job, self.region)
        if refused is not None:
            await grpc_server.abort(context, *refused)
        return self.create(request.custom_job)

    async def _get(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await grpc_server.apply_fault(self.faults, "GetCustomJob", context)
        self.advance()
        tracked = self.jobs.get(request.name)
        if tracked is None:
            await grpc_server.abort(context, grpc.StatusCode.NOT_FOUND, f"CustomJob {request.name} not found")
        return tracked.job

    async def _list(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await grpc_server.apply_fault(self.faults, "ListCustomJobs", context)
        try:
            keep = _parse_filter(request.filter)
        except ValueError as exc:
            await grpc_server.abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        mask = request.read_mask if "read_mask" in request else None
        if mask is not None and not field_mask_pb2.FieldMask(paths=list(mask.paths)).IsValidForDescriptor(_JOB_PB):
            # Vertex answers an unknown field path with INVALID_ARGUMENT, as AIP-157 asks of read masks.
            await grpc_server.abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"Invalid read_mask: {list(mask.paths)}")
        if not request.page_token:
            self.listings[request.filter] += 1
        self.advance()
        names = sorted(name for name, t in self.jobs.items() if keep(aiplatform_v1.CustomJob.pb(t.job)))
        size = request.page_size or 100
        start = int(request.page_token or 0)
        page = [self.jobs[name].job for name in names[start : start + size]]
        token = str(start + size) if start + size < len(names) else ""
        response = aiplatform_v1.ListCustomJobsResponse(next_page_token=token)
        raw = aiplatform_v1.ListCustomJobsResponse.pb(response)
        paths = tuple(mask.paths) if mask is not None else ()
        for job in page:
            raw.custom_jobs.add().CopyFrom(self._masked(job, paths))
        return response

    async def _cancel(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        late = await grpc_server.apply_fault(self.faults, "CancelCustomJob", context)
        refused = self.cancel(request.name)
        if refused is not None:
            await grpc_server.abort(context, *refused)
        if late is not None:
            await grpc_server.inflict(late, context)
        return empty_pb2.Empty()

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        v1 = aiplatform_v1
        return [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "CreateCustomJob": grpc_server.unary(self._create, v1.CreateCustomJobRequest, v1.CustomJob),
                    "GetCustomJob": grpc_server.unary(self._get, v1.GetCustomJobRequest, v1.CustomJob),
                    "ListCustomJobs": grpc_server.unary(
                        self._list, v1.ListCustomJobsRequest, v1.ListCustomJobsResponse
                    ),
                    "CancelCustomJob": grpc_server.unary(self._cancel, v1.CancelCustomJobRequest, empty_pb2.Empty),
                },
            )
        ]

    async def serve(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve and advance job states until cancelled."""
        async with anyio.create_task_group() as tg:
            address = await tg.start(grpc_server.serve, self.handlers())
            if self.tls is not None:
                credentials = grpc.ssl_server_credentials([self.tls])
                self.tls_address = await tg.start(grpc_server.serve, self.handlers(), credentials)
            task_status.started(address)
            while True:
                self.advance()
                await anyio.sleep(0.02)


_JOB_PB: Any = aiplatform_v1.CustomJob.pb().DESCRIPTOR
_PRELOAD_FAILURE = (
    "The replica workerpool0-0 exited with a non-zero status of 1. "
    "To find out more about why your job exited please check the logs."
)


_TERM = re.compile(
    r'^(NOT\s+)?(labels\.[\w-]+|create_time|state|display_name)\s*(!=|>=|<=|:|=|>|<)\s*(\*|"[^"]*"|\S+)$'
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_OPERATORS = {"create_time": {"=", "!=", "<", "<=", ">", ">="}, "state": {"=", "!="}, "display_name": {"=", "!=", ":"}}
"""Vertex's ListCustomJobsRequest.filter: `display_name` (`=`, `!=`, `:` wildcard), `state` (`=`,
`!=`), `create_time` (`=`, `!=`, `<`, `<=`, `>`, `>=`, RFC 3339) and `labels` (`labels.key=value`,
`labels.key:*`); google-cloud-aiplatform's aiplatform_v1/types/job_service.py. Nothing else, so
`update_time` or `end_time` is refused, as Vertex refuses them."""
JobTest = Callable[[Any], bool]


def _term(text: str) -> JobTest:
    match = _TERM.match(text.strip())
    if not match:
        raise ValueError(f"Unsupported filter term: {text.strip()!r}")
    negate, key, op, raw = match.groups()
    value = raw.strip('"')
    test: JobTest
    if key.startswith("labels."):
        label = key[len("labels.") :]
        if op == ":" and value == "*":
            test = lambda job: label in job.labels  # noqa: E731
        elif op in (":", "="):
            test = lambda job: bool(job.labels.get(label) == value)  # noqa: E731
        else:
            raise ValueError(f"Unsupported operator {op!r} for labels in {text.strip()!r}")
    elif op not in _OPERATORS[key]:
        raise ValueError(f"Unsupported operator {op!r} for field {key} in {text.strip()!r}")
    elif key == "state":
        try:
            wanted = S[value]
        except KeyError:
            raise ValueError(f"Unknown JobState {value!r} in {text.strip()!r}") from None
        compare = _COMPARE[op]
        test = lambda job: compare(job.state, int(wanted))  # noqa: E731
    elif key == "display_name":
        if op == ":":
            pattern = re.compile(re.escape(value).replace(r"\*", ".*"))
            test = lambda job: bool(pattern.fullmatch(job.display_name))  # noqa: E731
        else:
            compare = _COMPARE[op]
            test = lambda job: compare(job.display_name, value)  # noqa: E731
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"create_time must be RFC 3339, not {value!r}") from None
        compare = _COMPARE[op]
        stamp = (int(moment.timestamp()), moment.microsecond * 1000)
        test = lambda job: compare((job.create_time.seconds, job.create_time.nanos), stamp)  # noqa: E731
    return (lambda job: not test(job)) if negate else test


def _parse_filter(text: str) -> JobTest:
    """A ListCustomJobs filter as a test of one job (its raw protobuf message), or ValueError
    (INVALID_ARGUMENT) for anything outside the grammar (`_OPERATORS`). Terms join with AND; OR binds
    tighter than AND, as in AIP-160 (`a AND b OR c` is `a AND (b OR c)`); NOT negates one term.
    Parentheses are not taken."""
    if "(" in (text or "") or ")" in (text or ""):
        raise ValueError(f"Unsupported filter (parentheses): {text!r}")
    conjuncts: list[list[JobTest]] = []
    for conjunct in filter(None, (t.strip() for t in re.split(r"\s+AND\s+", text or ""))):
        conjuncts.append([_term(t) for t in re.split(r"\s+OR\s+", conjunct)])
    return lambda job: all(any(test(job) for test in alternatives) for alternatives in conjuncts)
