"""What the supervisor does about work that would hang: fail items, cancel executions, measure."""

from __future__ import annotations

from launch_supervisor.model.items import ItemState
from launch_supervisor.model.observations import ExecutionSeen, ItemSeen, VertexSeen
from launch_supervisor.model.queue import QueueState
from launch_supervisor.model.remedies import (
    STRANDED_MARGIN,
    cancel_answered,
    cancel_failed,
    hung_items,
    item_failed,
    orphaned_items,
    post_submit,
    stop_after_submit,
    stranded_items,
)
from launch_supervisor.model.state import State
from launch_supervisor.model.vertex import JobState, VertexJob
from tests.supervisor.model.test_queue import ex, pending, ready, two_claimed

JOB_A = "projects/p/locations/r/customJobs/1"


def observe_vertex(jobs: dict[str, VertexJob], seen: list[VertexSeen], queues: list[QueueState], now: float) -> None:
    """A CustomJob listing folded into `jobs` by the model's root, which links jobs to items."""
    root = State()
    root.vertex_jobs = jobs
    root.queues = {q.policy.name: q for q in queues}
    root.observe_vertex(seen, now, horizon=0.0)


def test_hung_items_are_failed_exactly_once() -> None:
    """A CustomJob that ends FAILED while its item is CLAIMED yields one FailItem, then none."""
    state = ready()
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a"), ItemSeen("b", ItemState.CLAIMED, "run-b")], 0.0)
    jobs = [
        VertexJob("projects/p/locations/r/customJobs/1", "run-a", JobState.FAILED, 0.0, error="OOM"),
        VertexJob("projects/p/locations/r/customJobs/2", "run-b", JobState.SUCCEEDED, 0.0),
    ]
    actions = hung_items(state, jobs)
    assert [(a.item_id, a.message) for a in actions] == [("a", "OOM")]
    item_failed(state, "a")
    assert hung_items(state, jobs) == []
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a")], 5.0)
    assert hung_items(state, jobs) == []


def test_an_item_whose_execution_bailed_out_before_a_custom_job_is_failed_once() -> None:
    """The watchdog stopped the agent before it failed the item: the supervisor fails it, once, and
    only after a listing made since the execution ended still shows it CLAIMED."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.event_claimed(ex(1), "a", 2.0)
    state.event_bailout(ex(1), "permission_denied", "permission", 3.0)
    state.observe_executions([ExecutionSeen(ex(1), "failed", 1.0, 1.5, 4.0)], 4.0)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, None)], 3.5)  # listed before it ended
    assert orphaned_items(state) == []
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, None)], 5.0)
    [action] = orphaned_items(state)
    assert (action.item_id, action.reason) == ("a", "execution_ended")
    assert "(permission, rule permission_denied)" in action.message
    item_failed(state, "a")
    assert orphaned_items(state) == []


def test_an_inferred_claim_never_fails_an_item() -> None:
    """Without the execution's own `claimed` event the pairing is a guess: the item is left alone."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, None)], 2.0)
    state.observe_executions([ExecutionSeen(ex(1), "failed", 1.0, 1.5, 3.0)], 3.0)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, None)], 5.0)
    assert state.items["a"].claimed_by == ex(1)
    assert orphaned_items(state) == []


def submitted_and_lingering(
    stop_after_submit: float = 60.0, confirmed: bool = True
) -> tuple[QueueState, dict[str, VertexJob]]:
    """ex(1) claims item a (by its own event, or only by inference), the agent creates the CustomJob
    at t=10 (listed with the run id and trace id), and the execution keeps running."""
    state = ready(stop_after_submit=stop_after_submit)
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.observe_executions([ExecutionSeen(ex(1), "running", 1.0, 2.0, None)], 3.0)
    if confirmed:
        state.event_claimed(ex(1), "a", 4.0)
    else:
        state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a")], 4.0)
    jobs: dict[str, VertexJob] = {}
    observe_vertex(jobs, [VertexSeen(JOB_A, "run-a", JobState.PENDING, 10.0, None, None, item_id="a")], [state], 12.0)
    return state, jobs


def test_an_execution_running_after_its_custom_job_is_cancelled_once_after_stop_after_submit() -> None:
    """Not before stop_after_submit has passed since the job's create_time; then one cancel, never two."""
    state, jobs = submitted_and_lingering(stop_after_submit=60.0)
    assert state.items["a"].vertex_job == JOB_A  # linked by the trace id, before any listing shows the run id
    assert stop_after_submit(state, jobs, 69.9) == []
    [action] = stop_after_submit(state, jobs, 70.0)
    assert (action.execution, action.item_id, action.custom_job, action.reason) == (
        ex(1),
        "a",
        JOB_A,
        "stop_after_submit",
    )
    assert action.seconds == 60.0
    assert cancel_failed(state, action, "ServiceUnavailable: 503") is True
    assert cancel_failed(state, action, "ServiceUnavailable: 503") is False  # logged once
    assert len(stop_after_submit(state, jobs, 75.0)) == 1  # a failed cancel is tried again
    [fact] = cancel_answered(state, action, accepted=True)
    assert (fact.kind, fact.execution, fact.detail, fact.custom_job) == (
        "cancel_requested",
        ex(1),
        "stop_after_submit",
        JOB_A,
    )
    assert stop_after_submit(state, jobs, 80.0) == []
    assert stop_after_submit(state, jobs, 1000.0) == []


def test_no_cancel_when_off_ended_moot_or_already_cancelling() -> None:
    """stop_after_submit = 0 is off; an ended execution is left alone; "nothing to cancel" or a cancel
    the listing already shows under way ends the attempts."""
    off, jobs = submitted_and_lingering(stop_after_submit=0.0)
    assert stop_after_submit(off, jobs, 1000.0) == []

    ended, jobs = submitted_and_lingering()
    ended.observe_executions([ExecutionSeen(ex(1), "succeeded", 1.0, 2.0, 12.0)], 20.0)
    assert stop_after_submit(ended, jobs, 1000.0) == []

    moot, jobs = submitted_and_lingering()
    [action] = stop_after_submit(moot, jobs, 100.0)
    assert cancel_answered(moot, action, accepted=False) == []
    assert stop_after_submit(moot, jobs, 200.0) == []

    cancelling, jobs = submitted_and_lingering()
    cancelling.observe_executions([ExecutionSeen(ex(1), "running", 1.0, 2.0, None, cancelling=True)], 50.0)
    assert stop_after_submit(cancelling, jobs, 100.0) == []


def test_a_cancel_whose_answer_was_lost_counts_once_the_listing_shows_it_took() -> None:
    """CancelExecution failed with no answer but took: the listing showing the execution cancelling
    (or cancelled) reports it, once, even after a retry that found nothing to cancel."""
    lost, jobs = submitted_and_lingering()
    [action] = stop_after_submit(lost, jobs, 100.0)
    assert cancel_failed(lost, action, "DeadlineExceeded") is True
    [fact] = lost.observe_executions([ExecutionSeen(ex(1), "running", 1.0, 2.0, None, cancelling=True)], 101.0)
    assert (fact.kind, fact.execution, fact.detail, fact.custom_job) == (
        "cancel_requested",
        ex(1),
        "stop_after_submit",
        JOB_A,
    )
    assert stop_after_submit(lost, jobs, 200.0) == []
    ended = lost.observe_executions([ExecutionSeen(ex(1), "cancelled", 1.0, 2.0, 102.0)], 103.0)
    assert [f for f in ended if f.kind == "cancel_requested"] == []

    retried, jobs = submitted_and_lingering()
    [action] = stop_after_submit(retried, jobs, 100.0)
    cancel_failed(retried, action, "DeadlineExceeded")
    assert cancel_answered(retried, action, accepted=False) == []  # the first one took, or it ended
    ended = retried.observe_executions([ExecutionSeen(ex(1), "cancelled", 1.0, 2.0, 102.0)], 103.0)
    assert [f.kind for f in ended if f.kind == "cancel_requested"] == ["cancel_requested"]

    answered, jobs = submitted_and_lingering()
    [action] = stop_after_submit(answered, jobs, 100.0)
    cancel_failed(answered, action, "DeadlineExceeded")
    assert len(cancel_answered(answered, action, accepted=True)) == 1
    seen = answered.observe_executions([ExecutionSeen(ex(1), "running", 1.0, 2.0, None, cancelling=True)], 101.0)
    assert seen == []

    elsewhere, jobs = submitted_and_lingering()  # cancelled by someone else: not ours to count
    seen = elsewhere.observe_executions([ExecutionSeen(ex(1), "running", 1.0, 2.0, None, cancelling=True)], 50.0)
    assert seen == []


def test_an_inferred_pairing_is_never_cancelled() -> None:
    """Item a left PENDING and was paired with ex(1) by counting; ex(1) may be submitting another item."""
    state, jobs = submitted_and_lingering(confirmed=False)
    assert state.executions[ex(1)].vertex_job == JOB_A
    assert stop_after_submit(state, jobs, 1000.0) == []


def test_a_claimed_event_confirms_the_pairing_a_listing_inferred_first() -> None:
    """Under load the listing may pair the item before the execution's own `claimed` event arrives:
    the event, agreeing, makes the pairing certain, so the lingering execution is cancelled."""
    state, jobs = submitted_and_lingering(confirmed=False)
    assert state.event_claimed(ex(1), "a", 13.0) == []  # nothing new to count
    assert state.items["a"].claim_confirmed
    assert [a.execution for a in stop_after_submit(state, jobs, 70.0)] == [ex(1)]


def test_a_submitted_event_pairs_the_job_with_certainty() -> None:
    """The execution's own `submitted` event names the job: enough without a `claimed` event."""
    state = ready(stop_after_submit=5.0)
    state.dispatched(ex(1), 1.0)
    state.event_submitted(ex(1), JOB_A, 3.0)
    jobs = {JOB_A: VertexJob(JOB_A, "run-a", JobState.RUNNING, 2.0)}
    assert [a.execution for a in stop_after_submit(state, jobs, 7.0)] == [ex(1)]
    assert stop_after_submit(state, {}, 7.0) == []  # not listed yet: no create_time to go by
    jobs[JOB_A].created = 0.0
    assert stop_after_submit(state, jobs, 7.0) == []

    inferred, jobs = submitted_and_lingering(confirmed=False)  # the listing linked the job first, by counting
    inferred.event_submitted(ex(1), JOB_A, 20.0)
    assert [a.execution for a in stop_after_submit(inferred, jobs, 70.0)] == [ex(1)]


def test_post_submit_is_observed_once_from_googles_times() -> None:
    """completion_time minus create_time, once per execution; only when both are known."""
    state, jobs = submitted_and_lingering()
    assert post_submit(state, jobs) == []  # still running
    state.observe_executions([ExecutionSeen(ex(1), "cancelled", 1.0, 2.0, 72.5)], 80.0)
    [fact] = post_submit(state, jobs)
    assert (fact.kind, fact.execution, fact.seconds, fact.custom_job) == ("post_submit", ex(1), 62.5, JOB_A)
    assert post_submit(state, jobs) == []
    state.observe_executions([ExecutionSeen(ex(1), "cancelled", 1.0, 2.0, 72.5)], 90.0)
    assert post_submit(state, jobs) == []


def test_post_submit_waits_for_the_job_and_skips_a_missing_completion_time() -> None:
    """The job listed after the execution ended still gives its sample; no completion_time, none."""
    state = two_claimed()
    state.observe_executions(
        [ExecutionSeen(ex(1), "succeeded", 1.0, 1.5, 12.0), ExecutionSeen(ex(2), "succeeded", 1.0, 1.5, None)], 13.0
    )
    jobs: dict[str, VertexJob] = {}
    assert post_submit(state, jobs) == []
    seen = [
        VertexSeen(JOB_A, "run-a", JobState.RUNNING, 10.0, None, None, item_id="a"),
        VertexSeen("projects/p/locations/r/customJobs/2", "run-b", JobState.RUNNING, 10.0, None, None, item_id="b"),
    ]
    observe_vertex(jobs, seen, [state], 20.0)
    assert [(f.execution, f.seconds) for f in post_submit(state, jobs)] == [(ex(1), 2.0)]
    assert post_submit(state, jobs) == []


def test_an_item_claimed_longer_than_any_execution_lives_without_a_job_is_stranded() -> None:
    """Past execution_timeout plus the margin since it was seen claimed, with no CustomJob and no
    execution in flight holding it: given up for lost; not before, and not while one holds it."""
    state = ready(stranded_after=1000.0 + STRANDED_MARGIN)
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a")], 10.0)  # inferred for ex(1)
    limit = 10.0 + 1000.0 + STRANDED_MARGIN  # seen claimed at 10
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a")], limit + 1)
    assert stranded_items(state, limit + 1) == []  # ex(1) still in flight
    state.observe_executions([ExecutionSeen(ex(1), "failed", 1.0, 2.0, 1001.0)], limit + 2)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a")], limit + 3)
    assert stranded_items(state, limit - 1) == []  # too soon
    [action] = stranded_items(state, limit + 3)
    assert (action.item_id, action.reason, action.stage, action.source) == ("a", "stranded", "agent", "run-a")
    assert "no Vertex AI job" in action.message
    state.items["a"].vertex_job = JOB_A  # a search for its run found a CustomJob
    assert stranded_items(state, limit + 4) == []


def test_an_item_the_capped_listing_never_showed_claimed_is_failed_when_its_job_fails() -> None:
    """Past the listing's first 100 items, an item is last seen PENDING; its `claimed` event and its
    CustomJob (its trace id) prove it was taken, so a failed job still fails it."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.event_claimed(ex(1), "a", 2.0)
    jobs = {JOB_A: VertexJob(JOB_A, "run-a", JobState.FAILED, 3.0, error="OOM", item_id="a")}
    [action] = hung_items(state, jobs.values())
    assert (action.item_id, action.message, action.reason) == ("a", "OOM", "vertex_job_ended")
