"""What CustomJobs and launcher executions cost, from their hardware, their times and a price table
(docs/architecture.md, Cost).

A CustomJob costs, while it runs, the sum over its worker pools of replicas x (machine + accelerator x
count) dollars per hour, from its start_time to its end_time (or now). Two figures come from that:

- the counter (`accrue`): each tick adds the seconds since what was already counted, so no second is
  counted twice. A process counts each job from its own start at the earliest (`counting_from`): what
  an earlier process counted is not known to it, and Prometheus sees the restart as a counter reset.
  What a restart loses is the time between the old process's last tick and the new one's start.
- the spend of the last 24 hours (`spend`), recomputed from the jobs' own times at each tick: it
  needs no saved state, so a restart neither resets nor doubles the budget gate.

Vertex AI bills no time for a training job that fails for any reason other than a user's cancel (its
pricing page): the 24 h spend leaves FAILED jobs out; the counter, which never goes back, keeps what
it counted while they ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from launch_supervisor.model.facts import Fact, FactKind
from launch_supervisor.model.policy import QueuePolicy
from launch_supervisor.model.stops import queue_of
from launch_supervisor.model.vertex import Hardware, JobState, VertexJob

HOUR = 3600.0
SPEND_WINDOW = 86400.0
"""`daily_budget` counts the spend of this many seconds back."""
UNBILLED = frozenset({JobState.FAILED})
"""End states Vertex AI bills no time for."""


@dataclass(frozen=True, slots=True)
class Prices:
    """Dollars per hour by machine and accelerator type (each with a spot variant), and Cloud Run's
    per-second prices for the launcher."""

    machine: Mapping[str, float] = field(default_factory=dict)
    machine_spot: Mapping[str, float] = field(default_factory=dict)
    accelerator: Mapping[str, float] = field(default_factory=dict)
    accelerator_spot: Mapping[str, float] = field(default_factory=dict)
    vcpu_second: float = 0.0
    gib_second: float = 0.0


@dataclass(frozen=True, slots=True)
class Rate:
    """A job's price per hour, or the first type the price table does not know."""

    dollars_per_hour: float | None
    unpriced: str | None = None


@dataclass(slots=True)
class Spending:
    """One queue's money: its CustomJobs' spend over the last 24 hours, and its launcher's price."""

    spend: float | None = None
    """Dollars as of the last complete listing (None before the first: with a daily_budget, nothing is
    dispatched until it is known)."""
    launcher_size: tuple[float, float] | None = None
    """The launcher job's (vCPU, GiB) limits, read once from Cloud Run."""
    launcher_rate: float | None = None
    """Dollars per second of a launcher task, once its size and the prices are known."""
    size_error: str | None = None
    """The last error reading the launcher job's size (logged once)."""

    def price_launcher(self, prices: Prices) -> None:
        if self.launcher_size is not None:
            vcpu, gib = self.launcher_size
            self.launcher_rate = vcpu * prices.vcpu_second + gib * prices.gib_second

    def held(self, budget: float | None) -> dict[str, bool]:
        """The dispatch formula's holds for a queue with this `daily_budget` (None: none)."""
        return {
            "spend_unknown": budget is not None and self.spend is None,
            "over_budget": self.over(budget),
        }

    def over(self, budget: float | None) -> bool:
        """The spend reached the budget."""
        return budget is not None and self.spend is not None and self.spend >= budget

    def launcher_cost(self, started: float, finished: float) -> float | None:
        """A launcher execution's cost from its task's start and end; None while unpriced."""
        return None if self.launcher_rate is None else max(0.0, finished - started) * self.launcher_rate


def hourly(hardware: Hardware, prices: Prices) -> Rate:
    """Dollars per hour for the whole job; a type missing from the table makes the job unpriced."""
    machines = prices.machine_spot if hardware.spot else prices.machine
    accelerators = prices.accelerator_spot if hardware.spot else prices.accelerator
    suffix = " (spot)" if hardware.spot else ""
    total = 0.0
    for pool in hardware.pools:
        if pool.replicas <= 0:
            continue  # an empty pool keeps a position in worker_pool_specs and runs nothing
        machine = machines.get(pool.machine_type)
        if machine is None:
            return Rate(None, pool.machine_type + suffix)
        each = machine
        if pool.accelerator_type and pool.accelerator_count > 0:
            accelerator = accelerators.get(pool.accelerator_type)
            if accelerator is None:
                return Rate(None, pool.accelerator_type + suffix)
            each += accelerator * pool.accelerator_count
        total += each * pool.replicas
    return Rate(total)


def billed_until(job: VertexJob, now: float) -> float | None:
    """Where the job's billed time ends so far: its end_time once ended, else now; None before it
    started, or when it ended with no end_time."""
    if job.started is None:
        return None
    if job.state.terminal:
        return job.ended
    return now


def accrue(job: VertexJob, dollars_per_hour: float, now: float, counting_from: float) -> float:
    """Dollars the job cost since what was already counted for it (not before `counting_from`, this
    process's start), and move its mark on."""
    until = billed_until(job, now)
    if until is None or job.started is None:
        return 0.0
    start = job.counted_until if job.counted_until is not None else max(job.started, counting_from)
    if until <= start:
        job.counted_until = start
        return 0.0
    job.counted_until = until
    return dollars_per_hour * (until - start) / HOUR


def spend(jobs: Iterable[tuple[VertexJob, float]], now: float, window: float = SPEND_WINDOW) -> float:
    """Dollars the (job, dollars per hour) pairs cost within the `window` seconds before `now`."""
    total = 0.0
    for job, dollars_per_hour in jobs:
        until = billed_until(job, now)
        if until is None or job.started is None or job.state in UNBILLED:
            continue
        seconds = min(until, now) - max(job.started, now - window)
        if seconds > 0:
            total += dollars_per_hour * seconds / HOUR
    return total


def tally(
    jobs: Iterable[VertexJob], policies: Mapping[str, QueuePolicy], prices: Prices, now: float, counting_from: float
) -> tuple[list[Fact], dict[str, float]]:
    """After each Vertex tick: each queue's cost since the last one (facts for the counter), its
    spend over the last 24 hours (the budget gate), and the jobs the price table cannot price: a
    fact each, once, `outcome` `new` when no known job had that type before (one log line a type)."""
    rated = [
        (job, policy.name, hourly(job.hardware, prices))
        for job in jobs
        if job.hardware is not None and (policy := queue_of(job, policies)) is not None
    ]
    known = {rate.unpriced for job, _, rate in rated if job.unpriced}
    facts: list[Fact] = []
    added: dict[str, float] = {}
    priced: dict[str, list[tuple[VertexJob, float]]] = {}
    for job, queue, rate in rated:
        if rate.dollars_per_hour is not None:
            priced.setdefault(queue, []).append((job, rate.dollars_per_hour))
            added[queue] = added.get(queue, 0.0) + accrue(job, rate.dollars_per_hour, now, counting_from)
        elif not job.unpriced and rate.unpriced is not None:
            job.unpriced = True
            outcome = "repeated" if rate.unpriced in known else "new"
            known.add(rate.unpriced)
            facts.append(Fact(FactKind.UNPRICED, queue, outcome=outcome, detail=rate.unpriced, custom_job=job.name))
    facts.extend(Fact(FactKind.VERTEX_COST, q, dollars=dollars) for q, dollars in sorted(added.items()) if dollars > 0)
    return facts, {queue: spend(pairs, now) for queue, pairs in priced.items()}
