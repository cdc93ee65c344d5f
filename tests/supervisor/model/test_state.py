"""The model's root: policies, the executions step, CustomJobs and chores across queues."""

from __future__ import annotations

import json

from launch_supervisor.model.breaker import BreakerState
from launch_supervisor.model.facts import FactKind
from launch_supervisor.model.items import ItemState
from launch_supervisor.model.observations import ExecutionSeen, ItemSeen, VertexSeen
from launch_supervisor.model.state import State
from launch_supervisor.model.vertex import VANISH_LISTINGS, VANISHED_JOB, JobState
from tests.supervisor.model.test_queue import ex, pending, policy

JOB_A = "projects/p/locations/r/customJobs/1"


def started(*names: str) -> State:
    """Queues `names`, listed once (items and executions), so they are ready."""
    state = State()
    state.apply_policy([policy(name=name) for name in names])
    for name in names:
        state.queues[name].observe_items([], 0.0)
        state.observe_executions(name, [], 0.0, 0.0)
    return state


def test_apply_policy_adds_updates_and_removes_queues_keeping_what_they_know() -> None:
    """A reload's policies: new queues appear, gone ones go, kept ones take the new settings but keep
    their breaker's state; a queue whose polling stopped for auth is resumed."""
    state = started("a", "b")
    state.queues["a"].breaker.bailout(1.0, "permission")
    state.stop_polling("a", "auth")
    change = state.apply_policy([policy(name="a", breaker_threshold=7, max_inflight=1), policy(name="c")])
    assert (change.added, change.removed, change.resumed) == (("c",), ("b",), ("a",))
    assert list(state.queues) == ["a", "c"]
    a = state.queues["a"]
    assert (a.policy.max_inflight, a.breaker.threshold, a.breaker.state) == (1, 7, BreakerState.OPEN)
    assert state.stopped == {}
    assert not state.ready  # c has not been listed yet


def test_the_executions_step_says_when_to_list_the_items_again() -> None:
    """An execution that finished after the latest item listing makes the items stale: the step asks
    for a listing, and stops asking once one came."""
    state = started("q")
    queue = state.queues["q"]
    queue.observe_items(pending("a"), 1.0)
    queue.dispatched(ex(1), 1.0)
    step = state.observe_executions("q", [ExecutionSeen(ex(1), "running", 1.0, 1.5, None)], 2.0, 2.0)
    assert not step.list_items
    step = state.observe_executions("q", [ExecutionSeen(ex(1), "succeeded", 1.0, 1.5, 3.0)], 4.0, 4.0)
    assert step.list_items
    assert [f.kind for f in step.facts] == [FactKind.FINISHED]
    queue.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a")], 5.0)
    assert not state.observe_executions("q", [], 6.0, 6.0).list_items


def test_an_event_waiting_for_its_execution_is_applied_by_the_listing_that_shows_it() -> None:
    """The watchdog's event came before Cloud Run listed the execution: the listing applies it."""
    state = started("q")
    body = {"event": "watchdog.claimed", "execution": "x1", "queue": "q", "item_id": "i1"}
    assert state.receive(json.dumps(body).encode(), {}, 1.0, 1.0).result == "buffered"
    step = state.observe_executions("q", [ExecutionSeen(ex(1), "running", 0.5, 0.6, None)], 2.0, 2.0)
    [applied] = step.events
    assert (applied.type, applied.result) == ("watchdog.claimed", "applied")
    assert state.queues["q"].executions[ex(1)].item_id == "i1"


def test_custom_jobs_link_to_the_queue_whose_item_they_run_and_ended_ones_are_forgotten() -> None:
    """A job carrying an item's trace id belongs to that item's queue; its end is a fact once; an
    ended job older than the horizon is dropped, a running one kept."""
    state = started("p", "q")
    state.queues["q"].observe_items([ItemSeen("a", ItemState.CLAIMED, None)], 1.0)
    seen = VertexSeen(JOB_A, "run-a", JobState.RUNNING, 5.0, None, None, item_id="a")
    facts = state.observe_vertex([seen], 6.0, horizon=0.0)
    assert [(f.kind, f.queue) for f in facts] == [(FactKind.SUBMITTED, "q")]
    assert state.vertex_jobs[JOB_A].queue == "q"
    ended = VertexSeen(JOB_A, "run-a", JobState.FAILED, 5.0, 9.0, "OOM", item_id="a")
    facts = state.observe_vertex([ended], 10.0, horizon=0.0)
    assert [(f.kind, f.outcome, f.seconds) for f in facts] == [(FactKind.VERTEX_ENDED, "FAILED", 4.0)]
    assert state.observe_vertex([ended], 11.0, horizon=0.0) == []
    assert state.observe_vertex([], 12.0, horizon=9.5) == []
    assert state.vertex_jobs == {}


def test_chores_name_the_calls_to_make_and_their_answers_are_kept() -> None:
    """After a listing, an item whose job failed is to be failed; once W&B said yes, never again."""
    state = started("q")
    state.queues["q"].observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a")], 1.0)
    state.observe_vertex([VertexSeen(JOB_A, "run-a", JobState.FAILED, 2.0, 3.0, "OOM")], 4.0, horizon=0.0)
    chores = state.chores("q", 4.0)
    assert [(a.item_id, a.reason, a.stage) for a in chores.fail] == [("a", "vertex_job_ended", "run")]
    assert chores.cancel == []
    state.item_failed("q", "a")
    assert state.chores("q", 5.0).fail == []
    state.item_failed("gone", "a")  # a queue removed meanwhile: nothing to record, nothing raised


def test_resume_names_the_previous_breaker_state_or_none_for_an_unknown_queue() -> None:
    """Resume closes the breaker and ends a refusal backoff."""
    state = started("q")
    queue = state.queues["q"]
    queue.breaker.bailout(1.0, "image_pull")
    queue.dispatch_refused(1.0, "PermissionDenied: 403")
    assert state.resume("q") == "open"
    assert (queue.breaker.state, queue.dispatching.refusal) == (BreakerState.CLOSED, None)
    assert state.resume("nope") is None


def test_a_custom_job_complete_listings_keep_leaving_out_ends_and_its_item_is_failed() -> None:
    """Deleted while running: after VANISH_LISTINGS complete listings without it, the job ends
    CANCELLED and its item is failed; a listing that is not complete (a search) proves nothing."""
    state = started("q")
    state.queues["q"].observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a")], 1.0)
    state.observe_vertex([VertexSeen(JOB_A, "run-a", JobState.RUNNING, 5.0, None, None)], 6.0, horizon=0.0)
    for n in range(5):
        assert state.observe_vertex([], 7.0 + n, horizon=0.0) == []  # not complete
    for n in range(VANISH_LISTINGS - 1):
        assert state.observe_vertex([], 20.0 + n, horizon=0.0, complete=True) == []
    [fact] = state.observe_vertex([], 30.0, horizon=0.0, complete=True)
    assert (fact.kind, fact.outcome) == (FactKind.VERTEX_ENDED, "CANCELLED")
    [fail] = state.chores("q", 30.0).fail
    assert (fail.item_id, fail.message) == ("a", VANISHED_JOB)
