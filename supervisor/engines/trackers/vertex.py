"""Tracking Vertex AI CustomJobs created by the agents: listings sized by what changed, a get, a cancel.

Only jobs that carry the `wandb-run-id` label are listed; the label is how a CustomJob is tied to a
queue item (docs/architecture.md, Data flow). The agent also puts the item id itself in the container
env (WANDB_LAUNCH_TRACE_ID), which ties it even before W&B lists the run id, and the run's entity and
project (WANDB_ENTITY, WANDB_PROJECT), which say where to ask whether the run was stopped.

A project holds thousands of ended CustomJobs a day; listing them all at every tick costs about a
millisecond of CPU per job (docs/architecture.md, What each loop costs). So a tick asks for the live
jobs (`live`: every state but the end states) and for those created since the last listing
(`list` with a recent `since`), and reads one job (`get`) that left the live set unseen; the whole lookback is
listed (`list`) at start and on a slow cadence only. Every listing names the fields it reads
(`READ_MASK`), and each job is read from the raw protobuf message (`parse_job`): proto-plus marshals
every field access, which was most of the cost of a tick.

Filters keep to the grammar Vertex documents for ListCustomJobs (`ListCustomJobsRequest.filter` in
google-cloud-aiplatform's `aiplatform_v1/types/job_service.py`): `display_name`, `state` (`=`, `!=`),
`create_time` (RFC 3339) and `labels`; `update_time` is not a filter field.
"""

from __future__ import annotations

import builtins
import re
import sys
from collections.abc import AsyncGenerator, Awaitable
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.api_core.exceptions import NotFound
from google.cloud import aiplatform_v1
from google.protobuf import field_mask_pb2

from launch_supervisor.calls.gcp import cancel_call, observed, pages, read_retry
from launch_supervisor.calls.observe import ObserveCall, ignore_call
from launch_supervisor.model.observations import VertexSeen
from launch_supervisor.model.vertex import TERMINAL, Hardware, JobState, Pool

RUN_LABEL = "wandb-run-id"
TRACE_ENV = "WANDB_LAUNCH_TRACE_ID"
PAGE_SIZE = 1000
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{1,63}")
"""What a Vertex label value may hold (and so what a filter may safely quote)."""

ENTITY_ENV = "WANDB_ENTITY"
PROJECT_ENV = "WANDB_PROJECT"
QUEUE_ENV = "WANDB_LAUNCH_QUEUE_NAME"
QUEUE_ENTITY_ENV = "WANDB_LAUNCH_QUEUE_ENTITY"

READ_MASK = field_mask_pb2.FieldMask(
    paths=[
        "name",
        "state",
        "labels",
        "error",
        "create_time",
        "start_time",
        "end_time",
        "update_time",
        # The container env (run, item, queue), machine_spec and replica_count all live in the
        # worker pools. A FieldMask path may name a repeated field only as its last part
        # (google/protobuf/field_mask.proto), so the pools are asked for whole.
        "job_spec.worker_pool_specs",
        "job_spec.scheduling",
    ]
)
"""The fields of a CustomJob the supervisor reads: what the model needs, plus the times, machines and
scheduling that say what a job costs."""

LIVE_FILTER = " AND ".join(
    [f"labels.{RUN_LABEL}:*"] + [f'state!="JOB_STATE_{s.value}"' for s in sorted(TERMINAL, key=lambda s: s.value)]
)
"""Labelled jobs in any state but an end state: QUEUED, PENDING, RUNNING, CANCELLING, PAUSED, UPDATING…
(a state Vertex adds later is live too, which is the safe side)."""

_WIRE_STATES: Any = aiplatform_v1.JobState
_STATES = {int(s): JobState.parse(s.name) for s in _WIRE_STATES}
"""JobState by its wire value; a value this client does not know parses as UNSPECIFIED."""


def rfc3339(epoch: float) -> str:
    """Epoch seconds as the RFC 3339 a `create_time` filter takes."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _time(job: Any, field: str) -> float | None:
    if not job.HasField(field):
        return None
    stamp = getattr(job, field)
    return float(stamp.seconds) + float(stamp.nanos) / 1e9


T = TypeVar("T")
SHARED_MAX = 10_000
"""Distinct hardware shapes and launch queues kept as one shared copy each (`_shared`)."""
_SHARED: dict[object, object] = {}


def _shared(value: T) -> T:
    """One copy of a value thousands of jobs repeat (their hardware, their queue), so that the jobs
    the model keeps for the day's lookback cost only what is their own (docs/reliability.md)."""
    if len(_SHARED) >= SHARED_MAX:
        return value
    return _SHARED.setdefault(value, value)  # type: ignore[return-value]


def _intern(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)


def parse_job(job: Any) -> VertexSeen:
    """What the supervisor reads of one CustomJob, from its raw protobuf message (`custom_job_pb2`'s
    CustomJob, as `aiplatform_v1.CustomJob.pb(job)` gives it). Add a field here and to READ_MASK."""
    env: dict[str, str] = {}
    for pool in job.job_spec.worker_pool_specs:
        for variable in pool.container_spec.env:
            if variable.value and variable.name not in env:
                env[variable.name] = variable.value
    entity, queue = _intern(env.get(QUEUE_ENTITY_ENV)), _intern(env.get(QUEUE_ENV))
    return VertexSeen(
        name=job.name,
        run_id=job.labels.get(RUN_LABEL),
        state=_STATES.get(job.state, JobState.UNSPECIFIED),
        created=_time(job, "create_time") or 0.0,
        ended=_time(job, "end_time"),
        error=job.error.message or None,
        item_id=env.get(TRACE_ENV),
        entity=_intern(env.get(ENTITY_ENV)),
        project=_intern(env.get(PROJECT_ENV)),
        launch_queue=_shared((entity, queue)) if entity and queue else None,
        started=_time(job, "start_time"),
        hardware=_shared(hardware(job)),
    )


def hardware(job: Any) -> Hardware:
    """Its worker pools' machines and whether it runs on spot VMs (`job_spec.scheduling.strategy`
    SPOT, aiplatform_v1 Scheduling.Strategy): what its cost is counted by."""
    pools = []
    for pool in job.job_spec.worker_pool_specs:
        machine = pool.machine_spec
        try:
            accelerator = aiplatform_v1.AcceleratorType(machine.accelerator_type).name
        except ValueError:  # a type newer than the pinned client: unpriced, never guessed
            accelerator = f"accelerator type {int(machine.accelerator_type)}"
        pools.append(
            Pool(
                machine_type=str(machine.machine_type),
                replicas=int(pool.replica_count),
                accelerator_type=None if accelerator == "ACCELERATOR_TYPE_UNSPECIFIED" else accelerator,
                accelerator_count=int(machine.accelerator_count),
            )
        )
    spot = job.job_spec.scheduling.strategy == aiplatform_v1.Scheduling.Strategy.SPOT
    return Hardware(tuple(pools), spot=spot)


class VertexTracker:
    def __init__(
        self,
        jobs: aiplatform_v1.JobServiceAsyncClient,
        parent: str,
        timeout: float,
        observe: ObserveCall = ignore_call,
    ) -> None:
        self._client = jobs
        self._parent = parent
        self._timeout = timeout
        self._observe = observe

    async def list(self, since: float) -> list[VertexSeen]:
        """Every labelled CustomJob created after `since` (epoch seconds), ended ones included: the
        jobs created since the last listing (those that may have begun and ended between two
        listings of the live ones)."""
        return await self._list(self._created_after(since))

    def pages(self, since: float) -> AsyncGenerator[builtins.list[VertexSeen], None]:
        """The same as `list`, a page at a time: the whole lookback (at start, and as a safety net)
        is folded as it comes, so what a listing of thousands of jobs holds at once is one page."""
        return self._pages(self._created_after(since))

    @staticmethod
    def _created_after(since: float) -> str:
        return f'labels.{RUN_LABEL}:* AND create_time>"{rfc3339(since)}"'

    async def live(self) -> builtins.list[VertexSeen]:
        """Every labelled CustomJob not in an end state, however old."""
        return await self._list(LIVE_FILTER)

    async def get(self, name: str) -> VertexSeen | None:
        """GetCustomJob: the job, or None when Vertex AI has no such job (it was deleted)."""
        request = aiplatform_v1.GetCustomJobRequest(name=name)

        def call() -> Awaitable[Any]:
            return self._client.get_custom_job(request=request, timeout=self._timeout, retry=read_retry(self._timeout))

        try:
            job = await observed(self._observe, "vertex", "GetCustomJob", call)
        except NotFound:
            return None
        return parse_job(aiplatform_v1.CustomJob.pb(job))

    async def find_run(self, run_id: str) -> builtins.list[VertexSeen]:
        """CustomJobs of one W&B run, however old: before the supervisor gives an item up for lost."""
        if not _LABEL_VALUE.fullmatch(run_id):
            return []  # not a value a label can hold, so no job carries it
        return await self._list(f'labels.{RUN_LABEL}="{run_id}"')

    async def cancel(self, name: str) -> bool:
        """CancelCustomJob: True when Vertex AI accepted it (the job goes CANCELLING, then
        CANCELLED), False when there is nothing to cancel (gone, or ended); any other error raises
        GoogleAPICallError. Not retried here: the caller asks again at its next tick if it still should."""
        request = aiplatform_v1.CancelCustomJobRequest(name=name)
        return await cancel_call(
            self._observe,
            "vertex",
            "CancelCustomJob",
            lambda: self._client.cancel_custom_job(request=request, timeout=self._timeout, retry=None),
        )

    async def _list(self, query: str) -> builtins.list[VertexSeen]:
        found: builtins.list[VertexSeen] = []
        async with aclosing(self._pages(query)) as listing:
            async for page in listing:
                found.extend(page)
        return found

    async def _pages(self, query: str) -> AsyncGenerator[builtins.list[VertexSeen], None]:
        def call(token: str) -> Awaitable[Any]:
            request = aiplatform_v1.ListCustomJobsRequest(
                parent=self._parent, filter=query, page_size=PAGE_SIZE, page_token=token, read_mask=READ_MASK
            )
            return self._client.list_custom_jobs(
                request=request, timeout=self._timeout, retry=read_retry(self._timeout)
            )

        async with aclosing(pages(self._observe, "vertex", "ListCustomJobs", call)) as listing:
            async for page in listing:
                yield [parse_job(job) for job in aiplatform_v1.ListCustomJobsResponse.pb(page).custom_jobs]
