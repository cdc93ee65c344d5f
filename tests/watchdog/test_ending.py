"""Which outcome a run ends with, what deciding it sets off, and the exit code it gives."""

from __future__ import annotations

import signal

import pytest

from launch_watchdog.ending import Outcome
from tests.watchdog.fakes import ending as make


@pytest.mark.parametrize(
    ("outcome", "agent_code", "code"),
    [
        (Outcome.SUBMITTED, 130, 0),
        (Outcome.IDLE, 130, 0),
        (Outcome.BAILOUT, 130, 1),
        (Outcome.AGENT_EXITED, 3, 3),
        (Outcome.AGENT_EXITED, None, 1),
    ],
)
def test_exit_codes(outcome: Outcome, agent_code: int | None, code: int) -> None:
    ending, _, _ = make()
    ending.outcome = outcome
    assert ending.exit_code(agent_code) == code


def test_deciding_starts_one_stop_with_sigint() -> None:
    """A second decision changes the outcome but starts no second stop."""
    ending, group, shutdown = make()
    ending.decide(Outcome.IDLE)
    assert ending.outcome is Outcome.IDLE
    assert group.sent == [signal.SIGINT]
    stopper = shutdown.stopper
    ending.decide(Outcome.BAILOUT)
    assert shutdown.stopper is stopper
    assert group.sent == [signal.SIGINT]


def test_once_submitted_the_grace_is_the_submit_grace() -> None:
    ending, _, shutdown = make()
    assert ending.grace() == 10.0
    ending.decide(Outcome.SUBMITTED)
    assert ending.grace() == 0.5
    assert shutdown.stopper is not None
    assert shutdown.deadlines() == [shutdown.stopper.first_signalled_at + 0.5]


def test_a_bailout_is_claimed_unless_the_agent_exited_first() -> None:
    ending, group, _ = make()
    ending.claim_bailout()
    assert ending.outcome is Outcome.BAILOUT
    ending.stop_for_bailout()
    assert group.sent == [signal.SIGINT]

    ending, group, _ = make()
    group.exit_code = 1
    ending.claim_bailout()
    assert ending.outcome is Outcome.AGENT_EXITED
    ending.stop_for_bailout()
    assert group.sent == []


def test_a_claimed_bailout_never_replaces_an_outcome() -> None:
    ending, group, _ = make()
    ending.decide(Outcome.SUBMITTED)
    ending.claim_bailout()
    assert ending.outcome is Outcome.SUBMITTED
    ending.stop_for_bailout()
    assert group.sent == [signal.SIGINT]


def test_an_incident_may_open_until_an_outcome_other_than_the_agents_exit() -> None:
    ending, _, _ = make()
    assert ending.may_open_incident
    ending.agent_exited()
    assert ending.outcome is Outcome.AGENT_EXITED
    assert ending.may_open_incident
    ending.outcome = Outcome.SIGNAL
    ending.agent_exited()
    assert ending.outcome is Outcome.SIGNAL
    assert not ending.may_open_incident


def test_a_signal_is_forwarded_and_a_second_one_kills() -> None:
    """SIGTERM to the watchdog: the agent gets SIGTERM, exit 143; another: SIGKILL at once."""
    reports: list[str] = []
    ending, group, _ = make(reports)
    ending.signalled(signal.SIGTERM)
    assert ending.outcome is Outcome.SIGNAL
    assert group.sent == [signal.SIGTERM]
    assert ending.exit_code(None) == 143
    ending.signalled(signal.SIGINT)
    assert group.sent == [signal.SIGTERM, signal.SIGKILL]
    assert ending.exit_code(None) == 143
    assert reports == [
        "received SIGTERM: forwarding it to the agent",
        "second SIGINT: killing the agent now",
    ]


def test_a_signal_during_a_stop_goes_to_the_agent_as_well() -> None:
    """The outcome already decided stays; the signal is passed on."""
    ending, group, _ = make()
    ending.decide(Outcome.IDLE)
    ending.signalled(signal.SIGTERM)
    assert ending.outcome is Outcome.IDLE
    assert ending.exit_code(None) == 0
    assert group.sent == [signal.SIGINT, signal.SIGTERM]
