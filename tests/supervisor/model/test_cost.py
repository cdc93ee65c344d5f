"""Cost: a job's price per hour from its hardware, the counter that never counts a second twice, the
24 h spend rebuilt from the jobs' own times, the budget gate, and the launcher's cost."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from launch_supervisor.model import cost
from launch_supervisor.model.cost import Prices
from launch_supervisor.model.facts import Fact, FactKind
from launch_supervisor.model.items import ItemState
from launch_supervisor.model.observations import ExecutionSeen, ItemSeen, VertexSeen
from launch_supervisor.model.state import State
from launch_supervisor.model.vertex import Hardware, JobState, Pool
from tests.supervisor.model.test_queue import policy

N1_8 = 0.4369977
L4 = 0.7
"""Figures for the arithmetic only; the shipped table says where its own come from."""
PRICES = Prices(
    machine={"n1-standard-8": N1_8, "n1-standard-4": N1_8 / 2},
    machine_spot={"n1-standard-8": 0.1},
    accelerator={"NVIDIA_L4": L4},
    accelerator_spot={"NVIDIA_L4": 0.25},
    vcpu_second=0.000018,
    gib_second=0.000002,
)
TWO_BY_TWO_L4 = Hardware((Pool("n1-standard-8", 2, "NVIDIA_L4", 2),))
START = 1_000_000.0
TICK = 15.0


def seen(  # noqa: PLR0917 - a listing's fields, by position in the tests
    n: int = 1,
    state: JobState = JobState.RUNNING,
    started: float | None = START,
    ended: float | None = None,
    hardware: Hardware = TWO_BY_TWO_L4,
    created: float = START - 60,
) -> VertexSeen:
    return VertexSeen(
        f"projects/x/locations/r/customJobs/{n}",
        f"run-{n}",
        state,
        created=created,
        ended=ended,
        error=None,
        item_id=f"i{n}",
        launch_queue=("e", "q"),
        started=started,
        hardware=hardware,
    )


def costing(counting_from: float = 0.0, **settings: float) -> State:
    state = State()
    state.counting_from = counting_from
    state.apply_prices(PRICES)
    state.apply_policy([replace(policy(name="q"), **settings)])
    return state


def tick(state: State, jobs: list[VertexSeen], now: float) -> list[Fact]:
    """One Vertex tick: the listing folded in, then the costs tallied, as the daemon's loop does."""
    return state.observe_vertex(jobs, now, horizon=0.0, complete=True) + state.tally_costs(now)


def dollars(facts: list[Fact], kind: FactKind = FactKind.VERTEX_COST) -> float:
    return sum(f.dollars or 0.0 for f in facts if f.kind is kind)


def test_two_replicas_of_n1_standard_8_with_two_l4_for_90_minutes() -> None:
    """By hand: each replica 0.4369977 + 2 x 0.7 = 1.8369977 $/h; two replicas 3.6739954 $/h; for
    1.5 h 5.5109931 $. The counter, added up tick by tick, and the 24 h spend both give it."""
    assert cost.hourly(TWO_BY_TWO_L4, PRICES).dollars_per_hour == pytest.approx(3.6739954)
    state = costing()
    counted = 0.0
    end = START + 90 * 60
    now = START - 60
    while now < end:
        now += TICK
        counted += dollars(tick(state, [seen()], now))
    counted += dollars(tick(state, [seen(ended=end, state=JobState.SUCCEEDED)], now + 7))
    assert counted == pytest.approx(5.5109931)
    assert state.queues["q"].spending.spend == pytest.approx(5.5109931)


def test_the_counter_stops_at_end_time_and_counts_no_second_twice() -> None:
    """Listed late after its end, or again and again: only up to end_time, once."""
    state = costing()
    tick(state, [seen()], START + 600)
    ended = seen(state=JobState.CANCELLED, ended=START + 900)
    later = dollars(tick(state, [ended], START + 5000))
    assert later == pytest.approx(3.6739954 * 300 / 3600)
    for moment in (START + 6000, START + 9000):
        assert dollars(tick(state, [ended], moment)) == 0.0


def test_a_restarted_process_counts_from_its_own_start_and_rebuilds_the_24h_spend() -> None:
    """A job running for an hour before the process started: the counter counts from the start only
    (the earlier process counted the rest), the spend counts the whole hour, from the job's times."""
    state = costing(counting_from=START + 3600)
    facts = tick(state, [seen()], START + 3600 + TICK)
    assert dollars(facts) == pytest.approx(3.6739954 * TICK / 3600)
    assert state.queues["q"].spending.spend == pytest.approx(3.6739954 * (3600 + TICK) / 3600)
    assert [f for f in facts if f.kind is FactKind.ADMITTED] == []  # the earlier process saw it start


def test_the_spend_counts_the_last_24_hours_only_and_leaves_failed_jobs_out() -> None:
    """Google bills no time for a job that failed (other than a user's cancel): nothing of it."""
    now = START + 30 * 3600
    state = costing()
    jobs = [seen(1), seen(2, JobState.FAILED, ended=START + 3600), seen(3, JobState.CANCELLED, ended=START + 3600)]
    tick(state, jobs, now)
    assert state.queues["q"].spending.spend == pytest.approx(3.6739954 * 24)


def test_spot_jobs_take_spot_prices_and_an_unknown_type_is_unpriced_never_guessed() -> None:
    """SPOT scheduling takes the spot columns; a missing type is reported once per job, logged once per type."""
    spot = Hardware((Pool("n1-standard-8", 1, "NVIDIA_L4", 1),), spot=True)
    assert cost.hourly(spot, PRICES).dollars_per_hour == pytest.approx(0.35)
    state = costing()
    a100 = Hardware((Pool("a2-highgpu-1g", 1, "NVIDIA_TESLA_A100", 1),))
    spot4 = Hardware((Pool("n1-standard-4", 1),), spot=True)
    first = tick(state, [seen(1, hardware=a100), seen(2, hardware=spot4)], START + 60)
    unpriced = [(f.detail, f.outcome) for f in first if f.kind is FactKind.UNPRICED]
    assert unpriced == [("a2-highgpu-1g", "new"), ("n1-standard-4 (spot)", "new")]
    assert dollars(first) == 0.0
    again = tick(state, [seen(1, hardware=a100), seen(2, hardware=spot4), seen(3, hardware=a100)], START + 75)
    assert [(f.detail, f.outcome) for f in again if f.kind is FactKind.UNPRICED] == [("a2-highgpu-1g", "repeated")]
    assert state.queues["q"].spending.spend == 0.0


def test_an_empty_pool_costs_nothing() -> None:
    """worker_pool_specs keeps a position for an unused pool: replica_count 0, no machine type."""
    hardware = Hardware((Pool("n1-standard-8", 1), Pool("", 0)))
    assert cost.hourly(hardware, PRICES).dollars_per_hour == pytest.approx(N1_8)


def test_admission_wait_is_observed_once_from_create_time_to_start_time() -> None:
    """The wait for capacity is observed at the first listing that gives a start_time, once."""
    state = costing()
    tick(state, [seen(state=JobState.QUEUED, started=None)], START - 30)
    facts = tick(state, [seen()], START + 10)
    [admitted] = [f for f in facts if f.kind is FactKind.ADMITTED]
    assert (admitted.queue, admitted.seconds) == ("q", 60.0)
    facts = tick(state, [seen()], START + 25)
    assert [f for f in facts if f.kind is FactKind.ADMITTED] == []


def test_the_budget_holds_dispatch_until_the_spend_is_known_then_while_it_is_reached() -> None:
    """3.67 $/h against a 5 $ budget: dispatch waits for the first listing, goes on while the day's
    spend is below 5 $, and stops (`over_budget`) from about 81.6 minutes of running on."""
    state = costing(daily_budget=5.0)
    queue = state.queues["q"]
    queue.observe_items([ItemSeen("i9", ItemState.PENDING, None)], START)
    queue.observe_executions([], START)
    assert queue.decide(START).why == "spend_unknown"
    tick(state, [seen()], START + 3600)
    assert queue.decide(START + 3600).start == 1
    reached = START + math.ceil(5.0 / 3.6739954 * 3600)
    tick(state, [seen()], reached)
    decision = queue.decide(reached)
    assert (decision.start, decision.why) == (0, "over_budget")
    assert queue.spending.over(5.0)


def test_a_queue_without_a_budget_is_never_held_by_cost() -> None:
    """No daily_budget: the cost terms never hold dispatch, not even before the first listing."""
    state = costing()
    queue = state.queues["q"]
    queue.observe_items([ItemSeen("i9", ItemState.PENDING, None)], START)
    queue.observe_executions([], START)
    assert queue.decide(START).start == 1


def test_a_launcher_execution_costs_its_task_seconds_by_cpu_and_memory() -> None:
    """2 vCPU and 2 GiB for 100 s: 2 x 0.000018 x 100 + 2 x 0.000002 x 100 = 0.004 $; once."""
    state = costing()
    state.launcher_read("q", 2.0, 2.0)
    running = ExecutionSeen("projects/p/locations/r/jobs/j/executions/e1", "running", START, START + 5, None)
    state.observe_executions("q", [running], START + 10, 0.0)
    done = replace(running, status="succeeded", finished=START + 105)
    step = state.observe_executions("q", [done], START + 110, 0.0)
    assert dollars(step.facts, FactKind.FINISHED) == pytest.approx(0.004)
    again = state.observe_executions("q", [done], START + 120, 0.0)
    assert dollars(again.facts, FactKind.FINISHED) == 0.0


def test_a_day_of_a_busy_project_sums_to_the_overlap_of_each_job_with_the_window() -> None:
    """5,000 jobs over the last 48 hours, of every length, some still running, some failed: the
    spend is each billed job's overlap with the last 24 hours, at its price, and nothing else."""
    now = START + 48 * 3600
    jobs, expected = [], 0.0
    for n in range(5000):
        created = START + (n * 7919 % 172800)
        started = created + n % 900
        length = 60 + (n * 104729 % 20000)
        state = (JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)[n % 4]
        ended = None if state is JobState.RUNNING else min(now, started + length)
        if started > now:
            continue
        jobs.append(seen(n, state, started=started, ended=ended, created=created))
        if state is not JobState.FAILED:
            overlap = min(ended or now, now) - max(started, now - 86400)
            expected += max(0.0, overlap) * 3.6739954 / 3600
    state = costing()
    tick(state, jobs, now)
    assert state.queues["q"].spending.spend == pytest.approx(expected, rel=1e-9)


def brute_spend(jobs: dict[int, VertexSeen], now: float) -> float:
    """The 24 h spend recomputed from every job's own times, as a fresh process would."""
    total = 0.0
    for job in jobs.values():
        if job.started is None or job.started > now or job.state is JobState.FAILED:
            continue
        until = now if job.ended is None else min(job.ended, now)
        total += max(0.0, until - max(job.started, now - 86400)) * 3.6739954 / 3600
    return total


def test_the_spend_kept_tick_by_tick_equals_the_spend_recomputed_from_every_job() -> None:
    """30 hours of ticks, each listing only the jobs that changed (as the daemon's ticks do): jobs
    start, end (some after more than a day, so they cross the window's start while ended), and the
    window moves past them. At every tick the spend equals the brute-force sum over every job, and
    equals what a restarted process rebuilds; a price reload rebuilds it too."""
    state = costing()
    jobs: dict[int, VertexSeen] = {}
    now = START
    for n in range(1200):
        now += 90.0
        changed = [seen(n, started=now, created=now - 30)]
        jobs[n] = changed[0]
        for old in (n - 7, n - 400, n - 1100):  # lengths of 10 minutes, 10 hours and 27.5 hours
            if old >= 0 and jobs[old].ended is None:
                state_ = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)[old % 3]
                jobs[old] = replace(jobs[old], state=state_, ended=now - 5)
                changed.append(jobs[old])
        state.observe_vertex(changed, now, horizon=now - 86400)
        state.tally_costs(now)
        if n % 97 == 0:
            assert state.queues["q"].spending.spend == pytest.approx(brute_spend(jobs, now), rel=1e-9, abs=1e-9)
    fresh = costing(counting_from=now)
    tick(fresh, list(jobs.values()), now)
    assert fresh.queues["q"].spending.spend == pytest.approx(brute_spend(jobs, now), rel=1e-9)
    assert state.queues["q"].spending.spend == pytest.approx(brute_spend(jobs, now), rel=1e-9)
    state.apply_prices(replace(PRICES, accelerator={"NVIDIA_L4": 2 * L4}))
    state.tally_costs(now)
    assert state.queues["q"].spending.spend > brute_spend(jobs, now) * 1.5


def test_a_tick_prices_only_the_jobs_in_flight_and_those_that_just_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ended job's span enters the ledger once; later ticks never price it again."""
    state = costing()
    tick(state, [seen(1), seen(2)], START + 60)
    ended = seen(2, JobState.SUCCEEDED, ended=START + 120)
    state.observe_vertex([ended], START + 150, horizon=0.0)
    state.tally_costs(START + 150)
    assert state.vertex_jobs[ended.name].billed
    calls: list[Hardware] = []
    real = cost.hourly

    def counting(hardware: Hardware, prices: Prices) -> cost.Rate:
        calls.append(hardware)
        return real(hardware, prices)

    monkeypatch.setattr(cost, "hourly", counting)
    state.tally_costs(START + 165)
    assert len(calls) == 1  # the running job only
    assert state.queues["q"].spending.spend == pytest.approx(3.6739954 * (165 + 120) / 3600)
