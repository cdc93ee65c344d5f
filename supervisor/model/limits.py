"""A queue's limits on its CustomJobs: how long one may wait for capacity, and how long it may run
(docs/architecture.md, Guardrails).

Vertex AI keeps a job whose accelerators have no capacity QUEUED or PENDING with no end (its own wait
limit exists only for FLEX_START), and lets a job run up to its `scheduling.timeout`, 7 days by
default. A queue's `max_queued` and `max_runtime` end them sooner: the job is cancelled once (the
cancel machinery of `stops`), and its item is failed once with the reason when it ends CANCELLED.
A job that ended first is never cancelled: only live jobs not cancelled yet are looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from launch_supervisor.model.policy import QueuePolicy
from launch_supervisor.model.stops import CancelJob, queue_of
from launch_supervisor.model.vertex import JobState, VertexJob

MAX_QUEUED = "max_queued"
MAX_RUNTIME = "max_runtime"
WAITING = frozenset({JobState.QUEUED, JobState.PENDING})
"""States in which a job waits for its machines."""


def queued_message(seconds: float) -> str:
    return f"waited {seconds:.0f} s for capacity; CustomJob cancelled"


def runtime_message(seconds: float, limit: float) -> str:
    return f"ran {seconds:.0f} s, past the queue's max_runtime of {limit:g} s; CustomJob cancelled"


def cancels(jobs: Iterable[VertexJob], policies: Mapping[str, QueuePolicy], now: float) -> list[CancelJob]:
    """Live jobs past their queue's max_queued (from create_time) or max_runtime (from start_time)."""
    actions = []
    for job in jobs:
        policy = queue_of(job, policies)
        if policy is None or job.cancel is not None:
            continue
        if job.state in WAITING and policy.max_queued is not None and job.created > 0:
            waited = now - job.created  # no create_time (0) means no clock to go by
            if waited >= policy.max_queued:
                message = queued_message(waited)
                actions.append(CancelJob(policy.name, job.name, job.run_id or "", MAX_QUEUED, waited, message))
        elif job.state is JobState.RUNNING and policy.max_runtime is not None and job.started is not None:
            ran = now - job.started
            if ran >= policy.max_runtime:
                message = runtime_message(ran, policy.max_runtime)
                actions.append(CancelJob(policy.name, job.name, job.run_id or "", MAX_RUNTIME, ran, message))
    return actions
