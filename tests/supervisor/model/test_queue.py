"""One queue's state: dispatch formula, pairing, breaker, recovery, retention."""

from __future__ import annotations

from itertools import pairwise

from launch_supervisor.model.breaker import DISPATCH_REFUSED, BreakerState
from launch_supervisor.model.dispatching import REFUSAL_BACKOFF, REFUSAL_BACKOFF_MAX
from launch_supervisor.model.executions import VANISH_LISTINGS, VANISH_SECONDS, Phase
from launch_supervisor.model.items import ItemState
from launch_supervisor.model.observations import ExecutionSeen, ItemSeen
from launch_supervisor.model.policy import QueuePolicy
from launch_supervisor.model.queue import QueueState
from launch_supervisor.model.vertex import JobState, VertexJob

JOB = "projects/p/locations/r/jobs/launcher"


def policy(**overrides: object) -> QueuePolicy:
    values: dict[str, object] = {
        "name": "q",
        "entity": "e",
        "launcher_job": JOB,
        "max_inflight": 4,
        "dispatch_budget": 30,
        "claim_timeout": 100.0,
        "execution_timeout": 1000.0,
        "breaker_threshold": 3,
        "breaker_window": 600.0,
        "breaker_cooldown": 60.0,
        "breaker_max_cooldown": 240.0,
        "retention_seconds": 3600.0,
        "retention_max": 50,
    }
    values.update(overrides)
    return QueuePolicy(**values)  # type: ignore[arg-type]


def ready(**overrides: object) -> QueueState:
    state = QueueState(policy(**overrides))
    state.observe_executions([], 0.0)
    return state


def pending(*ids: str) -> list[ItemSeen]:
    return [ItemSeen(i, ItemState.PENDING, None) for i in ids]


def ex(n: int) -> str:
    return f"{JOB}/executions/x{n}"


def test_nothing_starts_before_the_first_poll_and_recovery() -> None:
    """A fresh state is blind: it dispatches nothing until both the queue and executions are listed."""
    state = QueueState(policy())
    state.observe_items(pending("a"), 0.0)
    assert state.decide(0.0).start == 0
    assert state.decide(0.0).why == "starting"
    state.observe_executions([], 0.0)
    assert state.decide(0.0).start == 1


def test_formula_takes_the_smallest_term() -> None:
    """start = min(pending - unclaimed, max_inflight - in flight, budget)."""
    state = ready(max_inflight=3)
    state.observe_items(pending(*"abcde"), 0.0)
    decision = state.decide(0.0)
    assert (decision.start, decision.why) == (3, "room")
    for n in range(3):
        state.dispatched(ex(n), 0.0)
    assert state.decide(1.0).start == 0
    budget = ready(dispatch_budget=2)
    budget.observe_items(pending(*"abcde"), 0.0)
    assert (budget.decide(0.0).start, budget.decide(0.0).why) == (2, "budget")


def test_executions_not_yet_claimed_cover_pending_items() -> None:
    """A burst: one execution per pending item, none for items already covered."""
    state = ready(max_inflight=10)
    state.observe_items(pending("a", "b"), 0.0)
    assert state.decide(0.0).start == 2
    state.dispatched(ex(1), 0.0)
    state.dispatched(ex(2), 0.0)
    assert state.decide(1.0).start == 0
    state.observe_items(pending("a", "b", "c"), 2.0)
    assert state.decide(2.0).start == 1


def test_claim_timeout_stops_an_execution_counting_as_about_to_claim() -> None:
    """After claim_timeout an unclaimed execution no longer covers a pending item."""
    state = ready(claim_timeout=100.0)
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 0.0)
    assert state.decide(99.0).start == 0
    assert state.decide(100.0).start == 1


def test_a_claim_is_inferred_for_the_oldest_unclaimed_execution() -> None:
    """An item leaving PENDING is paired with the oldest in-flight execution without an item."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.dispatched(ex(2), 2.0)
    facts = state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a")], 5.0)
    assert [f.kind for f in facts] == ["claimed", "queue_wait"]
    assert state.executions[ex(1)].item_id == "a"
    assert state.executions[ex(1)].phase is Phase.CLAIMED
    assert [f.seconds for f in facts] == [4.0, 1.0]  # claim latency from dispatch; wait from first seen


def test_a_claimed_event_corrects_an_inferred_pairing() -> None:
    """The watchdog's claimed event moves the item to the execution that really took it."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.dispatched(ex(2), 2.0)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, None)], 5.0)
    state.event_claimed(ex(2), "a", 6.0)
    assert state.executions[ex(2)].item_id == "a"
    assert state.executions[ex(1)].item_id is None
    assert state.items["a"].claimed_by == ex(2)


def test_a_claimed_event_ahead_of_the_listing_is_not_pending_work() -> None:
    """The event arrives before the next listing shows the item claimed: no second execution for it,
    and a listing taken before the claim does not bring it back."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.event_claimed(ex(1), "a", 2.0)
    assert state.pending_count() == 0
    assert state.decide(2.0).start == 0
    state.observe_items(pending("a"), 3.0)  # answered by W&B just before the ack
    assert state.decide(3.0).start == 0


def test_a_lease_that_runs_out_makes_the_item_pending_again() -> None:
    """An item inferred as taken (LEASED) but never acked returns to PENDING: it is work again."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.observe_items([ItemSeen("a", ItemState.LEASED, None)], 2.0)
    assert state.items["a"].claimed_by == ex(1)
    state.observe_executions([ExecutionSeen(ex(1), "failed", 1.0, 1.5, 3.0)], 3.0)
    state.observe_items(pending("a"), 70.0)
    assert state.pending_count() == 1
    assert state.decide(70.0).start == 1


def test_an_idle_exit_undoes_an_inferred_claim_and_finishes_idle() -> None:
    """Another agent took the item; the claim inferred for this execution was wrong. Its idle_exit
    event, even ahead of the listing that shows it finished, makes it idle."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "elsewhere")], 2.0)
    assert state.executions[ex(1)].item_id == "a"
    state.event_idle(ex(1))
    assert state.items["a"].claimed_by is None
    facts = state.observe_executions([ExecutionSeen(ex(1), "succeeded", 1.0, 1.5, 5.0)], 5.0)
    assert [f.outcome for f in facts if f.kind == "finished"] == ["idle"]


def test_finished_executions_are_classified() -> None:
    """Succeeded with an item, succeeded without one (idle), failed, cancelled, timed out."""
    state = ready(execution_timeout=50.0)
    state.observe_items(pending("a"), 0.0)
    for n in range(5):
        state.dispatched(ex(n), 0.0)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "r")], 1.0)
    facts = state.observe_executions(
        [
            ExecutionSeen(ex(0), "succeeded", 0.0, 1.0, 10.0),
            ExecutionSeen(ex(1), "succeeded", 0.0, 1.0, 10.0),
            ExecutionSeen(ex(2), "failed", 0.0, 1.0, 10.0),
            ExecutionSeen(ex(3), "cancelled", 0.0, 1.0, 10.0),
            ExecutionSeen(ex(4), "failed", 0.0, 1.0, 60.0, "Task execution timed out"),
        ],
        60.0,
    )
    outcomes = {f.execution: f.outcome for f in facts if f.kind == "finished"}
    assert outcomes == {ex(0): "succeeded", ex(1): "idle", ex(2): "failed", ex(3): "cancelled", ex(4): "timeout"}
    assert {f.category for f in facts if f.kind == "bailout"} == {"crash", "timeout"}
    assert state.observe_executions([ExecutionSeen(ex(2), "failed", 0.0, 1.0, 10.0)], 61.0) == []


def test_a_failure_waits_for_its_bailout_event_then_counts_as_crash() -> None:
    """With events configured, a failed execution takes the event's category if it comes in time."""
    state = ready(event_grace=30.0)
    state.dispatched(ex(1), 0.0)
    state.dispatched(ex(2), 0.0)
    seen = [ExecutionSeen(ex(n), "failed", 0.0, 1.0, 10.0) for n in (1, 2)]
    assert state.observe_executions(seen, 10.0) == []
    facts = state.event_bailout(ex(1), "permission_denied", "permission", 12.0)
    assert [(f.kind, f.category) for f in facts if f.kind == "bailout"] == [("bailout", "permission")]
    assert state.settle(20.0) == []
    late = state.settle(41.0)
    assert [(f.kind, f.category) for f in late if f.kind == "bailout"] == [("bailout", "crash")]
    assert state.event_bailout(ex(2), "quota_exceeded", "quota", 50.0) == []


def test_breaker_opens_at_threshold_then_probes_and_closes() -> None:
    """Counted categories open it at the threshold; half-open allows one probe; a submission closes it."""
    state = ready(breaker_threshold=2, breaker_cooldown=60.0)
    state.observe_items(pending("a", "b", "c"), 0.0)
    for n in (1, 2):
        state.dispatched(ex(n), 0.0)
        state.event_bailout(ex(n), "quota_exceeded", "quota", 1.0)
    facts = state.observe_executions([ExecutionSeen(ex(n), "failed", 0.0, 0.5, 1.0) for n in (1, 2)], 1.0)
    assert "breaker_opened" in [f.kind for f in facts]
    assert state.breaker.state is BreakerState.OPEN
    assert (state.decide(30.0).start, state.decide(30.0).why) == (0, "breaker")
    state.observe_items(pending("a", "b", "c"), 60.0)  # the next poll, after those executions ended
    decision = state.decide(61.0)
    assert state.breaker.state is BreakerState.HALF_OPEN
    assert (decision.start, decision.probe) == (1, True)
    state.dispatched(ex(3), 61.0)
    assert state.decide(62.0).start == 0
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a"), *pending("b", "c")], 70.0)
    vertex = VertexJob("projects/p/locations/r/customJobs/1", "run-a", JobState.PENDING, 71.0)
    assert "breaker_closed" in [f.kind for f in state.link_vertex(vertex, 72.0) or []]
    assert state.breaker.state is BreakerState.CLOSED
    assert state.decide(73.0).start == 2


def test_breaker_reopens_on_a_failed_probe_with_doubled_cooldown() -> None:
    """A probe that bails out reopens the breaker; the cooldown doubles, capped."""
    state = ready(breaker_cooldown=60.0, breaker_max_cooldown=100.0)
    state.dispatched(ex(1), 0.0)
    state.event_bailout(ex(1), "permission_denied", "permission", 1.0)
    state.observe_executions([ExecutionSeen(ex(1), "failed", 0.0, 0.5, 1.0)], 1.0)
    assert state.breaker.state is BreakerState.OPEN
    assert state.breaker.reopens_at() == 61.0
    state.decide(61.0)
    state.dispatched(ex(2), 61.0)
    state.event_bailout(ex(2), "permission_denied", "permission", 62.0)
    state.observe_executions([ExecutionSeen(ex(2), "failed", 61.0, 61.5, 62.0)], 62.0)
    assert state.breaker.state is BreakerState.OPEN
    assert state.breaker.cooldown == 100.0


def two_claimed() -> QueueState:
    """Items a and b, each claimed by its own execution (ex(1), ex(2)), as their events say."""
    state = ready()
    state.observe_items(pending("a", "b"), 0.0)
    state.dispatched(ex(1), 1.0)
    state.dispatched(ex(2), 1.0)
    state.event_claimed(ex(1), "a", 2.0)
    state.event_claimed(ex(2), "b", 2.0)
    return state


def test_a_submission_while_open_leaves_the_breaker_open() -> None:
    """A job submitted by an execution started before the breaker opened does not close it, nor
    report that it did: only the half-open probe's submission does."""
    state = two_claimed()
    state.event_bailout(ex(1), "permission_denied", "permission", 3.0)
    state.observe_executions([ExecutionSeen(ex(1), "failed", 1.0, 1.5, 3.0)], 3.0)
    assert state.breaker.state is BreakerState.OPEN
    facts = state.event_submitted(ex(2), "projects/p/locations/r/customJobs/9", 4.0)
    assert state.breaker.state is BreakerState.OPEN
    assert "breaker_closed" not in [f.kind for f in facts]


def test_resume_closes_the_breaker() -> None:
    """An operator's resume closes an open breaker at once."""
    state = ready()
    state.breaker.bailout(0.0, "image_pull")
    assert state.breaker.state is BreakerState.OPEN
    state.breaker.close()
    assert state.breaker.state is BreakerState.CLOSED


def test_restart_adopts_executions_in_flight_and_does_not_duplicate() -> None:
    """Executions found running on start count as in flight and cover the pending items."""
    state = QueueState(policy())
    state.observe_items(pending("a", "b"), 100.0)
    facts = state.observe_executions(
        [
            ExecutionSeen(ex(1), "running", 90.0, 91.0, None),
            ExecutionSeen(ex(2), "pending", 95.0, None, None),
            ExecutionSeen(ex(3), "succeeded", 10.0, 11.0, 20.0),
        ],
        100.0,
    )
    assert sorted(f.execution for f in facts if f.kind == "adopted") == [ex(1), ex(2)]
    assert state.decide(100.0).start == 0


def test_an_uncertain_dispatch_holds_until_the_next_listing() -> None:
    """After a RunJob with unknown result nothing starts until the executions are listed again."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatch_unknown(0.0)
    assert state.decide(1.0).why == "uncertain"
    state.observe_executions([ExecutionSeen(ex(1), "running", 0.5, 0.6, None)], 2.0)
    assert state.decide(2.0).start == 0  # the RunJob did create one: it covers the item


DENIED = "RunJob for launcher: PermissionDenied: 403 Permission 'run.jobs.run' denied"


def test_a_refused_dispatch_backs_the_queue_off_doubling_up_to_a_cap() -> None:
    """After a refused RunJob the decision says "not before T"; each refusal in a row doubles the wait,
    up to the cap; only the first refusal of an error is new (worth a log line)."""
    state = ready(breaker_threshold=100)
    state.observe_items(pending("a"), 0.0)
    assert state.decide(0.0).start == 1
    [fact] = state.dispatch_refused(0.0, DENIED)
    assert (fact.kind, fact.category, fact.outcome, fact.seconds) == (
        "dispatch_refused",
        DISPATCH_REFUSED,
        "new",
        REFUSAL_BACKOFF,
    )
    held = state.decide(1.0)
    assert (held.start, held.want, held.why, held.not_before) == (0, 1, "refused", REFUSAL_BACKOFF)
    now, backoff, waits = REFUSAL_BACKOFF, REFUSAL_BACKOFF, []
    while backoff < REFUSAL_BACKOFF_MAX:
        decision = state.decide(now)
        assert (decision.start, decision.not_before) == (1, None)
        [fact] = state.dispatch_refused(now, DENIED)
        assert fact.outcome == "repeated"
        backoff = fact.seconds or 0.0
        waits.append(backoff)
        assert state.decide(now + backoff - 0.1).start == 0
        now += backoff
    assert waits[0] == 2 * REFUSAL_BACKOFF
    assert waits[-1] == REFUSAL_BACKOFF_MAX
    assert all(b == min(REFUSAL_BACKOFF_MAX, 2 * a) for a, b in pairwise([REFUSAL_BACKOFF, *waits]))
    [fact] = state.dispatch_refused(now, DENIED)
    assert fact.seconds == REFUSAL_BACKOFF_MAX
    [fact] = state.dispatch_refused(now + REFUSAL_BACKOFF_MAX, "RunJob for launcher: NotFound: 404 no such job")
    assert fact.outcome == "new"  # the error changed: logged again


def test_a_dispatch_after_refusals_ends_the_backoff() -> None:
    """An accepted RunJob resets the backoff (the next refusal waits the first step again, and is new)."""
    state = ready(breaker_threshold=10)
    state.observe_items(pending("a", "b"), 0.0)
    state.dispatch_refused(0.0, DENIED)
    state.dispatch_refused(REFUSAL_BACKOFF, DENIED)
    now = 3 * REFUSAL_BACKOFF
    decision = state.decide(now)
    assert decision.start == 2
    [fact] = state.dispatched(ex(1), now)
    assert (fact.kind, fact.execution, fact.seconds, fact.detail) == ("dispatch_recovered", ex(1), now, DENIED)
    assert state.dispatched(ex(2), now) == []
    state.observe_items(pending("c"), now + 1)
    [fact] = state.dispatch_refused(now + 1, DENIED)
    assert (fact.outcome, fact.seconds) == ("new", REFUSAL_BACKOFF)


def test_refusals_open_the_breaker_at_the_threshold_and_a_refused_probe_reopens_it() -> None:
    """A refusal is a counted bailout: one alone leaves the breaker closed, `threshold` in a row open
    it. Half-open, the probe's RunJob refused reopens it; resume ends both breaker and backoff."""
    state = ready(breaker_threshold=3, breaker_cooldown=60.0)
    state.observe_items(pending("a"), 0.0)
    t = 0.0
    for n in range(2):
        assert [f.kind for f in state.dispatch_refused(t, DENIED)] == ["dispatch_refused"]
        assert state.breaker.state is BreakerState.CLOSED
        t += REFUSAL_BACKOFF * 2**n
    facts = state.dispatch_refused(t, DENIED)
    assert [f.kind for f in facts] == ["dispatch_refused", "breaker_opened"]
    assert state.breaker.state is BreakerState.OPEN
    decision = state.decide(t + 60.0)
    assert state.breaker.state is BreakerState.HALF_OPEN
    assert (decision.start, decision.probe) == (1, True)
    facts = state.dispatch_refused(t + 60.0, DENIED)
    assert "breaker_opened" in [f.kind for f in facts]
    assert state.breaker.cooldown == 120.0
    assert state.decide(t + 61.0).why == "breaker"
    state.resume()
    decision = state.decide(t + 61.0)
    assert (state.breaker.state, decision.start, decision.not_before) == (BreakerState.CLOSED, 1, None)


def test_items_missing_from_the_latest_listing_are_not_pending() -> None:
    """An item last seen PENDING that drops out of a (capped) listing never counts as waiting work."""
    state = ready()
    state.observe_items(pending("a", "b"), 0.0)
    assert state.pending_count() == 2
    state.observe_items(pending("b"), 1.0)
    assert state.pending_count() == 1
    assert state.decide(1.0).start == 1


def test_a_finished_execution_makes_the_item_view_stale_until_the_next_listing() -> None:
    """An execution that ended after the last listing may have claimed a 'pending' item: hold."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatched(ex(1), 0.0)
    state.observe_executions([ExecutionSeen(ex(1), "succeeded", 0.0, 0.1, 2.0)], 2.5)
    decision = state.decide(2.5)
    assert (decision.start, decision.why) == (0, "stale")
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a")], 3.0)
    assert state.decide(3.0).start == 0  # nothing pending any more: no wasted execution
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a"), *pending("b")], 4.0)
    assert state.decide(4.0).start == 1


def test_at_start_executions_that_ended_recently_are_taken_in_uncounted_for_their_late_events() -> None:
    """An execution that ended while the daemon was down is known after the first listing, so its
    late `claimed` event pairs the item; it is not counted again, and older history is left out."""
    state = QueueState(policy())
    seen = [
        ExecutionSeen(ex(1), "failed", 100.0, 101.0, 110.0),
        ExecutionSeen(ex(2), "failed", 0.0, 1.0, 5.0),  # long before the lookback
    ]
    assert state.observe_executions(seen, 120.0 + 900.0 - 20.0) == []
    assert list(state.executions) == [ex(1)]
    execution = state.executions[ex(1)]
    assert (execution.phase, execution.counted, execution.recovered) == (Phase.FAILED, True, True)
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a")], 1001.0)
    state.event_claimed(ex(1), "a", 1002.0)
    assert (state.items["a"].claimed_by, state.items["a"].claim_confirmed) == (ex(1), True)
    later = [ExecutionSeen(ex(3), "succeeded", 1003.0, 1004.0, 1005.0)]
    state.observe_executions(later, 1006.0)
    assert ex(3) not in state.executions  # after the first listing, an unknown ended one is history


def test_an_execution_missing_from_listings_in_a_row_ends_as_vanished() -> None:
    """Deleted, or lost by Cloud Run: after VANISH_LISTINGS listings without it over VANISH_SECONDS, it
    is failed (a crash), so it stops holding a slot; listings that raced RunJob are not enough."""
    state = ready()
    state.dispatched(ex(1), 0.0)
    state.dispatched(ex(2), 0.0)
    for n in range(1, VANISH_LISTINGS):
        assert state.observe_executions([ExecutionSeen(ex(2), "running", 0.0, 0.5, None)], float(n)) == []
    state.observe_executions([ExecutionSeen(ex(1), "running", 0.0, 0.5, None)], 10.0)  # seen again: count resets
    for n in range(VANISH_LISTINGS - 1):
        state.observe_executions([ExecutionSeen(ex(2), "running", 0.0, 0.5, None)], 11.0 + n)
    assert state.executions[ex(1)].in_flight
    assert state.observe_executions([ExecutionSeen(ex(2), "running", 0.0, 0.5, None)], 20.0) == []  # too soon
    facts = state.observe_executions([ExecutionSeen(ex(2), "running", 0.0, 0.5, None)], 10.0 + VANISH_SECONDS)
    assert [(f.kind, f.outcome, f.category) for f in facts] == [
        ("finished", "failed", None),
        ("bailout", None, "crash"),
    ]
    assert state.executions[ex(1)].phase is Phase.FAILED


def test_a_listing_ahead_of_runjobs_answer_keeps_what_events_taught_about_the_execution() -> None:
    """The executions listing shows the new execution before RunJob answers: its answer keeps the
    record (its claim, its bailout) instead of starting a blank one that would count it twice."""
    state = ready(event_grace=30.0)
    state.observe_items(pending("a"), 0.0)
    state.observe_executions([ExecutionSeen(ex(1), "running", 1.0, 1.1, None)], 1.5)
    state.event_claimed(ex(1), "a", 1.6)
    state.dispatched(ex(1), 2.0)
    execution = state.executions[ex(1)]
    assert (execution.item_id, execution.recovered, execution.phase) == ("a", False, Phase.CLAIMED)


def test_an_execution_of_a_lost_runjob_answer_that_ended_before_any_listing_is_taken_in() -> None:
    """RunJob's answer is lost and the execution ends before the next listing: it is still taken in
    (created after the uncertain RunJob) and counted, so its events pair and its bailout counts."""
    state = ready()
    state.observe_items(pending("a"), 0.0)
    state.dispatch_unknown(10.0)
    facts = state.observe_executions([ExecutionSeen(ex(1), "failed", 10.2, 10.3, 12.0)], 13.0)
    assert [(f.kind, f.category) for f in facts] == [("adopted", None), ("finished", None), ("bailout", "crash")]
    assert state.executions[ex(1)].recovered
    old = state.observe_executions([ExecutionSeen(ex(2), "failed", 1.0, 1.1, 2.0)], 14.0)
    assert (old, ex(2) in state.executions) == ([], False)  # ended before the uncertainty: history


def test_the_item_view_is_stale_from_the_listing_that_saw_an_end_on_the_daemons_own_clock() -> None:
    """Cloud Run's clock ahead of the daemon's does not hold dispatch: staleness runs from when the
    daemon saw the end until its next item listing."""
    state = ready()
    state.observe_items(pending("a", "b"), 0.0)
    state.dispatched(ex(1), 0.0)
    state.observe_executions([ExecutionSeen(ex(1), "succeeded", 0.0, 0.1, 600.0)], 5.0)  # Google 10 min ahead
    assert state.decide(5.0).why == "stale"
    state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a"), *pending("b")], 6.0)
    assert state.decide(6.0).start == 1


def test_a_probe_that_ends_without_a_verdict_lets_another_probe_go() -> None:
    """Half-open, the probe finds no item (idle: its event, or the item still PENDING after it) or is
    cancelled before it claims one: it says nothing about the queue's health, so another probe may
    start rather than the queue staying half-open, starting nothing, until someone resumes it. A probe
    that took an item and succeeded with no job linked counts as such after the claim timeout
    (polling only cannot tell a submission from a crash that exits 0; a submission closes the breaker
    at the next Vertex tick, well within that)."""
    for end in ("idle event", "idle by listing", "cancelled", "claimed, no job"):
        state = ready(breaker_cooldown=60.0, claim_timeout=30.0)
        state.dispatched(ex(1), 0.0)
        state.event_bailout(ex(1), "permission_denied", "permission", 1.0)
        state.observe_executions([ExecutionSeen(ex(1), "failed", 0.0, 0.5, 1.0)], 1.0)
        state.observe_items(pending("a", "b"), 60.0)
        assert state.decide(61.0).probe
        state.dispatched(ex(2), 61.0)
        if end == "idle event":
            state.event_idle(ex(2))
        if end == "claimed, no job":
            state.observe_items([ItemSeen("a", ItemState.CLAIMED, "run-a"), *pending("b")], 62.0)
        status = "cancelled" if end == "cancelled" else "succeeded"
        state.observe_executions([ExecutionSeen(ex(2), status, 61.0, 61.5, 63.0)], 63.0)
        state.observe_items(pending("b") if end == "claimed, no job" else pending("a", "b"), 64.0)
        assert state.breaker.state is BreakerState.HALF_OPEN
        if end == "claimed, no job":
            assert state.decide(65.0).start == 0, end  # it may have submitted: the Vertex listing tells
            decision = state.decide(63.0 + 30.0)
        else:
            decision = state.decide(65.0)
        assert (decision.start, decision.probe) == (1, True), end
