"""A queue's limits on its CustomJobs: a job waiting too long for capacity, or running too long, is
cancelled once and its item failed once; a job that ended first is never cancelled."""

from __future__ import annotations

from dataclasses import replace

from launch_supervisor.model.facts import FactKind
from launch_supervisor.model.items import ItemState
from launch_supervisor.model.limits import MAX_QUEUED, MAX_RUNTIME
from launch_supervisor.model.observations import ItemSeen, VertexSeen
from launch_supervisor.model.state import State
from launch_supervisor.model.stops import MOOT
from launch_supervisor.model.vertex import JobState
from tests.supervisor.model.test_queue import policy

CREATED = 100.0
QUEUED_LIMIT = 600.0
RUNTIME_LIMIT = 3600.0


def seen(state: JobState = JobState.QUEUED, started: float | None = None, ended: float | None = None) -> VertexSeen:
    return VertexSeen(
        "projects/x/locations/r/customJobs/1",
        "run-1",
        state,
        created=CREATED,
        ended=ended,
        error="CustomJob was cancelled." if state is JobState.CANCELLED else None,
        item_id="i1",
        entity="team",
        project="p",
        started=started,
    )


def limited(first: VertexSeen, **limits: float) -> State:
    """Queue `q` with the limits, one CLAIMED item, and its job listed once (so it is linked)."""
    state = State()
    state.apply_policy([replace(policy(name="q"), cancel_stopped_runs=False, **limits)])
    state.queues["q"].observe_items([ItemSeen("i1", ItemState.CLAIMED, "run-1")], 1.0)
    state.observe_executions("q", [], 1.0, 1.0)
    state.observe_vertex([first], CREATED + 1, horizon=0.0, complete=True)
    return state


def test_a_job_waiting_past_max_queued_is_cancelled_once_and_its_item_failed_once() -> None:
    """QUEUED, then PENDING, past max_queued: one cancel, one fact, and the item failed once when it ends CANCELLED."""
    state = limited(seen(), max_queued=QUEUED_LIMIT)
    assert state.job_cancels(CREATED + QUEUED_LIMIT - 1) == []
    state.observe_vertex([seen(JobState.PENDING)], CREATED + QUEUED_LIMIT, horizon=0.0, complete=True)
    [action] = state.job_cancels(CREATED + QUEUED_LIMIT)  # PENDING still waits for its machines
    assert (action.queue, action.reason, action.seconds) == ("q", MAX_QUEUED, QUEUED_LIMIT)
    assert action.message == "waited 600 s for capacity; CustomJob cancelled"
    [fact] = state.job_cancel_answered(action, accepted=True)
    assert (fact.kind, fact.detail, fact.seconds) == (FactKind.VERTEX_CANCEL_REQUESTED, MAX_QUEUED, QUEUED_LIMIT)
    assert state.job_cancels(CREATED + 10 * QUEUED_LIMIT) == []
    assert state.chores("q", CREATED + QUEUED_LIMIT).fail == []  # not until it ended CANCELLED
    state.observe_vertex([seen(JobState.CANCELLED, ended=CREATED + 700)], CREATED + 701, horizon=0.0, complete=True)
    [fail] = state.chores("q", CREATED + 701).fail
    assert (fail.item_id, fail.message, fail.reason, fail.stage) == ("i1", action.message, MAX_QUEUED, "run")
    state.item_failed("q", "i1")
    assert state.chores("q", CREATED + 800).fail == []


def test_a_job_running_past_max_runtime_is_cancelled_once_and_its_item_failed_with_the_reason() -> None:
    """Timed from start_time, not creation; one cancel, then the item failed with the limit's message."""
    started = CREATED + 50
    state = limited(seen(JobState.RUNNING, started=started), max_runtime=RUNTIME_LIMIT, max_queued=QUEUED_LIMIT)
    assert state.job_cancels(started + RUNTIME_LIMIT - 1) == []  # running: max_queued no longer applies
    [action] = state.job_cancels(started + RUNTIME_LIMIT)
    assert (action.reason, action.seconds) == (MAX_RUNTIME, RUNTIME_LIMIT)
    assert action.message == "ran 3600 s, past the queue's max_runtime of 3600 s; CustomJob cancelled"
    state.job_cancel_answered(action, accepted=True)
    assert state.job_cancels(started + 2 * RUNTIME_LIMIT) == []
    ended = started + RUNTIME_LIMIT + 5
    state.observe_vertex([seen(JobState.CANCELLED, started, ended)], ended + 1, horizon=0.0, complete=True)
    [fail] = state.chores("q", ended + 1).fail
    assert (fail.message, fail.reason) == (action.message, MAX_RUNTIME)


def test_a_job_that_ended_before_its_limit_is_never_cancelled() -> None:
    """Succeeded, failed, or cancelled by someone else before the limits came due: nothing to do, ever."""
    for end in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        state = limited(seen(JobState.RUNNING, started=CREATED + 1), max_runtime=60.0, max_queued=60.0)
        state.observe_vertex([seen(end, CREATED + 1, CREATED + 30)], CREATED + 31, horizon=0.0, complete=True)
        assert state.job_cancels(CREATED + 10_000) == []
        [fail] = state.chores("q", CREATED + 31).fail or [None]
        if end is JobState.SUCCEEDED:
            assert fail is None
        else:
            assert fail is not None
            assert fail.reason == "vertex_job_ended"


def test_a_job_that_ended_while_its_cancel_was_sent_is_failed_with_its_own_end() -> None:
    """Vertex AI answers "nothing to cancel": the cancel is moot, never sent again, and the item is
    failed (if at all) by the job's own end state, not with the limit's message."""
    state = limited(seen(), max_queued=QUEUED_LIMIT)
    [action] = state.job_cancels(CREATED + QUEUED_LIMIT)
    assert state.job_cancel_answered(action, accepted=False) == []
    assert state.vertex_jobs[action.custom_job].cancel == MOOT
    assert state.job_cancels(CREATED + 2 * QUEUED_LIMIT) == []
    state.observe_vertex([seen(JobState.FAILED, ended=CREATED + 601)], CREATED + 602, horizon=0.0, complete=True)
    [fail] = state.chores("q", CREATED + 602).fail
    assert fail.reason == "vertex_job_ended"


def test_a_cancel_whose_answer_was_lost_counts_once_the_listing_shows_it_took() -> None:
    """A failed call is tried again; the listing showing CANCELLING counts it once, with its reason."""
    state = limited(seen(), max_queued=QUEUED_LIMIT)
    [action] = state.job_cancels(CREATED + QUEUED_LIMIT)
    assert state.job_cancel_failed(action, "DeadlineExceeded: 504")
    [again] = state.job_cancels(CREATED + QUEUED_LIMIT + 15)  # tried again at the next tick
    assert again.reason == MAX_QUEUED
    facts = state.observe_vertex([seen(JobState.CANCELLING)], CREATED + 620, horizon=0.0, complete=True)
    [fact] = [f for f in facts if f.kind is FactKind.VERTEX_CANCEL_REQUESTED]
    assert (fact.detail, fact.seconds) == (MAX_QUEUED, QUEUED_LIMIT)
    assert state.job_cancels(CREATED + 700) == []
    state.observe_vertex([seen(JobState.CANCELLED, ended=CREATED + 630)], CREATED + 631, horizon=0.0, complete=True)
    [fail] = state.chores("q", CREATED + 631).fail
    assert (fail.reason, fail.message) == (MAX_QUEUED, action.message)


def test_no_limits_no_cancels() -> None:
    """Without max_queued and max_runtime a job may run a month untouched."""
    state = limited(seen(JobState.RUNNING, started=CREATED))
    assert state.job_cancels(CREATED + 30 * 86400) == []
