"""Runs stopped in W&B: their CustomJobs are cancelled (docs/architecture.md, Data flow).

The wandb agent, run long-lived, cancels the job of a run a user stops in W&B. The watchdog stops
the agent as soon as the job exists, so the supervisor takes over that duty: it asks W&B about the
runs of live CustomJobs (one query per project, `stop_queries`), notes since when each run is
stopped (`runs_read`), and names the jobs stopped for longer than the queue's `stop_grace`
(`cancels`): time for the training code's own wandb client to end the run first. Each job is
cancelled once; when it then ends CANCELLED its item is failed with `STOPPED_MESSAGE`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from launch_supervisor.model.facts import Fact, FactKind
from launch_supervisor.model.policy import QueuePolicy
from launch_supervisor.model.vertex import LIVE, CancelWanted, JobState, VertexJob

RUN_STOPPED = "run_stopped"
"""Why the supervisor cancels a CustomJob (the label of the cancel counter)."""
MOOT = "moot"
"""A cancel Vertex AI refused because the job had already ended or was gone: never tried again."""
STOPPED_MESSAGE = "stopped in W&B; CustomJob cancelled"


@dataclass(frozen=True, slots=True)
class StopQuery:
    """Ask W&B which of these runs of one project are stopped: one call, whatever their number."""

    entity: str
    project: str
    runs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CancelJob:
    """Call CancelCustomJob: its run has been stopped in W&B for `seconds` and it still runs, or it
    passed one of its queue's limits (`limits`)."""

    queue: str
    custom_job: str
    run_id: str
    reason: str
    seconds: float
    message: str = STOPPED_MESSAGE
    """The item's failure message once the job ends CANCELLED."""


@dataclass(frozen=True, slots=True)
class _Watched:
    job: VertexJob
    queue: QueuePolicy
    entity: str
    project: str
    run_id: str


def _watched(jobs: Iterable[VertexJob], policies: Mapping[str, QueuePolicy]) -> list[_Watched]:
    """Live jobs, not cancelled yet, of queues that cancel stopped runs, whose run W&B can be asked
    about (run id, entity and project known)."""
    watched = []
    for job in jobs:
        policy = _cancelling_queue(job, policies)
        if policy is not None and job.cancel is None and job.run_id and job.entity and job.project:
            watched.append(_Watched(job, policy, job.entity, job.project, job.run_id))
    return watched


def _cancelling_queue(job: VertexJob, policies: Mapping[str, QueuePolicy]) -> QueuePolicy | None:
    """The queue of a live job, when that queue cancels the jobs of stopped runs."""
    policy = queue_of(job, policies)
    return policy if policy is not None and policy.cancel_stopped_runs and job.state in LIVE else None


def queue_of(job: VertexJob, policies: Mapping[str, QueuePolicy]) -> QueuePolicy | None:
    """The job's queue: the one its item was linked to, else the one its container env names (an
    item past the queue listing's first page is never linked, and its job must not run on)."""
    if job.queue is not None:
        return policies.get(job.queue)
    if job.launch_queue is None:
        return None
    entity, name = job.launch_queue
    policy = policies.get(name)
    return policy if policy is not None and policy.entity == entity else None


def stop_queries(jobs: Iterable[VertexJob], policies: Mapping[str, QueuePolicy]) -> list[StopQuery]:
    """The runs to ask about, grouped by project, in a stable order."""
    runs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for w in _watched(jobs, policies):
        runs[(w.entity, w.project)].add(w.run_id)
    return [StopQuery(entity, project, tuple(sorted(names))) for (entity, project), names in sorted(runs.items())]


def runs_read(jobs: Iterable[VertexJob], query: StopQuery, stopped: Iterable[str], now: float) -> None:
    """W&B answered `query`: `stopped` are the runs among them it reports stopped. A run no longer
    stopped (W&B forgot it, or it was resumed) starts its grace again the next time."""
    asked, stopped = set(query.runs), set(stopped)
    for job in jobs:
        if job.entity != query.entity or job.project != query.project or job.run_id not in asked:
            continue
        if job.run_id in stopped:
            job.stopped_since = job.stopped_since if job.stopped_since is not None else now
        else:
            job.stopped_since = None


def cancels(jobs: Iterable[VertexJob], policies: Mapping[str, QueuePolicy], now: float) -> list[CancelJob]:
    """Live jobs whose run has been stopped for the queue's `stop_grace`, not yet cancelled."""
    actions = []
    for w in _watched(jobs, policies):
        if w.job.stopped_since is None:
            continue
        seconds = now - w.job.stopped_since
        if seconds >= w.queue.stop_grace:
            actions.append(CancelJob(w.queue.name, w.job.name, w.run_id, RUN_STOPPED, seconds))
    return actions


def overdue(
    jobs: Iterable[VertexJob], policies: Mapping[str, QueuePolicy], now: float, margin: float
) -> dict[str, int]:
    """Per queue, live jobs whose run has been stopped for longer than the grace plus `margin`: the
    cancel that should have ended them did not (refused, its permission missing, or accepted and
    not carried out: Vertex AI cancels on a best-effort basis)."""
    late: dict[str, int] = {}
    for job in jobs:
        policy = _cancelling_queue(job, policies)
        if (
            policy is not None
            and job.stopped_since is not None
            and now - job.stopped_since > policy.stop_grace + margin
        ):
            late[policy.name] = late.get(policy.name, 0) + 1
    return late


def cancel_answered(jobs: Mapping[str, VertexJob], action: CancelJob, accepted: bool) -> list[Fact]:
    """CancelCustomJob answered: accepted, or nothing to cancel (the job ended or is gone). Never sent
    again. When an earlier attempt failed, its cancel may have taken effect with only its answer lost:
    then "nothing to cancel" proves nothing, and the listing tells (`confirmed`)."""
    job = jobs.get(action.custom_job)
    if job is not None and not accepted:
        if job.cancel_error is None:
            job.cancel = MOOT  # it ended before any cancel of ours: its own end state explains it
        return []
    if job is not None:
        job.cancel, job.cancel_message, job.cancel_error, job.cancel_wanted = action.reason, action.message, None, None
    return [_requested(action.queue, action.custom_job, action.seconds, action.reason)] if accepted else []


def confirmed(job: VertexJob, policies: Mapping[str, QueuePolicy]) -> list[Fact]:
    """A listing shows CANCELLING or CANCELLED a job whose cancel failed with no answer: it took."""
    policy, wanted = queue_of(job, policies), job.cancel_wanted
    if job.cancel is not None or wanted is None or policy is None:
        return []
    if job.state not in (JobState.CANCELLING, JobState.CANCELLED):
        return []
    job.cancel, job.cancel_message, job.cancel_error, job.cancel_wanted = wanted.reason, wanted.message, None, None
    return [_requested(policy.name, job.name, wanted.seconds, wanted.reason)]


def _requested(queue: str, custom_job: str, seconds: float, reason: str) -> Fact:
    return Fact(FactKind.VERTEX_CANCEL_REQUESTED, queue, seconds=seconds, detail=reason, custom_job=custom_job)


def cancel_failed(jobs: Mapping[str, VertexJob], action: CancelJob, error: str) -> bool:
    """CancelCustomJob failed; tried again at the next tick. True when the error is new."""
    job = jobs.get(action.custom_job)
    if job is None:
        return False
    job.cancel_wanted = CancelWanted(action.reason, action.message, action.seconds)
    if job.cancel_error == error:
        return False
    job.cancel_error = error
    return True


def ended_message(job: VertexJob) -> str | None:
    """The item's failure message for a job the supervisor cancelled, once it ended CANCELLED."""
    if job.cancel not in (None, MOOT) and job.state is JobState.CANCELLED:
        return job.cancel_message
    return None
