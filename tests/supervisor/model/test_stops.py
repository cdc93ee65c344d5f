"""Runs stopped in W&B: which runs to ask about, when to cancel their CustomJob, and the item after."""

from __future__ import annotations

from dataclasses import replace

from launch_supervisor.model.facts import FactKind
from launch_supervisor.model.items import ItemState
from launch_supervisor.model.observations import ItemSeen, VertexSeen
from launch_supervisor.model.state import State
from launch_supervisor.model.stops import MOOT, RUN_STOPPED, STOPPED_MESSAGE, StopQuery
from launch_supervisor.model.vertex import JobState
from tests.supervisor.model.test_queue import policy

GRACE = 60.0


def job(n: int, state: JobState = JobState.RUNNING, project: str = "p1", ended: float | None = None) -> VertexSeen:
    return VertexSeen(
        f"projects/x/locations/r/customJobs/{n}",
        f"run-{n}",
        state,
        created=5.0,
        ended=ended,
        error="CANCELLED" if state is JobState.CANCELLED else None,
        item_id=f"i{n}",
        entity="team",
        project=project,
    )


def running(*jobs: VertexSeen, cancel: bool = True) -> State:
    """Queue `q` with one CLAIMED item per job, and the jobs listed once (so they are linked)."""
    state = State()
    state.apply_policy([replace(policy(name="q"), cancel_stopped_runs=cancel, stop_grace=GRACE)])
    queue = state.queues["q"]
    queue.observe_items([ItemSeen(j.item_id or "", ItemState.CLAIMED, j.run_id) for j in jobs], 1.0)
    state.observe_executions("q", [], 1.0, 1.0)
    state.observe_vertex(jobs, 6.0, horizon=0.0, complete=True)
    return state


def test_live_jobs_runs_are_asked_about_in_one_query_per_project() -> None:
    """QUEUED, PENDING and RUNNING jobs are asked about, grouped by (entity, project); ended ones,
    and jobs without a project in their env, are not."""
    state = running(
        job(1),
        job(2, JobState.QUEUED),
        job(3, JobState.PENDING, project="p2"),
        job(4, JobState.SUCCEEDED, ended=9.0),
        replace(job(5), project=None),
    )
    assert state.stop_queries() == [
        StopQuery("team", "p1", ("run-1", "run-2")),
        StopQuery("team", "p2", ("run-3",)),
    ]


def test_a_run_stopped_for_the_grace_gets_its_job_cancelled_once() -> None:
    """Seen stopped at 10: not before 10 + grace; then one cancel, a fact, and never again."""
    state = running(job(1), job(2))
    [query] = state.stop_queries()
    state.runs_read(query, {"run-1"}, 10.0)
    assert state.job_cancels(10.0 + GRACE - 1) == []
    state.runs_read(query, {"run-1"}, 30.0)  # still stopped: the grace counts from the first sighting
    [action] = state.job_cancels(10.0 + GRACE)
    assert (action.queue, action.custom_job, action.run_id, action.reason) == ("q", job(1).name, "run-1", RUN_STOPPED)
    [fact] = state.job_cancel_answered(action, accepted=True)
    assert (fact.kind, fact.detail, fact.custom_job, fact.seconds) == (
        FactKind.VERTEX_CANCEL_REQUESTED,
        RUN_STOPPED,
        job(1).name,
        GRACE,
    )
    assert state.job_cancels(1000.0) == []
    assert state.stop_queries() == [StopQuery("team", "p1", ("run-2",))]


def test_the_item_of_a_cancelled_job_is_failed_once_with_the_stop_message() -> None:
    state = running(job(1))
    [query] = state.stop_queries()
    state.runs_read(query, {"run-1"}, 10.0)
    [action] = state.job_cancels(10.0 + GRACE)
    state.job_cancel_answered(action, accepted=True)
    state.observe_vertex([replace(job(1), state=JobState.CANCELLING)], 71.0, horizon=0.0, complete=True)
    assert state.chores("q", 71.0).fail == []
    state.observe_vertex([job(1, JobState.CANCELLED, ended=72.0)], 73.0, horizon=0.0, complete=True)
    [fail] = state.chores("q", 73.0).fail
    assert (fail.item_id, fail.message, fail.reason, fail.stage) == ("i1", STOPPED_MESSAGE, RUN_STOPPED, "run")
    state.item_failed("q", "i1")
    assert state.chores("q", 80.0).fail == []


def test_a_job_cancelled_elsewhere_fails_its_item_with_vertex_s_message() -> None:
    """Cancelled in the console or by gcloud: the item is failed too, with what Vertex AI says."""
    state = running(job(1))
    state.observe_vertex([job(1, JobState.CANCELLED, ended=9.0)], 10.0, horizon=0.0, complete=True)
    [fail] = state.chores("q", 10.0).fail
    assert (fail.item_id, fail.message, fail.reason) == ("i1", "CANCELLED", "vertex_job_ended")


def test_a_stopped_run_whose_job_ends_inside_the_grace_is_never_cancelled() -> None:
    state = running(job(1))
    [query] = state.stop_queries()
    state.runs_read(query, {"run-1"}, 10.0)
    state.observe_vertex([job(1, JobState.SUCCEEDED, ended=20.0)], 21.0, horizon=0.0, complete=True)
    assert state.job_cancels(10.0 + GRACE * 10) == []
    assert state.stop_queries() == []
    assert state.chores("q", 100.0).fail == []


def test_a_run_no_longer_stopped_starts_its_grace_again() -> None:
    state = running(job(1))
    [query] = state.stop_queries()
    state.runs_read(query, {"run-1"}, 10.0)
    state.runs_read(query, set(), 20.0)
    state.runs_read(query, {"run-1"}, 50.0)
    assert state.job_cancels(10.0 + GRACE) == []
    assert len(state.job_cancels(50.0 + GRACE)) == 1


def test_a_queue_with_the_switch_off_never_asks_nor_cancels() -> None:
    state = running(job(1), cancel=False)
    assert state.stop_queries() == []
    state.runs_read(StopQuery("team", "p1", ("run-1",)), {"run-1"}, 10.0)
    assert state.job_cancels(1000.0) == []


def test_a_failed_cancel_is_tried_again_and_a_moot_one_never() -> None:
    """An error: asked again at the next tick, logged when new. Nothing to cancel at the first attempt
    (the job ended or is gone): never again, and its item keeps the job's own end state as its message."""
    state = running(job(1))
    [query] = state.stop_queries()
    state.runs_read(query, {"run-1"}, 10.0)
    [action] = state.job_cancels(100.0)
    assert state.job_cancel_failed(action, "Unavailable: 503")
    assert not state.job_cancel_failed(action, "Unavailable: 503")
    [again] = state.job_cancels(130.0)
    assert again.custom_job == action.custom_job

    state = running(job(1))
    [query] = state.stop_queries()
    state.runs_read(query, {"run-1"}, 10.0)
    [action] = state.job_cancels(100.0)
    assert state.job_cancel_answered(action, accepted=False) == []
    assert state.vertex_jobs[job(1).name].cancel == MOOT
    assert state.job_cancels(200.0) == []
    state.observe_vertex([job(1, JobState.CANCELLED, ended=150.0)], 160.0, horizon=0.0, complete=True)
    [fail] = state.chores("q", 160.0).fail
    assert fail.reason == "vertex_job_ended"


def test_a_cancel_whose_answer_was_lost_counts_as_the_supervisor_s_once_the_listing_shows_it() -> None:
    """The first CancelCustomJob took effect but its answer was lost (an error here). The next listing
    shows the job CANCELLING: the cancel was ours, counted once, and the item gets the stop's message."""
    state = running(job(1))
    [query] = state.stop_queries()
    state.runs_read(query, {"run-1"}, 10.0)
    [action] = state.job_cancels(100.0)
    assert state.job_cancel_failed(action, "DeadlineExceeded: 504")
    [fact] = state.observe_vertex([replace(job(1), state=JobState.CANCELLING)], 101.0, horizon=0.0, complete=True)
    assert (fact.kind, fact.detail, fact.custom_job) == (FactKind.VERTEX_CANCEL_REQUESTED, RUN_STOPPED, job(1).name)
    assert state.job_cancels(102.0) == []
    state.observe_vertex([job(1, JobState.CANCELLED, ended=103.0)], 104.0, horizon=0.0, complete=True)
    [fail] = state.chores("q", 104.0).fail
    assert (fail.message, fail.reason) == (STOPPED_MESSAGE, RUN_STOPPED)


def test_nothing_to_cancel_after_a_lost_answer_waits_for_the_listing() -> None:
    """The retry finds the job ended (the listing had not shown it yet): Vertex's "nothing to cancel"
    does not say whose cancel ended it. A listing showing it CANCELLED says it was ours; one showing
    it SUCCEEDED says it ended by itself, and nothing is counted."""
    for end, ours in ((JobState.CANCELLED, True), (JobState.SUCCEEDED, False)):
        state = running(job(1))
        [query] = state.stop_queries()
        state.runs_read(query, {"run-1"}, 10.0)
        [action] = state.job_cancels(100.0)
        assert state.job_cancel_failed(action, "DeadlineExceeded: 504")
        [again] = state.job_cancels(130.0)
        assert state.job_cancel_answered(again, accepted=False) == []
        facts = state.observe_vertex([job(1, end, ended=131.0)], 132.0, horizon=0.0, complete=True)
        assert [f.kind for f in facts if f.kind is FactKind.VERTEX_CANCEL_REQUESTED] == (
            [FactKind.VERTEX_CANCEL_REQUESTED] if ours else []
        )
        fails = state.chores("q", 133.0).fail
        assert [f.message for f in fails] == ([STOPPED_MESSAGE] if ours else [])


def test_a_job_whose_item_is_not_listed_is_watched_by_the_queue_its_env_names() -> None:
    """An item past the queue listing's first page is never linked to its job; the job's env names
    its queue (WANDB_LAUNCH_QUEUE_ENTITY/NAME), so its run is asked about and the job cancelled all
    the same, under that queue. A queue of another entity, or not configured, is not ours."""
    state = running()
    unlisted = replace(job(7), item_id="not-listed", launch_queue=("e", "q"))
    elsewhere = replace(job(8), item_id="other", launch_queue=("another-entity", "q"))
    unknown = replace(job(9), item_id="unknown", launch_queue=("e", "not-configured"))
    state.observe_vertex([unlisted, elsewhere, unknown], 6.0, horizon=0.0, complete=True)
    assert state.vertex_jobs[unlisted.name].queue is None
    [query] = state.stop_queries()
    assert query.runs == ("run-7",)
    state.runs_read(query, {"run-7"}, 10.0)
    [action] = state.job_cancels(10.0 + GRACE)
    assert (action.queue, action.custom_job) == ("q", unlisted.name)
    [fact] = state.job_cancel_answered(action, accepted=True)
    assert fact.queue == "q"


def test_jobs_a_cancel_did_not_end_are_counted_past_the_grace_and_a_margin() -> None:
    """The alert's gauge: live jobs of runs stopped for longer than the grace plus the margin, per
    queue, whether their cancel failed or was accepted and not carried out (Vertex AI cancels on a
    best-effort basis); a job listed CANCELLING, or ended, no longer counts."""
    state = running(job(1), job(2), job(3))
    [query] = state.stop_queries()
    state.runs_read(query, {"run-1", "run-2"}, 10.0)
    assert state.stopped_still_running(10.0 + GRACE + 120.0, 120.0) == {}
    assert state.stopped_still_running(10.0 + GRACE + 121.0, 120.0) == {"q": 2}
    [first, _] = state.job_cancels(100.0)
    state.job_cancel_answered(first, accepted=True)
    assert state.stopped_still_running(500.0, 120.0) == {"q": 2}  # accepted, but still RUNNING
    state.observe_vertex([replace(job(1), state=JobState.CANCELLING)], 501.0, horizon=0.0)
    state.observe_vertex([job(2, JobState.SUCCEEDED, ended=400.0)], 501.0, horizon=0.0)
    assert state.stopped_still_running(502.0, 120.0) == {}
