"""What the property tests (test_properties.py) found, each pinned down as a plain example: messages
that made the parser raise, and states in which dispatch started an execution too many."""

from __future__ import annotations

import json
from typing import Any

import pytest

from launch_supervisor.model.breaker import BreakerState
from launch_supervisor.model.events import EXECUTION_HINT, Event, Malformed, parse
from launch_supervisor.model.executions import Phase
from launch_supervisor.model.inbox import MALFORMED, Inbox
from launch_supervisor.model.items import ItemState
from launch_supervisor.model.observations import ExecutionSeen, ItemSeen
from launch_supervisor.model.queue import QueueState
from tests.supervisor.model.test_queue import ex, pending, ready

CUSTOM_JOB = "projects/p/locations/r/customJobs/7"

# -- the parser -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"[" * 100_000, "not_json"),  # nested past the recursion limit
        (json.dumps({"event": [], "type": "watchdog.claimed", "execution": "x1"}).encode(), "unknown_type"),
        (json.dumps({"event": {}, "type": "watchdog.bailout", "execution": "x1"}).encode(), "unknown_type"),
        (json.dumps({"jsonPayload": {"event": "watchdog.idle_exit"}, "labels": "x"}).encode(), "missing_field"),
        (json.dumps({"jsonPayload": {"event": "watchdog.idle_exit"}, "resource": ["y"]}).encode(), "missing_field"),
        (json.dumps({"logName": "l", "resource": "cloud_run_job"}).encode(), "unknown_type"),
    ],
    ids=["deep", "event-list", "event-object", "labels-text", "resource-list", "resource-text"],
)
def test_a_body_of_the_wrong_shape_is_malformed_and_the_inbox_counts_it(data: bytes, kind: str) -> None:
    """Unhashable types, labels or resources that are not objects, deep nesting: malformed, never raised."""
    parsed = parse(data)
    assert isinstance(parsed, Malformed)
    assert parsed.kind == kind
    outcome = Inbox().receive(data, None, {}, 0.0, 0.0)
    assert (outcome.type, outcome.result) == (MALFORMED, kind)


def test_a_cloud_run_entry_whose_labels_are_not_an_object_is_still_a_hint() -> None:
    """The entry names no job, but it is still about a Cloud Run job: list the executions."""
    parsed = parse(json.dumps({"logName": "l", "resource": {"type": "cloud_run_job", "labels": [1]}}).encode())
    assert parsed == Event(EXECUTION_HINT, job=None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(12, 12.0), (10**400, None), (float("nan"), None), (-5, None)],
    ids=["ms", "huge", "nan", "<0"],
)
def test_a_detection_time_out_of_range_is_dropped(value: Any, expected: float | None) -> None:
    """An integer beyond any float used to raise; NaN would spoil the histogram's sum for good."""
    body = {"event": "watchdog.bailout", "execution": "x1", "rule": "r", "category": "quota", "detection_ms": value}
    parsed = parse(json.dumps(body).encode())
    assert isinstance(parsed, Event)
    assert parsed.detection_ms == expected


# -- dispatch ---------------------------------------------------------------------------------------


def breaker(state: QueueState) -> BreakerState:
    """The breaker's state, read afresh (a call, so the type checker does not hold on to an earlier one)."""
    return state.breaker.state


def opened() -> QueueState:
    """Items a, b, c; x1 bailed out for permission, which opened the breaker at 1.0 (cooldown 60 s)."""
    state = ready(breaker_cooldown=60.0)
    state.observe_items(pending("a", "b", "c"), 0.0)
    state.dispatched(ex(1), 0.0)
    state.event_bailout(ex(1), "permission_denied", "permission", 1.0)
    state.observe_executions([ExecutionSeen(ex(1), "failed", 0.0, 0.5, 1.0)], 1.0)
    state.observe_items(pending("a", "b", "c"), 2.0)
    assert breaker(state) is BreakerState.OPEN
    return state


def test_a_half_open_probe_whose_runjob_answer_was_lost_is_still_the_only_probe() -> None:
    """The probe's RunJob answer is lost and it runs: no second probe beside it; its bailout reopens the breaker."""
    state = opened()
    assert (state.decide(61.0).start, state.decide(61.0).probe) == (1, True)
    state.dispatch_unknown(61.0)
    running = [ExecutionSeen(ex(1), "failed", 0.0, 0.5, 1.0), ExecutionSeen(ex(2), "running", 61.0, 61.5, None)]
    state.observe_executions(running, 63.0)
    assert breaker(state) is BreakerState.HALF_OPEN
    assert state.decide(64.0).start == 0
    state.event_bailout(ex(2), "permission_denied", "permission", 65.0)
    state.observe_executions([ExecutionSeen(ex(2), "failed", 61.0, 61.5, 65.0)], 66.0)
    assert breaker(state) is BreakerState.OPEN


def test_a_lost_probe_that_ended_before_the_listing_still_decides_the_breaker() -> None:
    """The lost probe already failed when first listed: it is the probe, so its failure reopens the breaker."""
    state = opened()
    state.decide(61.0)
    state.dispatch_unknown(61.0)
    state.observe_executions([ExecutionSeen(ex(2), "failed", 61.0, 61.5, 62.0)], 63.0)
    assert breaker(state) is BreakerState.OPEN


def test_a_lost_probe_runjob_that_started_nothing_lets_a_probe_go() -> None:
    """The listing after the unknown result shows no new execution: the probe is still to be sent."""
    state = opened()
    state.decide(61.0)
    state.dispatch_unknown(61.0)
    state.observe_executions([], 63.0)
    assert (state.decide(64.0).start, state.decide(64.0).probe) == (1, True)


def test_a_listing_that_still_shows_an_ended_execution_does_not_hold_dispatch_again() -> None:
    """Only the listing that saw an execution end makes the item view stale, not each later one still showing it."""
    state = ready()
    state.observe_items(pending("a", "b"), 0.0)
    state.dispatched(ex(1), 0.0)
    ended = [ExecutionSeen(ex(1), "failed", 0.0, 0.1, 1.0)]
    state.observe_executions(ended, 2.0)
    assert state.stale
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a"), *pending("b")], 3.0)
    state.observe_executions(ended, 4.0)
    assert not state.stale
    assert state.decide(5.0).start == 1


def two_dispatched() -> QueueState:
    """Items a and b pending; x1 dispatched at 1.0, x2 at 2.0; room for more."""
    state = ready(max_inflight=4)
    state.observe_items(pending("a", "b"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.dispatched(ex(2), 2.0)
    return state


def test_an_item_gone_from_pending_goes_to_an_execution_that_ended_since_rather_than_a_running_one() -> None:
    """x2 took a and ended before any listing saw it; x1 still runs: a is x2's, and x1 will take b."""
    state = two_dispatched()
    listing = [ExecutionSeen(ex(1), "running", 1.0, 1.5, None), ExecutionSeen(ex(2), "succeeded", 2.0, 2.5, 4.0)]
    state.observe_executions(listing, 5.0)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a"), *pending("b")], 6.0)
    assert (state.executions[ex(1)].item_id, state.executions[ex(2)].item_id) == (None, "a")
    assert state.decide(7.0).start == 0


def test_an_execution_that_ends_with_no_item_takes_over_a_claim_counted_for_a_running_one() -> None:
    """Counting gave a to x1; x2 then ends with no item: a is x2's, and x1 counts again as about to take b."""
    state = two_dispatched()
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a"), *pending("b")], 5.0)
    assert state.executions[ex(1)].item_id == "a"
    listing = [ExecutionSeen(ex(1), "running", 1.0, 1.5, None), ExecutionSeen(ex(2), "succeeded", 2.0, 2.5, 6.0)]
    state.observe_executions(listing, 7.0)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a"), *pending("b")], 8.0)
    assert (state.executions[ex(1)].item_id, state.executions[ex(2)].item_id) == (None, "a")
    assert state.executions[ex(2)].phase is Phase.SUCCEEDED  # it ran an item: not idle
    assert state.decide(9.0).start == 0


def test_an_execution_whose_counted_claim_an_event_corrected_counts_again_as_about_to_claim() -> None:
    """The listing gave a to x1; x2's `claimed` event says a is x2's: x1 has none, and will take b."""
    state = two_dispatched()
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a"), *pending("b")], 5.0)
    state.event_claimed(ex(2), "a", 6.0)
    assert state.executions[ex(1)].item_id is None
    assert state.decide(7.0).start == 0


def test_an_execution_that_ends_with_no_item_takes_over_a_claim_through_one_that_ended_before_it() -> None:
    """Counting gave a to x1 (x2 took it) and b to x2 (x3 took it); x2 and x3 end: x3 takes b, x2
    takes a, and x1, still running, counts again as about to take c."""
    state = ready(max_inflight=4)
    state.observe_items(pending("a", "b", "c"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.dispatched(ex(2), 2.0)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a"), *pending("b", "c")], 3.0)
    state.dispatched(ex(3), 4.0)
    claimed = [ItemSeen(i, ItemState.CLAIMED, f"run-{i}") for i in ("a", "b")]
    state.observe_items([*claimed, *pending("c")], 6.0)
    assert [state.executions[ex(n)].item_id for n in (1, 2, 3)] == ["a", "b", None]
    ended = [ExecutionSeen(ex(n), "succeeded", float(n), n + 0.5, 5.0) for n in (2, 3)]
    state.observe_executions([ExecutionSeen(ex(1), "running", 1.0, 1.5, None), *ended], 7.0)
    assert [state.executions[ex(n)].item_id for n in (1, 2, 3)] == [None, "a", "b"]
    state.observe_items([*claimed, *pending("c")], 8.0)
    assert state.decide(9.0).start == 0


def test_an_ended_execution_whose_counted_claim_an_event_corrected_takes_over_one_counted_for_a_running_one() -> None:
    """Counting gave a to x3, which had ended, and b to x1; x2's `claimed` event says a is x2's: x3
    took b, so x1 holds nothing and will take c, and nothing more starts."""
    state = ready(max_inflight=4)
    state.observe_items(pending("a", "b", "c"), 0.0)
    for n in (1, 2, 3):
        state.dispatched(ex(n), float(n))
    running = [ExecutionSeen(ex(n), "running", float(n), n + 0.5, None) for n in (1, 2)]
    state.observe_executions([*running, ExecutionSeen(ex(3), "succeeded", 3.0, 3.5, 4.0)], 5.0)
    claimed = [ItemSeen(i, ItemState.CLAIMED, f"run-{i}") for i in ("a", "b")]
    state.observe_items([*claimed, *pending("c")], 6.0)
    assert (state.executions[ex(1)].item_id, state.executions[ex(3)].item_id) == ("b", "a")
    state.event_claimed(ex(2), "a", 7.0)
    assert [state.executions[ex(n)].item_id for n in (1, 2, 3)] == [None, "a", "b"]
    assert state.decide(8.0).start == 0


def test_a_submitted_event_that_names_the_item_pairs_it_though_claimed_never_came() -> None:
    """x1's `claimed` event is lost; its `submitted` one names the item: a is x1's, nothing more starts."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 1.0)
    body = {"event": "watchdog.submitted", "execution": "x1", "item_id": "a", "custom_job": CUSTOM_JOB}
    outcome = Inbox().receive(json.dumps(body).encode(), {}, {"q": state}, 3.0, 3.0)
    assert outcome.result == "applied"
    assert (state.items["a"].claimed_by, state.items["a"].claim_confirmed, state.items["a"].vertex_job) == (
        ex(1),
        True,
        CUSTOM_JOB,
    )
    assert state.decide(4.0).start == 0
