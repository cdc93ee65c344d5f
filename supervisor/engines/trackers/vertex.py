"""Tracking Vertex AI CustomJobs created by the agents: one list call per tick, and a cancel.

Only jobs that carry the `wandb-run-id` label and were created within the lookback are listed;
the label is how a CustomJob is tied to a queue item (docs/architecture.md, Data flow). The agent also
puts the item id itself in the container env (WANDB_LAUNCH_TRACE_ID), which ties it even before W&B
lists the run id, and the run's entity and project (WANDB_ENTITY, WANDB_PROJECT), which say where to
ask whether the run was stopped.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from google.cloud import aiplatform_v1

from supervisor.calls.gcp import cancel_call, pages, read_retry, seconds
from supervisor.calls.observe import ObserveCall, ignore_call
from supervisor.model.observations import VertexSeen
from supervisor.model.vertex import Hardware, JobState, Pool

RUN_LABEL = "wandb-run-id"
TRACE_ENV = "WANDB_LAUNCH_TRACE_ID"
PAGE_SIZE = 1000
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{1,63}")
"""What a Vertex label value may hold (and so what a filter may safely quote)."""


ENTITY_ENV = "WANDB_ENTITY"
PROJECT_ENV = "WANDB_PROJECT"
QUEUE_ENV = "WANDB_LAUNCH_QUEUE_NAME"
QUEUE_ENTITY_ENV = "WANDB_LAUNCH_QUEUE_ENTITY"


def container_env(job: Any, name: str) -> str | None:
    """A variable the agent set in the job's container env, if any."""
    for pool in job.job_spec.worker_pool_specs:
        for env in pool.container_spec.env:
            if env.name == name and env.value:
                return str(env.value)
    return None


def launch_queue(job: Any) -> tuple[str, str] | None:
    """(entity, queue) of the queue the agent took the job's item from, when its env says."""
    entity, queue = container_env(job, QUEUE_ENTITY_ENV), container_env(job, QUEUE_ENV)
    return (entity, queue) if entity and queue else None


def trace_id(job: Any) -> str | None:
    """The queue item id the agent set in the job's container env, if any."""
    return container_env(job, TRACE_ENV)


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
        """CustomJobs labelled with a run id and created after `since` (epoch seconds)."""
        moment = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return await self._list(f'labels.{RUN_LABEL}:* AND create_time>"{moment}"')

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

        def call(token: str) -> Awaitable[Any]:
            request = aiplatform_v1.ListCustomJobsRequest(
                parent=self._parent, filter=query, page_size=PAGE_SIZE, page_token=token
            )
            return self._client.list_custom_jobs(
                request=request, timeout=self._timeout, retry=read_retry(self._timeout)
            )

        async for page in pages(self._observe, "vertex", "ListCustomJobs", call):
            for job in page.custom_jobs:
                found.append(
                    VertexSeen(
                        name=job.name,
                        run_id=job.labels.get(RUN_LABEL),
                        state=JobState.parse(aiplatform_v1.JobState(job.state).name),
                        created=seconds(job.create_time) or 0.0,
                        ended=seconds(job.end_time),
                        error=job.error.message or None,
                        item_id=trace_id(job),
                        entity=container_env(job, ENTITY_ENV),
                        project=container_env(job, PROJECT_ENV),
                        launch_queue=launch_queue(job),
                        started=seconds(job.start_time),
                        hardware=hardware(job),
                    )
                )
        return found
