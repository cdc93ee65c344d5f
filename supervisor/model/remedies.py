"""What the supervisor does about work that would otherwise hang or waste money (docs/architecture.md,
Data flow): fail an item nothing will ever run, cancel an execution still running after it
submitted, and measure how long executions ran past their submission.

Each function reads one queue's state and the known CustomJobs, and returns the calls to make; the
daemon makes them and reports the answers back (`item_failed`, `cancel_answered`, `cancel_failed`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from launch_supervisor.model.executions import Phase
from launch_supervisor.model.facts import Fact, FactKind
from launch_supervisor.model.items import ItemState
from launch_supervisor.model.pairing import custom_job
from launch_supervisor.model.queue import QueueState
from launch_supervisor.model.stops import RUN_STOPPED, ended_message
from launch_supervisor.model.vertex import HANGING, VertexJob

FAIL_STAGES = {
    "vertex_job_ended": "run",
    "run_stopped": "run",
    "max_queued": "run",
    "max_runtime": "run",
    "execution_ended": "agent",
    "stranded": "agent",
}
"""Why the supervisor fails an item → the failRunQueueItem stage it reports."""
ENDED_BADLY = frozenset({Phase.BAILOUT, Phase.FAILED, Phase.TIMEOUT, Phase.CANCELLED})
CANCEL_REASONS = ("stop_after_submit",)
STRANDED_MARGIN = 600.0
"""The default `stranded_after` is the execution timeout plus this: by then every execution that
could still submit the item has ended."""
"""Why the supervisor cancels an execution (the label of the cancel counter)."""


@dataclass(frozen=True, slots=True)
class FailItem:
    """Call failRunQueueItem: the item is still CLAIMED but nothing will ever run it."""

    item_id: str
    message: str
    reason: str
    """vertex_job_ended: its CustomJob ended badly; run_stopped, max_queued, max_runtime: the supervisor
    cancelled its CustomJob because its run was stopped in W&B, it waited too long for capacity, or
    it ran too long; execution_ended: its execution ended without one;
    stranded: CLAIMED for longer than any execution lives, with no CustomJob and no execution."""
    source: str
    """The CustomJob or execution that ended."""

    @property
    def stage(self) -> str:
        return FAIL_STAGES[self.reason]


@dataclass(frozen=True, slots=True)
class CancelExecution:
    """Call CancelExecution: the execution's CustomJob exists, yet the execution is still running, so
    its watchdog missed the submission; it would hold a slot of max_inflight until its task timeout."""

    queue: str
    execution: str
    item_id: str | None
    custom_job: str
    reason: str
    """One of CANCEL_REASONS."""
    seconds: float
    """Since the CustomJob was created."""


def hung_items(state: QueueState, vertex_jobs: Iterable[VertexJob]) -> list[FailItem]:
    """Items whose CustomJob ended FAILED, CANCELLED or EXPIRED, and that nobody failed yet."""
    by_run = {i.run_id: i for i in state.items.values() if i.run_id}
    actions = []
    for job in vertex_jobs:
        item = state.items.get(job.item_id) if job.item_id else None
        if item is None and job.run_id:
            item = by_run.get(job.run_id)
        if item is None or job.state not in HANGING:
            continue
        # The job names the item, so the item was claimed, whatever the (capped) listing last showed.
        if item.state is not ItemState.FAILED and not item.failed_by_supervisor:
            if (cancelled := ended_message(job)) is not None:
                actions.append(FailItem(item.id, cancelled, job.cancel or RUN_STOPPED, job.name))
                continue
            message = job.error or f"Vertex AI job {job.name} ended {job.state.value}"
            actions.append(FailItem(item.id, message, "vertex_job_ended", job.name))
    return actions


def orphaned_items(state: QueueState) -> list[FailItem]:
    """Items still CLAIMED, in a listing made after the execution that claimed them ended badly
    without creating a CustomJob: the agent was stopped before it could fail the item itself.
    Only claims a `claimed` event confirmed count: an inferred pairing may name the wrong item."""
    actions = []
    for item in state.items.values():
        if (
            item.state is not ItemState.CLAIMED
            or not item.claim_confirmed
            or item.failed_by_supervisor
            or item.vertex_job is not None
            or item.last_seen < state.items_seen_at
        ):
            continue
        execution = state.executions.get(item.claimed_by or "")
        if execution is None or not execution.counted or execution.phase not in ENDED_BADLY:
            continue
        if execution.finished is None or execution.finished >= state.items_seen_at:
            continue  # the listing may predate the agent's own failRunQueueItem
        short = execution.name.rsplit("/", 1)[-1]
        cause = execution.category or execution.phase.value
        if execution.bailout_rule:
            cause += f", rule {execution.bailout_rule}"
        message = f"launcher execution {short} ended ({cause}) before it created a Vertex AI job"
        actions.append(FailItem(item.id, message, "execution_ended", execution.name))
    return actions


def stranded_items(state: QueueState, now: float) -> list[FailItem]:
    """The last resort: items CLAIMED for `stranded_after` (by default longer than any execution can
    live), with no CustomJob linked and no execution in flight that took them. Something
    was lost on the way (an agent stopped before it failed the item, while nothing saw it). The
    daemon first looks for a CustomJob of the item's run however old (`find_run`), and fails the
    item only if there is none."""
    limit = state.policy.stranded_after
    actions = []
    for item in state.items.values():
        if (
            item.state is not ItemState.CLAIMED
            or item.failed_by_supervisor
            or item.vertex_job is not None
            or item.claimed_seen is None
            or now - item.claimed_seen < limit
            or item.last_seen < state.items_seen_at
        ):
            continue
        holder = state.executions.get(item.claimed_by or "")
        if holder is not None and holder.in_flight:
            continue
        minutes = (now - item.claimed_seen) / 60
        message = (
            f"item CLAIMED for {minutes:.0f} min with no Vertex AI job and no launcher execution running"
            f" (run {item.run_id or 'unknown'}): given up for lost"
        )
        actions.append(FailItem(item.id, message, "stranded", item.run_id or ""))
    return actions


def item_failed(state: QueueState, item_id: str) -> None:
    """failRunQueueItem succeeded: never again for this item."""
    item = state.items.get(item_id)
    if item is not None:
        item.failed_by_supervisor = True
        item.state = ItemState.FAILED


def stop_after_submit(state: QueueState, jobs: Mapping[str, VertexJob], now: float) -> list[CancelExecution]:
    """Executions still running `stop_after_submit` seconds after their CustomJob was created.

    The watchdog stops the agent the moment it submits; one still running missed that, and would
    hold its slot until the task timeout. Only a pairing the execution reported counts (see
    `custom_job`): cancelling on an inferred one could stop an execution submitting another item.
    """
    limit = state.policy.stop_after_submit
    if limit <= 0:
        return []
    actions = []
    for execution in state.executions.values():
        if not execution.in_flight or execution.cancel_settled:
            continue
        job = custom_job(state.items, execution, jobs, certain=True)
        if job is None or job.created <= 0 or now - job.created < limit:
            continue  # no create_time (0) means no clock to go by
        seconds = now - job.created
        actions.append(
            CancelExecution(state.policy.name, execution.name, execution.item_id, job.name, CANCEL_REASONS[0], seconds)
        )
    return actions


def cancel_answered(state: QueueState, action: CancelExecution, accepted: bool) -> list[Fact]:
    """CancelExecution answered: accepted, or nothing to cancel (gone, or ended). Never again. After
    an attempt that failed with no answer, "nothing to cancel" proves nothing: the listing tells
    whether that attempt took (`Execution.cancel_under_way`)."""
    execution = state.executions.get(action.execution)
    if execution is not None:
        execution.cancel_settled = True
        execution.cancel_error = None
        if accepted:
            execution.cancel_unconfirmed = None
    return [_cancel_requested(state, action)] if accepted else []


def _cancel_requested(state: QueueState, action: CancelExecution) -> Fact:
    return Fact(
        FactKind.CANCEL_REQUESTED,
        state.policy.name,
        action.execution,
        seconds=action.seconds,
        detail=action.reason,
        custom_job=action.custom_job,
    )


def cancel_failed(state: QueueState, action: CancelExecution, error: str) -> bool:
    """CancelExecution failed; it is tried again later, and may have taken with its answer lost
    (see `cancel_answered`). True when the error is new (worth a log line)."""
    execution = state.executions.get(action.execution)
    if execution is None:
        return False
    execution.cancel_unconfirmed = _cancel_requested(state, action)
    if execution.cancel_error == error:
        return False
    execution.cancel_error = error
    return True


def post_submit(state: QueueState, jobs: Mapping[str, VertexJob]) -> list[Fact]:
    """Executions that ended after submitting: Cloud Run's completion_time minus the CustomJob's
    create_time, once each. Both clocks are Google's; without either time nothing is observed."""
    facts = []
    for execution in state.executions.values():
        if execution.post_submit_counted or execution.in_flight or execution.completed is None:
            continue
        if execution.phase is Phase.IDLE:
            continue
        job = custom_job(state.items, execution, jobs, certain=False)
        if job is None or job.created <= 0:
            continue
        execution.post_submit_counted = True
        seconds = max(0.0, execution.completed - job.created)
        facts.append(
            Fact(FactKind.POST_SUBMIT, state.policy.name, execution.name, seconds=seconds, custom_job=job.name)
        )
    return facts
