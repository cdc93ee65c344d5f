"""What CustomJobs and launcher executions cost, from their hardware, their times and a price table
(docs/architecture.md, Cost).

A CustomJob costs, while it runs, the sum over its worker pools of replicas x (machine + accelerator x
count) dollars per hour, from its start_time to its end_time (or now). Two figures come from that:

- the counter (`accrue`): each tick adds the seconds since what was already counted, so no second is
  counted twice. A process counts each job from its own start at the earliest (`counting_from`): what
  an earlier process counted is not known to it, and Prometheus sees the restart as a counter reset.
  What a restart loses is the time between the old process's last tick and the new one's start.
- the spend of the last 24 hours, from the jobs' own times: it needs no saved state, so a restart
  neither resets nor doubles the budget gate. A tick prices only the jobs in flight and those that
  ended since the last one; an ended job's billed span goes into the `Ledger` once, so the tally costs
  what changed, not what the lookback holds.

Vertex AI bills no time for a training job that fails for any reason other than a user's cancel (its
pricing page): the 24 h spend leaves FAILED jobs out; the counter, which never goes back, keeps what
it counted while they ran.
"""

from __future__ import annotations

import heapq
import itertools
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


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """An ended job's billed time and price: all the 24 h spend needs of it. Spans order by start
    (then the other fields), so that the ledger's heap holds them as they are, with no key beside."""

    started: float
    ended: float
    dollars_per_hour: float
    queue: str

    def dollars(self, since: float) -> float:
        return max(0.0, self.ended - max(self.started, since)) * self.dollars_per_hour / HOUR


class Ledger:
    """The 24 h spend of the jobs that ended, per queue, kept so that a tick sums only what changed.

    A span lies wholly inside the window (its dollars are in a running sum), across the window's
    start (recomputed each tick: few jobs run for a day) or before it (dropped). The window's start
    only moves forward, so each span moves at most twice. A clock set back does not bring back what
    was dropped; the next rebuild (a reload of the prices or the queues) does.
    """

    def __init__(self, window: float = SPEND_WINDOW) -> None:
        self.window = window
        self._inside: dict[str, float] = {}
        self._by_start: list[Span] = []
        """The spans wholly inside, by start: the next to cross the window's start comes first."""
        self._across: list[tuple[float, Span]] = []
        """The spans across the window's start, by end: the next to leave comes first."""
        self.unpriced_types: set[str] = set()
        """Types reported unpriced since the price table was last applied (one log line each)."""

    def add(self, span: Span, now: float) -> None:
        start = now - self.window
        if span.ended <= max(span.started, start):
            return
        if span.started >= start:
            self._inside[span.queue] = self._inside.get(span.queue, 0.0) + span.dollars(span.started)
            heapq.heappush(self._by_start, span)
        else:
            heapq.heappush(self._across, (span.ended, span))

    def spend(self, now: float) -> dict[str, float]:
        """Dollars per queue within the window that ends at `now`."""
        start = now - self.window
        while self._by_start and self._by_start[0].started < start:
            span = heapq.heappop(self._by_start)
            self._inside[span.queue] -= span.dollars(span.started)
            heapq.heappush(self._across, (span.ended, span))
        while self._across and self._across[0][0] <= start:
            heapq.heappop(self._across)
        totals = {queue: max(0.0, dollars) for queue, dollars in self._inside.items()}
        for _, span in self._across:
            totals[span.queue] = totals.get(span.queue, 0.0) + span.dollars(start)
        return totals


class Books:
    """What the tally keeps between ticks: the ledger of the ended jobs' spans, the jobs that ended
    since the last tally, and whether a reload (new prices or queues) asks for a rebuild."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.pending: list[VertexJob] = []
        self.stale = True

    def tally(  # noqa: PLR0917 - the tick's inputs, each needed
        self,
        live: Iterable[VertexJob],
        jobs: Iterable[VertexJob],
        policies: Mapping[str, QueuePolicy],
        prices: Prices,
        now: float,
        counting_from: float,
    ) -> tuple[list[Fact], dict[str, float]]:
        """`tally` over the jobs in flight and those that ended since the last call; after a reload,
        over every job of `jobs` (the lookback), into a new ledger."""
        ended, self.pending = self.pending, []
        if self.stale:
            self.stale, self.ledger = False, Ledger()
            known = list(jobs)
            ended = [job for job in known if job.state.terminal]
            for job in ended:
                job.billed = False
            unpriced = (hourly(j.hardware, prices).unpriced for j in known if j.unpriced and j.hardware is not None)
            self.ledger.unpriced_types = {kind for kind in unpriced if kind is not None}
        return tally(live, ended, self.ledger, policies, prices, now, counting_from)


def tally(  # noqa: PLR0917 - the tick's inputs, each needed
    live: Iterable[VertexJob],
    ended: Iterable[VertexJob],
    ledger: Ledger,
    policies: Mapping[str, QueuePolicy],
    prices: Prices,
    now: float,
    counting_from: float,
) -> tuple[list[Fact], dict[str, float]]:
    """After each Vertex tick: each queue's cost since the last one (facts for the counter), its
    spend over the last 24 hours (the budget gate), and the jobs the price table cannot price: a
    fact each, once, `outcome` `new` for the first of its type (one log line a type).

    `live` are the jobs in flight, `ended` those that ended since the last tally (each goes into the
    `ledger` once, marked `billed`); the jobs that ended before cost nothing more to tally."""
    facts: list[Fact] = []
    added: dict[str, float] = {}
    running: dict[str, float] = {}
    for job in itertools.chain(ended, live):
        if job.hardware is None or (policy := queue_of(job, policies)) is None or job.billed:
            continue
        queue, rate = policy.name, hourly(job.hardware, prices)
        if rate.dollars_per_hour is None:
            if not job.unpriced and rate.unpriced is not None:
                job.unpriced = True
                outcome = "repeated" if rate.unpriced in ledger.unpriced_types else "new"
                ledger.unpriced_types.add(rate.unpriced)
                facts.append(Fact(FactKind.UNPRICED, queue, outcome=outcome, detail=rate.unpriced, custom_job=job.name))
            continue
        added[queue] = added.get(queue, 0.0) + accrue(job, rate.dollars_per_hour, now, counting_from)
        if not job.state.terminal:
            running[queue] = running.get(queue, 0.0) + spend([(job, rate.dollars_per_hour)], now, ledger.window)
            continue
        job.billed = True
        if job.started is not None and job.ended is not None and job.state not in UNBILLED:
            ledger.add(Span(job.started, job.ended, rate.dollars_per_hour, queue), now)
    facts.extend(Fact(FactKind.VERTEX_COST, q, dollars=dollars) for q, dollars in sorted(added.items()) if dollars > 0)
    spends = ledger.spend(now)
    for queue, dollars in running.items():
        spends[queue] = spends.get(queue, 0.0) + dollars
    return facts, spends
