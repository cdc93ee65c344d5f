"""Pub/Sub handling without Pub/Sub (docs/architecture.md, Events): dedupe, buffering, outcomes."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

from launch_supervisor.model.inbox import Inbox, Outcome
from launch_supervisor.model.observations import ExecutionSeen
from launch_supervisor.model.queue import QueueState
from launch_supervisor.model.retention import prune
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


def test_what_dedupes_lives_as_long_as_the_execution_record() -> None:
    """The applied types ride on the execution's record: once retention drops the record, a
    redelivery finds no execution, waits like any early event, and expires without effect."""
    queues = states("q")
    state = queues["q"]
    running(state, 1)
    inbox = Inbox(buffer_seconds=60.0)
    assert receive(inbox, queues, bailout(1), now=2.0, clock=2.0).result == "applied"
    assert state.executions[ex(1)].events == ("watchdog.bailout",)
    assert receive(inbox, queues, bailout(1), now=3.0, clock=3.0).result == "duplicate"
    state.observe_executions([ExecutionSeen(ex(1), "failed", 0.0, 0.5, 1.0)], 3.0)
    prune(state, now=1.0 + state.policy.retention_seconds + 1)
    assert ex(1) not in state.executions
    assert receive(inbox, queues, bailout(1), now=4.0, clock=4.0).result == "buffered"
    assert inbox.retry(queues, 70.0, 70.0) == [Outcome("watchdog.bailout", "expired")]


def test_the_inbox_keeps_nothing_per_applied_event() -> None:
    """10,000 events applied to 5,000 executions add only their types to the records (a tuple each,
    of strings every record shares), and nothing to the inbox: no key store fills up. (The two
    kinds whose effect stores no string of the message's, so that the tuples are all that is new.)"""
    queues = states("q")
    state = queues["q"]
    state.observe_executions([ExecutionSeen(ex(n), "running", 0.0, 0.5, None) for n in range(5_000)], 1.0)
    inbox = Inbox()
    kinds = ["watchdog.exited", "watchdog.idle_exit"]
    bodies = [json.dumps({"event": kind, "execution": f"x{n}"}).encode() for n in range(5_000) for kind in kinds]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        results = {inbox.receive(body, {}, queues, 2.0, 2.0).result for body in bodies}
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert results == {"applied"}
    assert all(len(state.executions[ex(n)].events) == 2 for n in range(5_000))
    assert held < 5_000 * 100, held  # a 2-tuple per record: 56 bytes


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
    assert receive(inbox, queues, {"event": "queue.item_added", "queue": "q"}).result == "applied"  # no item
    named = {"event": "queue.item_added", "queue": "q", "item_id": "i1"}
    assert receive(inbox, queues, named, clock=10.0).poll == ("q",)
    assert receive(inbox, queues, named, clock=610.0).result == "duplicate"  # its poll is asked for already
    assert receive(inbox, queues, named, clock=611.0).poll == ("q",)  # the buffer's 600 s passed
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
