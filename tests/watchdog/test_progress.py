"""The agent's steps: polling, a job received, its item claimed, its CustomJob created."""

from __future__ import annotations

import signal

from launch_watchdog.ending import Ending, Outcome
from launch_watchdog.progress import Progress
from launch_watchdog.scanner import Claimed, Line, Received, Started, Submitted
from tests.watchdog import agent_lines
from tests.watchdog.fakes import Events, ending

LINE = Line("stderr", 1, "")
RESOURCE = agent_lines.SUBMITTED_RESOURCE


def progress(stop_on_submit: bool = True) -> tuple[Progress, Events, Ending, list[int]]:
    decider, group, _ = ending()
    events = Events()
    return Progress(events, decider, stop_on_submit), events, decider, group.sent  # type: ignore[arg-type]


def test_polling_then_a_job() -> None:
    """A received job counts as started too: the agent got past start-up."""
    steps, _, _, _ = progress()
    assert not steps.started
    steps.found(Started(LINE))
    assert steps.started
    assert not steps.received
    steps, _, _, _ = progress()
    steps.found(Received(LINE))
    assert steps.received
    assert steps.started


def test_a_claimed_item_is_reported_once() -> None:
    steps, events, _, _ = progress()
    steps.found(Claimed("item-1", LINE))
    steps.found(Claimed("item-1", LINE))
    assert steps.item_id == "item-1"
    assert events.emitted == [("watchdog.claimed", "agent claimed queue item item-1", {"item_id": "item-1"})]


def test_a_created_customjob_stops_the_agent_and_is_reported_once() -> None:
    steps, events, ending, sent = progress()
    steps.found(Claimed("item-1", LINE))
    steps.found(Submitted(RESOURCE, LINE))
    steps.found(Submitted(RESOURCE, LINE))
    assert ending.outcome is Outcome.SUBMITTED
    assert sent == [signal.SIGINT]
    assert steps.submitted == {RESOURCE}
    assert events.emitted[1:] == [
        (
            "watchdog.submitted",
            f"CustomJob {RESOURCE} created; stopping the agent",
            {"item_id": "item-1", "custom_job": RESOURCE},
        )
    ]


def test_when_kept_the_agent_is_left_running() -> None:
    steps, events, ending, sent = progress(stop_on_submit=False)
    steps.found(Submitted(RESOURCE, LINE))
    assert ending.outcome is None
    assert sent == []
    assert events.emitted[0][1] == f"CustomJob {RESOURCE} created; leaving the agent"


def test_a_submission_after_another_outcome_is_reported_but_decides_nothing() -> None:
    steps, events, ending, sent = progress()
    ending.decide(Outcome.IDLE)
    steps.found(Submitted(RESOURCE, LINE))
    assert ending.outcome is Outcome.IDLE
    assert sent == [signal.SIGINT]
    assert [e for e, _, _ in events.emitted] == ["watchdog.submitted"]
