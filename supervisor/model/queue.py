"""One queue's state, and what observations and events do to it.

Level-triggered (docs/architecture.md, Data flow): `decide` recomputes from the latest view every
time, so a missed or repeated observation can delay work but never lose or double it. Observation
methods return `Fact`s that the daemon turns into metrics and log lines. Pairing executions with
items and jobs is `pairing`; RunJob's record and the dispatch formula are `dispatching`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from launch_supervisor.model import pairing
from launch_supervisor.model.breaker import DISPATCH_REFUSED, UNSEEN_PROBE, Breaker, BreakerState
from launch_supervisor.model.cost import Spending
from launch_supervisor.model.dispatching import Decision, Dispatching
from launch_supervisor.model.executions import IN_FLIGHT, VANISHED, Execution, Phase
from launch_supervisor.model.facts import Fact, FactKind
from launch_supervisor.model.items import Item, ItemState
from launch_supervisor.model.observations import ExecutionSeen, ItemSeen
from launch_supervisor.model.policy import QueuePolicy
from launch_supervisor.model.vertex import VertexJob

UNCERTAIN_SLACK = 5.0
"""An execution created this long before a RunJob whose answer was lost may still be its (clocks
differ): taken in even when it already ended, so its events find it and its end is counted."""
RECOVERY_LOOKBACK = 900.0
"""At start, executions that ended this recently are taken in too (as finished, and not counted
again): a watchdog's `claimed` event may come after its execution ended while the daemon was down,
and must still find it, so that an item it left CLAIMED is failed (docs/architecture.md, Data flow)."""


@dataclass(slots=True)
class QueueState:
    """Everything known about one queue. Over 250 lines: each observation touches several of its parts
    (items, executions, breaker, dispatching, spending) at once; the rules themselves live in the
    modules it calls (`pairing`, `dispatching`, `cost`)."""

    policy: QueuePolicy
    breaker: Breaker = field(init=False)
    items: dict[str, Item] = field(default_factory=dict)
    executions: dict[str, Execution] = field(default_factory=dict)
    dispatching: Dispatching = field(default_factory=Dispatching)
    polled: bool = False
    """The queue has been listed at least once: decisions before that would be blind."""
    recovered: bool = False
    """Executions in flight before this process started have been listed and adopted."""
    items_seen_at: float = 0.0
    """When the items were last listed."""
    spending: Spending = field(default_factory=Spending)
    """Its 24 h spend (the budget gate) and its launcher's price (see `cost`)."""
    finished_at: float = 0.0
    """When an execution was last seen finishing. It may have claimed an item the last listing still
    shows as pending: until the items are listed again, that pending count is not to be trusted."""

    def __post_init__(self) -> None:
        p = self.policy
        self.breaker = Breaker(p.breaker_threshold, p.breaker_window, p.breaker_cooldown, p.breaker_max_cooldown)

    def apply_policy(self, policy: QueuePolicy) -> None:
        """New settings from a reload; the breaker keeps its state and history."""
        self.policy = policy
        p = policy
        self.breaker.configure(p.breaker_threshold, p.breaker_window, p.breaker_cooldown, p.breaker_max_cooldown)

    @property
    def stale(self) -> bool:
        """An execution finished after the latest item listing: list the items before trusting them."""
        return self.finished_at > self.items_seen_at

    # -- observations -------------------------------------------------------------------------

    def observe_items(self, seen: Iterable[ItemSeen], now: float) -> list[Fact]:
        """A poll of the queue's items."""
        facts: list[Fact] = []
        since = self.items_seen_at
        for obs in seen:
            item = self.items.get(obs.id)
            if item is None:
                item = self.items[obs.id] = Item(obs.id, obs.state, first_seen=now, run_id=obs.run_id)
                if obs.state is ItemState.PENDING:
                    item.last_seen = now
                    continue
            if item.observe(obs.state, obs.run_id, now):
                facts.extend(pairing.infer_claim(self.policy.name, self.executions, item, now, since))
        self.polled = True
        self.items_seen_at = now
        return facts

    def observe_executions(self, seen: Iterable[ExecutionSeen], now: float) -> list[Fact]:
        """A listing of the launcher job's executions."""
        facts: list[Fact] = []
        listed = set()
        for obs in seen:
            listed.add(obs.name)
            execution = self.executions.get(obs.name)
            if execution is None:
                ended = obs.status in ("succeeded", "failed", "cancelled")
                uncertain = self.dispatching.uncertain_since
                ours = uncertain is not None and obs.created >= uncertain - UNCERTAIN_SLACK  # RunJob's lost answer
                if ended and not ours and (self.recovered or (obs.finished or 0.0) < now - RECOVERY_LOOKBACK):
                    continue  # finished before we knew it: history, not state
                execution = Execution(obs.name, self.policy.name, created=obs.created, recovered=True)
                self.executions[obs.name] = execution
                if ended and not ours:  # while this process was down: taken in, uncounted, for late events
                    execution.counted = True
                else:
                    facts.append(Fact(FactKind.ADOPTED, self.policy.name, obs.name))
                    if self.breaker.probe == UNSEEN_PROBE:  # the probe whose RunJob answer was lost
                        self.breaker.probe = obs.name
            if obs.started is not None and execution.started is None:
                execution.started = obs.started
            if (obs.cancelling or obs.status == "cancelled") and execution.in_flight:
                facts.extend(execution.cancel_under_way())  # someone asked already: never again
            if obs.status == "running" and execution.phase is Phase.DISPATCHED:
                execution.move(Phase.RUNNING)
            elif obs.status in ("succeeded", "failed", "cancelled"):
                facts.extend(self._finish(execution, obs, now))
            execution.absence.seen(now)
        for gone in [e for e in self.executions.values() if e.in_flight and e.name not in listed and e.absent(now)]:
            facts.extend(self._finish(gone, ExecutionSeen(gone.name, "failed", gone.created, None, now, VANISHED), now))
        self.recovered = True
        self.dispatching.uncertain_since = None
        if self.breaker.probe == UNSEEN_PROBE:  # that RunJob started nothing: a probe may go
            self.breaker.probe = None
        return facts

    def _finish(self, execution: Execution, obs: ExecutionSeen, now: float) -> list[Fact]:
        if ending := execution.in_flight:
            pairing.take_inferred_claim(self.items, self.executions, execution)
        if not execution.end(obs.status, obs.message, obs.finished, now, self.policy.execution_timeout):
            return []
        # The next item listing shows what it claimed. Only when it ends, not at each listing still showing
        # it; and by the daemon's clock: against Cloud Run's, dispatch would wait as long as they differ.
        if ending:
            self.finished_at = max(self.finished_at, now)
        return self._count_finish(execution, now)

    def _count_finish(self, execution: Execution, now: float) -> list[Fact]:
        """Count a finished execution once; a failure waits `event_grace` for its category."""
        if execution.counted:
            return []
        failed = execution.phase in (Phase.FAILED, Phase.BAILOUT, Phase.TIMEOUT)
        finished = execution.finished or now
        if failed and execution.category is None and now - finished < self.policy.event_grace:
            return []  # `settle` counts it once the grace has passed
        execution.counted = True
        duration = finished - execution.created
        outcome = execution.phase.value
        dollars = self.spending.launcher_cost(execution.started or execution.created, finished)
        facts = [Fact(FactKind.FINISHED, self.policy.name, execution.name, outcome, seconds=duration, dollars=dollars)]
        if failed:
            if execution.category is None:
                execution.category = "timeout" if execution.phase is Phase.TIMEOUT else "crash"
            facts.append(Fact(FactKind.BAILOUT, self.policy.name, execution.name, category=execution.category))
            if self.breaker.bailout(now, execution.category, execution.name):
                facts.append(self._opened(execution.name))
        return facts

    def settle(self, now: float) -> list[Fact]:
        """Count failures whose bailout event did not arrive within the grace."""
        facts: list[Fact] = []
        for execution in self.executions.values():
            if execution.phase.finished and not execution.counted:
                facts.extend(self._count_finish(execution, now))
        return facts

    def link_vertex(self, job: VertexJob, now: float) -> list[Fact] | None:
        """A listed CustomJob that may run one of this queue's items: None when it does not, else
        its facts (the item's first submission, and a breaker that closes)."""
        facts = pairing.link_job(self.policy.name, self.items, self.executions, job, now)
        return facts + self._submitted_closes() if facts else facts

    def _opened(self, execution: str | None) -> Fact:
        return Fact(FactKind.BREAKER_OPENED, self.policy.name, execution, detail=self.breaker.reason)

    def _submitted_closes(self) -> list[Fact]:
        """A job reached Vertex: that closes a half-open breaker (an open one waits for its probe)."""
        was = self.breaker.state
        self.breaker.submitted()
        if was is not BreakerState.CLOSED and self.breaker.state is BreakerState.CLOSED:
            return [Fact(FactKind.BREAKER_CLOSED, self.policy.name, detail="a job was submitted")]
        return []

    # -- watchdog events (docs/architecture.md, Events) ---------------------------------------

    def event_claimed(self, execution_name: str, item_id: str, now: float) -> list[Fact]:
        return pairing.confirm_claim(
            self.policy.name,
            self.items,
            executions=self.executions,
            execution_name=execution_name,
            item_id=item_id,
            now=now,
        )

    def event_submitted(self, execution_name: str, custom_job: str, now: float) -> list[Fact]:
        execution = self.executions.get(execution_name)
        if execution is None:
            return []
        facts = pairing.report_job(self.policy.name, self.items, execution, custom_job, now)
        return [] if facts is None else facts + self._submitted_closes()

    def event_bailout(self, execution_name: str, rule: str, category: str, now: float) -> list[Fact]:
        execution = self.executions.get(execution_name)
        if execution is None or execution.bailout_rule is not None:
            return []
        execution.bailout_rule = rule
        if execution.counted:
            return []  # already counted (as crash) after the grace: keep the rule for /status only
        execution.category = category
        if execution.phase is Phase.FAILED:  # listed as failed while waiting for this event
            execution.move(Phase.BAILOUT)
            return self._count_finish(execution, now)
        return []

    def event_idle(self, execution_name: str) -> None:
        """The execution found no item: a claim inferred for it was someone else's, and it ends idle."""
        execution = self.executions.get(execution_name)
        if execution is None:
            return
        execution.idle_exit = True
        pairing.undo_inferred_claim(self.items, execution)
        if execution.phase is Phase.SUCCEEDED:
            execution.move(Phase.IDLE)

    # -- dispatching (docs/architecture.md, Dispatch) -----------------------------------------

    def decide(self, now: float) -> Decision:
        """How many executions to start now."""
        self.breaker.tick(now, probe_over=probe_over(self.breaker, self.executions, now, self.policy.claim_timeout))
        in_flight = [e for e in self.executions.values() if e.in_flight]
        holds = {"starting": not self.polled or not self.recovered, "stale": self.stale}
        holds |= self.spending.held(self.policy.daily_budget)
        return self.dispatching.decide(
            now,
            policy=self.policy,
            breaker=self.breaker,
            pending=self.pending_count(),
            in_flight=in_flight,
            holds=holds,
        )

    def dispatched(self, name: str, now: float) -> list[Fact]:
        """RunJob created execution `name`: the half-open breaker's probe, if it waits for one; it
        ends a row of refusals, and their backoff."""
        execution = self.executions.setdefault(name, Execution(name, self.policy.name, created=now))
        execution.recovered = False  # a listing may have shown it before RunJob's answer came
        if self.breaker.allowance() == 1:
            self.breaker.probe = name
        refusal = self.dispatching.started(now)
        if refusal is None:
            return []
        seconds = now - refusal.since
        return [Fact(FactKind.DISPATCH_RECOVERED, self.policy.name, name, seconds=seconds, detail=refusal.error)]

    def dispatch_refused(self, now: float, error: str) -> list[Fact]:
        """RunJob was refused: no execution exists. The queue backs off, and the refusal counts
        toward the breaker as a `dispatch_refused` bailout."""
        refusal, new = self.dispatching.refused(now, error)
        outcome = "new" if new else "repeated"
        facts = [
            Fact(FactKind.DISPATCH_REFUSED, self.policy.name, None, outcome, DISPATCH_REFUSED, refusal.backoff, error)
        ]
        if self.breaker.bailout(now, DISPATCH_REFUSED):
            facts.append(self._opened(None))
        return facts

    def dispatch_unknown(self, now: float) -> None:
        """RunJob failed but may have created an execution (if the probe: no second before a listing)."""
        self.dispatching.unknown(now)
        if self.breaker.allowance() == 1:
            self.breaker.probe = UNSEEN_PROBE

    def resume(self) -> None:
        """An operator's resume: they say the cause is fixed, so the breaker closes and a refusal
        backoff ends too."""
        self.breaker.close()
        self.dispatching.refusal = None

    def pending_count(self) -> int:
        """Items PENDING in the latest listing and not known to be claimed. An item missing from the
        listing (it is capped, or the item is gone) keeps its last known state but is never counted as
        waiting work; nor is one a `claimed` event has paired with an execution since the listing."""
        return sum(
            1
            for i in self.items.values()
            if i.state is ItemState.PENDING and i.last_seen >= self.items_seen_at and i.claimed_by is None
        )


def in_flight_by_phase(state: QueueState) -> dict[Phase, int]:
    """Executions not finished, counted by phase (every in-flight phase present): for the gauges."""
    counts = dict.fromkeys(IN_FLIGHT, 0)
    for execution in state.executions.values():
        if execution.phase in counts:
            counts[execution.phase] += 1
    return counts


def probe_over(breaker: Breaker, executions: Mapping[str, Execution], now: float, claim_timeout: float) -> bool:
    """The half-open probe ended without a verdict: idle (no item), cancelled, or succeeded with no
    job linked for `claim_timeout` after (polling only cannot tell idle from submitted; a submission
    closes the breaker at the next Vertex tick, well within that). A failed probe reopens it instead."""
    probe = executions.get(breaker.probe or "")
    if breaker.state is not BreakerState.HALF_OPEN or probe is None or probe.in_flight or probe.vertex_job:
        return False
    if probe.phase in (Phase.IDLE, Phase.CANCELLED):
        return True
    return probe.phase is Phase.SUCCEEDED and (probe.finished or now) + claim_timeout <= now
