"""Pub/Sub handling without Pub/Sub (docs/architecture.md, Events): dedupe, buffering, outcomes."""

from __future__ import annotations

import json
import sys
import tracemalloc
from collections import OrderedDict
from typing import Any

from launch_supervisor.model.inbox import SEEN_EVENTS, Inbox, Outcome, Remembered
from launch_supervisor.model.observations import ExecutionSeen
from launch_supervisor.model.queue import QueueState
from tests.supervisor.model.test_queue import ex, pending, ready

JOB = "projects/p/locations/r/customJobs/42"


def running(state: QueueState, *ns: int, now: float = 1.0) -> None:
    """A listing that shows executions x<n> running."""
    state.observe_executions([ExecutionSeen(ex(n), "running", 0.0, 0.5, None) for n in ns], now)


def states(*names: str) -> dict[str, QueueState]:
    return {name: ready(name=name) for name in names}


def receive(inbox: Inbox, queues: dict[str, QueueState], body: Any, now: float = 2.0, clock: float = 2.0) -> Outcome:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return inbox.receive(data, {}, queues, now, clock)


def bailout(n: int, **extra: Any) -> dict[str, Any]:
    return {"event": "watchdog.bailout", "execution": f"x{n}", "rule": "quota_exceeded", "category": "quota", **extra}


def test_the_same_event_twice_has_one_effect() -> None:
    queues = states("q")
    running(queues["q"], 1)
    inbox = Inbox()
    first = receive(inbox, queues, bailout(1, queue="q"))
    assert (first.type, first.result, first.reconcile) == ("watchdog.bailout", "applied", ("q",))
    assert queues["q"].executions[ex(1)].category == "quota"
    again = receive(inbox, queues, bailout(1, queue="q", category="other"))
    assert (again.result, again.facts, again.reconcile) == ("duplicate", (), ())
    assert queues["q"].executions[ex(1)].category == "quota"


def test_dedupe_is_by_execution_and_type() -> None:
    queues = states("q")
    running(queues["q"], 1, 2)
    inbox = Inbox()
    assert receive(inbox, queues, bailout(1)).result == "applied"
    assert receive(inbox, queues, bailout(2)).result == "applied"  # another execution
    assert receive(inbox, queues, {"event": "watchdog.idle_exit", "execution": "x1"}).result == "applied"
    assert receive(inbox, queues, {"event": "watchdog.idle_exit", "execution": "x1"}).result == "duplicate"


def test_old_keys_are_forgotten() -> None:
    queues = states("q")
    running(queues["q"], 1, 2)
    inbox = Inbox(seen_max=1)
    receive(inbox, queues, {"event": "watchdog.exited", "execution": "x1"})
    receive(inbox, queues, {"event": "watchdog.exited", "execution": "x2"})
    assert receive(inbox, queues, {"event": "watchdog.exited", "execution": "x1"}).result == "applied"


def test_the_remembered_keys_are_the_last_n_and_a_full_set_stays_small() -> None:
    """20,000 keys of real size (a Cloud Run execution's full name) take about half of what keeping
    the keys themselves in an ordered dict takes (their strings and the dict): 3.0 MB against 5.7."""
    remembered = Remembered(3)
    for n in range(5):
        remembered.add((f"x{n}", "watchdog.exited"))
        remembered.add((f"x{n}", "watchdog.exited"))  # twice: still one place
    assert [(f"x{n}", "watchdog.exited") in remembered for n in range(5)] == [False, False, True, True, True]
    assert len(remembered) == 3
    name = "projects/my-project/locations/us-central1/jobs/launcher-research-gpu/executions/launcher-research-gpu-{}"
    keys = [(name.format(f"{n:05x}"), "watchdog.claimed") for n in range(SEEN_EVENTS)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        full = Remembered(SEEN_EVENTS)
        for key in keys:
            full.add(key)
        held = tracemalloc.get_traced_memory()[0] - before
        before = tracemalloc.get_traced_memory()[0]
        ordered = OrderedDict.fromkeys(keys)
        ordered_dict = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    strings = sum(sys.getsizeof(k[0]) + sys.getsizeof(k) for k in ordered)
    assert all(key in full for key in keys[:100])
    assert held < 0.6 * (strings + ordered_dict), (held, strings, ordered_dict)


def test_a_claimed_event_pairs_the_execution_and_the_item() -> None:
    queues = states("q")
    state = queues["q"]
    state.observe_items(pending("i1", "i2"), 0.5)
    running(state, 1)
    outcome = receive(inbox := Inbox(), queues, {"event": "watchdog.claimed", "execution": "x1", "item_id": "i2"})
    assert outcome.result == "applied"
    assert [(f.kind, f.execution) for f in outcome.facts if f.kind == "claimed"] == [("claimed", ex(1))]
    assert state.executions[ex(1)].item_id == "i2"
    assert state.items["i2"].claimed_by == ex(1)
    assert state.items["i2"].claim_confirmed
    assert outcome.reconcile == ("q",)
    again = receive(inbox, queues, {"event": "watchdog.claimed", "execution": "x1", "item_id": "i2"})
    assert again.result == "duplicate"


def test_submitted_links_the_custom_job() -> None:
    queues = states("q")
    running(queues["q"], 1)
    outcome = receive(Inbox(), queues, {"event": "watchdog.submitted", "execution": ex(1), "custom_job": JOB})
    assert outcome.result == "applied"  # a full resource name works as well as the short one
    assert queues["q"].executions[ex(1)].vertex_job == JOB


def test_a_bailout_reports_its_detection_time() -> None:
    queues = states("q")
    running(queues["q"], 1)
    outcome = receive(Inbox(), queues, bailout(1, detection_ms=12))
    assert outcome.detection == ("q", 0.012)
    running(queues["q"], 2)
    assert receive(Inbox(), queues, bailout(2)).detection is None


def test_exited_wakes_the_executions_loop() -> None:
    queues = states("q")
    running(queues["q"], 1)
    outcome = receive(Inbox(), queues, {"event": "watchdog.exited", "execution": "x1"})
    assert (outcome.result, outcome.executions, outcome.reconcile) == ("applied", ("q",), ("q",))


def test_the_events_queue_narrows_the_search_and_a_wrong_one_does_not_hide_it() -> None:
    queues = states("a", "b")
    running(queues["b"], 1)
    assert receive(Inbox(), queues, bailout(1, queue="elsewhere")).reconcile == ("b",)
    assert receive(Inbox(), queues, bailout(1, queue="a")).result == "buffered"  # not in queue a's listing


def test_an_event_for_an_unlisted_execution_waits_for_a_listing() -> None:
    queues = states("q")
    inbox = Inbox()
    outcome = receive(inbox, queues, bailout(1, detection_ms=5), clock=10.0)
    assert (outcome.result, outcome.reconcile) == ("buffered", ())
    assert receive(inbox, queues, bailout(1), clock=10.0).result == "buffered"  # a redelivery waits too
    assert inbox.retry(queues, 11.0, 11.0) == []  # no listing shows it yet
    assert inbox.buffered == 2
    running(queues["q"], 1, now=12.0)
    [applied] = inbox.retry(queues, 12.0, 12.0)  # once, though delivered twice
    assert (applied.type, applied.result, applied.reconcile, applied.detection) == (
        "watchdog.bailout",
        "applied",
        ("q",),
        ("q", 0.005),
    )
    assert queues["q"].executions[ex(1)].category == "quota"
    assert inbox.buffered == 0
    assert receive(inbox, queues, bailout(1)).result == "duplicate"


def test_buffered_events_expire() -> None:
    queues = states("q")
    inbox = Inbox(buffer_seconds=60.0)
    receive(inbox, queues, bailout(1), clock=100.0)
    assert inbox.retry(queues, 0.0, 160.0) == []  # at the deadline: still waiting
    assert inbox.retry(queues, 0.0, 160.5) == [Outcome("watchdog.bailout", "expired")]
    running(queues["q"], 1)
    assert inbox.retry(queues, 0.0, 161.0) == []
    assert queues["q"].executions[ex(1)].category is None


def test_the_buffer_is_bounded() -> None:
    queues = states("q")
    inbox = Inbox(buffer_max=1)
    assert receive(inbox, queues, bailout(1)).result == "buffered"
    assert receive(inbox, queues, bailout(2)).result == "unknown_execution"


def test_hints_wake_loops() -> None:
    queues = {"q": ready(name="q"), "r": ready(name="r", launcher_job="projects/p/locations/r/jobs/other")}
    inbox = Inbox()
    added = receive(inbox, queues, {"event": "queue.item_added", "queue": "q"})
    assert (added.result, added.poll, added.reconcile) == ("applied", ("q",), ())
    assert receive(inbox, queues, {"event": "queue.item_added", "queue": "q"}).result == "applied"  # no key
    assert receive(inbox, queues, {"event": "queue.item_added", "queue": "nope"}).result == "unknown_queue"
    run = {"logName": "l", "resource": {"type": "cloud_run_job", "labels": {"job_name": "launcher"}}}
    assert receive(inbox, queues, run).executions == ("q",)
    anyjob = {"logName": "l", "resource": {"type": "cloud_run_job"}}
    assert receive(inbox, queues, anyjob).executions == ("q", "r")
    audit = {
        "serviceName": "aiplatform.googleapis.com",
        "methodName": "google.cloud.aiplatform.v1.JobService.CreateCustomJob",
    }
    vertex = receive(inbox, queues, {"logName": "l", "protoPayload": audit})
    assert (vertex.type, vertex.result, vertex.vertex) == ("log.vertex_job", "applied", True)


def test_malformed_bodies_and_unknown_types_give_their_result_labels() -> None:
    queues = states("q")
    inbox = Inbox()
    cases = [
        (b"\xff not json", "not_json"),
        (b"[1, 2]", "not_object"),
        ({"event": "watchdog.claimed", "queue": "q"}, "missing_field"),
        ({"event": "odd"}, "unknown_type"),
    ]
    for body, kind in cases:
        outcome = receive(inbox, queues, body)
        assert (outcome.type, outcome.result) == ("malformed", kind)
        assert outcome.reason  # the first of its kind is worth a log line
    assert receive(inbox, queues, {"event": "stranger"}).reason is None  # later ones are only counted
    assert receive(inbox, queues, {"event": "stranger"}).result == "unknown_type"


class Exploding(QueueState):
    def event_idle(self, execution_name: str) -> None:
        raise RuntimeError("boom")


def test_an_event_that_fails_to_apply_is_reported_not_raised_nor_remembered() -> None:
    state = Exploding(ready().policy)
    running(state, 1)
    inbox = Inbox()
    outcome = receive(inbox, {"q": state}, {"event": "watchdog.idle_exit", "execution": "x1"})
    assert (outcome.type, outcome.result, str(outcome.error)) == ("watchdog.idle_exit", "failed", "boom")
    assert receive(inbox, {"q": state}, {"event": "watchdog.idle_exit", "execution": "x1"}).result == "failed"
