"""The dispatch formula's record of RunJob calls: the budget's window and refusals."""

from __future__ import annotations

from launch_supervisor.model.breaker import Breaker
from launch_supervisor.model.dispatching import BUDGET_PERIOD, REFUSAL_BACKOFF, REFUSAL_BACKOFF_MAX, Dispatching
from tests.supervisor.model.test_queue import policy


def decide(d: Dispatching, now: float, pending: int, **holds: bool) -> tuple[int, str]:
    decision = d.decide(
        now,
        policy=policy(dispatch_budget=2),
        breaker=Breaker(3, 600.0, 60.0, 240.0),
        pending=pending,
        in_flight=[],
        holds=holds,
    )
    return decision.start, decision.why


def test_the_budget_counts_runjobs_of_the_last_minute_only() -> None:
    """Two per minute: the third waits until the first is a minute old."""
    d = Dispatching()
    d.started(0.0)
    d.started(1.0)
    assert decide(d, 30.0, pending=5) == (0, "budget")
    assert decide(d, BUDGET_PERIOD + 0.5, pending=5) == (1, "budget")


def test_a_hold_or_an_unknown_result_stops_dispatch_whatever_the_work() -> None:
    """Any hold that is on takes the formula to zero and names itself."""
    d = Dispatching()
    assert decide(d, 0.0, pending=1, stale=True, starting=False) == (0, "stale")
    d.unknown(1.0)
    assert decide(d, 2.0, pending=1) == (0, "uncertain")


def test_refusals_in_a_row_double_the_backoff_up_to_the_cap_and_a_start_ends_them() -> None:
    """The first refusal waits REFUSAL_BACKOFF; each one in a row doubles it, capped; an accepted
    RunJob returns the row it ended."""
    d = Dispatching()
    refusal, new = d.refused(0.0, "denied")
    assert (refusal.backoff, refusal.until, new) == (REFUSAL_BACKOFF, REFUSAL_BACKOFF, True)
    assert decide(d, 1.0, pending=1) == (0, "refused")
    backoffs = [d.refused(float(n), "denied")[0].backoff for n in range(1, 12)]
    assert backoffs[0] == 2 * REFUSAL_BACKOFF
    assert backoffs[-1] == REFUSAL_BACKOFF_MAX
    assert d.refused(20.0, "other")[1] is True  # a new error is worth a log line
    ended = d.started(400.0)
    assert ended is not None
    assert (ended.since, d.refusal) == (0.0, None)
