"""Per-queue state, what observations do to it, and what to do next.

Level-triggered (docs/architecture.md, Data flow): `decide` recomputes from the latest view every time, so a missed or
repeated observation can delay work but never lose or double it. Observation methods return
`Fact`s (a claim, a submission, an execution that finished…) that the daemon turns into metrics
and log lines; the model itself keeps no counters.

Pairing an execution with the item it took: a watchdog `claimed` event says so directly. Without
one, an item that leaves PENDING is attributed to the oldest in-flight execution that has not yet
claimed anything (the agent pops whatever is first, so only the numbers are certain anyway).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from supervisor.model.breaker import DISPATCH_REFUSED, Breaker, BreakerState
from supervisor.model.executions import IN_FLIGHT, Execution, Phase
from supervisor.model.items import Item, ItemState
from supervisor.model.vertex import HANGING, JobState, VertexJob

FAIL_STAGES = {"vertex_job_ended": "run", "execution_ended": "agent"}
"""Why the supervisor fails an item → the failRunQueueItem stage it reports."""
ENDED_BADLY = frozenset({Phase.BAILOUT, Phase.FAILED, Phase.TIMEOUT, Phase.CANCELLED})
BUDGET_PERIOD = 60.0
"""dispatch_budget counts executions started within this many seconds."""
REFUSAL_BACKOFF = 5.0
"""Seconds nothing is dispatched for a queue after Cloud Run refused its RunJob; doubled on each
refusal in a row, up to REFUSAL_BACKOFF_MAX. A refusal seldom passes within seconds (a permission, a
missing job: a person must act), so retrying it at every wake-up would only flood the API and the log."""
REFUSAL_BACKOFF_MAX = 300.0
CANCEL_REASONS = ("stop_after_submit",)
"""Why the supervisor cancels an execution (the label of the cancel counter)."""


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """The settings the model needs for one queue (built from the config by the daemon)."""

    name: str
    entity: str
    launcher_job: str
    max_inflight: int
    dispatch_budget: int
    claim_timeout: float
    execution_timeout: float
    breaker_threshold: int
    breaker_window: float
    breaker_cooldown: float
    breaker_max_cooldown: float
    retention_seconds: float
    retention_max: int
    stop_after_submit: float = 0.0
    """Seconds an execution may keep running after its CustomJob was created before it is cancelled;
    0: never."""


# -- observations -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemSeen:
    id: str
    state: ItemState
    run_id: str | None


@dataclass(frozen=True, slots=True)
class ExecutionSeen:
    """One execution as Cloud Run lists it, already classified (docs/architecture.md, Google clients)."""

    name: str
    status: str
    """pending | running | succeeded | failed | cancelled"""
    created: float
    started: float | None
    finished: float | None
    message: str = ""
    cancelling: bool = False
    """A cancel is under way (a condition with reason CANCELLING), whoever asked for it."""


@dataclass(frozen=True, slots=True)
class VertexSeen:
    name: str
    run_id: str | None
    state: JobState
    created: float
    ended: float | None
    error: str | None
    item_id: str | None = None
    """WANDB_LAUNCH_TRACE_ID from the job's container env: the queue item it runs."""


# -- facts (for metrics and logs) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    kind: str
    """claimed | submitted | finished | bailout | adopted | breaker_opened | breaker_closed | vertex_ended |
    queue_wait | cancel_requested | post_submit | dispatch_refused | dispatch_recovered"""
    queue: str
    execution: str | None = None
    outcome: str | None = None
    """An execution's outcome, a CustomJob's end state; for dispatch_refused `new` when the error is
    not the previous refusal's (worth a log line), else `repeated`."""
    category: str | None = None
    seconds: float | None = None
    """Latency or duration the metric records, when there is one."""
    detail: str | None = None
    custom_job: str | None = None
    """The CustomJob the fact is about, when it names one."""


# -- decisions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailItem:
    """Call failRunQueueItem: the item is still CLAIMED but nothing will ever run it."""

    item_id: str
    message: str
    reason: str
    """vertex_job_ended: its CustomJob ended badly; execution_ended: its execution ended without one."""
    source: str
    """The CustomJob or execution that ended."""

    @property
    def stage(self) -> str:
        return FAIL_STAGES[self.reason]


@dataclass(frozen=True, slots=True)
class CancelExecution:
    """Call CancelExecution: the execution's CustomJob exists, yet the execution is still running, so
    its watchdog missed the submission; it would hold a slot of max_inflight until its task timeout."""

    queue: str
    execution: str
    item_id: str | None
    custom_job: str
    reason: str
    """One of CANCEL_REASONS."""
    seconds: float
    """Since the CustomJob was created."""


@dataclass(frozen=True, slots=True)
class Decision:
    start: int
    """Executions to start now."""
    probe: bool
    """The (single) execution started is the half-open breaker's probe."""
    pending: int
    want: int
    """Pending items that no execution in flight is about to claim: the work there is."""
    why: str
    """Which term of the formula decided, for the logs."""
    not_before: float | None = None
    """While RunJob refusals back the queue off: nothing is dispatched before this time."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """RunJob refusals in a row, since the last dispatch that Cloud Run accepted."""

    error: str
    """The latest refusal's error."""
    since: float
    """The first refusal in the row."""
    backoff: float
    """Seconds from the latest refusal to `until`."""
    until: float
    """No dispatch before this time."""


@dataclass(slots=True)
class QueueState:
    """Everything known about one queue."""

    policy: QueuePolicy
    breaker: Breaker = field(init=False)
    items: dict[str, Item] = field(default_factory=dict)
    executions: dict[str, Execution] = field(default_factory=dict)
    dispatch_times: deque[float] = field(default_factory=deque)
    polled: bool = False
    """The queue has been listed at least once: decisions before that would be blind."""
    recovered: bool = False
    """Executions in flight before this process started have been listed and adopted."""
    uncertain_since: float | None = None
    """A RunJob whose result is unknown: no dispatching until the executions are listed again."""
    refusal: Refusal | None = None
    """RunJob refused since the last accepted dispatch: the queue backs off."""
    items_seen_at: float = 0.0
    """When the items were last listed."""
    finished_at: float = 0.0
    """When an execution was last seen finishing. It may have claimed an item the last listing still
    shows as pending: until the items are listed again, that pending count is not to be trusted."""
    event_grace: float = 0.0
    """How long a failed execution waits for its watchdog's bailout event before it counts as
    `crash` (0 when no events are configured)."""

    def __post_init__(self) -> None:
        p = self.policy
        self.breaker = Breaker(p.breaker_threshold, p.breaker_window, p.breaker_cooldown, p.breaker_max_cooldown)

    # -- observations -------------------------------------------------------------------------

    def observe_items(self, seen: Iterable[ItemSeen], now: float) -> list[Fact]:
        """A poll of the queue's items."""
        facts: list[Fact] = []
        for obs in seen:
            item = self.items.get(obs.id)
            if item is None:
                item = self.items[obs.id] = Item(obs.id, obs.state, first_seen=now, run_id=obs.run_id)
                if obs.state is ItemState.PENDING:
                    item.last_seen = now
                    continue
            item.last_seen = now
            if obs.run_id and not item.run_id:
                item.run_id = obs.run_id
            was_pending = item.state is ItemState.PENDING
            if obs.state is ItemState.PENDING and item.state is ItemState.LEASED:
                item.claimed_by = None  # the lease ran out un-acked: nobody holds the item any more
            item.state = obs.state
            if was_pending and obs.state in (ItemState.LEASED, ItemState.CLAIMED) and item.claimed_by is None:
                facts.extend(self._infer_claim(item, now))
        self.polled = True
        self.items_seen_at = now
        return facts

    def _infer_claim(self, item: Item, now: float) -> list[Fact]:
        candidates = [e for e in self.executions.values() if e.in_flight and not e.has_claimed]
        if not candidates:
            return []
        execution = min(candidates, key=lambda e: e.created)
        return self._claim(execution, item, now)

    def _claim(self, execution: Execution, item: Item, now: float) -> list[Fact]:
        execution.item_id = item.id
        execution.move(Phase.CLAIMED)
        item.claimed_by = execution.name
        return [
            Fact("claimed", self.policy.name, execution.name, seconds=max(0.0, now - execution.created)),
            Fact("queue_wait", self.policy.name, execution.name, seconds=max(0.0, execution.created - item.first_seen)),
        ]

    def observe_executions(self, seen: Iterable[ExecutionSeen], now: float) -> list[Fact]:
        """A listing of the launcher job's executions."""
        facts: list[Fact] = []
        for obs in seen:
            execution = self.executions.get(obs.name)
            if execution is None:
                if obs.status in ("succeeded", "failed", "cancelled"):
                    continue  # finished before we knew it: history, not state
                execution = Execution(obs.name, self.policy.name, created=obs.created, recovered=True)
                self.executions[obs.name] = execution
                facts.append(Fact("adopted", self.policy.name, obs.name))
            if obs.started is not None and execution.started is None:
                execution.started = obs.started
            if obs.cancelling and execution.in_flight:
                execution.cancel_settled = True  # someone asked already; a second cancel adds nothing
            if obs.status == "running" and execution.phase is Phase.DISPATCHED:
                execution.move(Phase.RUNNING)
            elif obs.status in ("succeeded", "failed", "cancelled"):
                facts.extend(self._finish(execution, obs, now))
        self.recovered = True
        self.uncertain_since = None
        return facts

    def _finish(self, execution: Execution, obs: ExecutionSeen, now: float) -> list[Fact]:
        if obs.status == "succeeded":
            outcome = Phase.SUCCEEDED if execution.has_claimed and not execution.idle_exit else Phase.IDLE
        elif obs.status == "cancelled":
            outcome = Phase.CANCELLED
        elif execution.phase is Phase.BAILOUT or execution.category is not None:
            outcome = Phase.BAILOUT
        else:
            ran = (obs.finished or now) - (execution.started or execution.created)
            timed_out = ran >= self.policy.execution_timeout or "timeout" in obs.message.lower()
            outcome = Phase.TIMEOUT if timed_out else Phase.FAILED
        if not execution.move(outcome):
            return []
        if execution.completed is None:
            execution.completed = obs.finished
        if execution.finished is None:
            execution.finished = obs.finished or now
            # A listing made after the execution ended already shows what it claimed.
            self.finished_at = max(self.finished_at, execution.finished)
        return self._count_finish(execution, now)

    def _count_finish(self, execution: Execution, now: float) -> list[Fact]:
        """Count a finished execution once; a failure waits `event_grace` for its category."""
        if execution.counted:
            return []
        failed = execution.phase in (Phase.FAILED, Phase.BAILOUT, Phase.TIMEOUT)
        finished = execution.finished or now
        if failed and execution.category is None and now - finished < self.event_grace:
            return []  # `settle` counts it once the grace has passed
        execution.counted = True
        duration = finished - execution.created
        facts = [Fact("finished", self.policy.name, execution.name, outcome=execution.phase.value, seconds=duration)]
        if failed:
            if execution.category is None:
                execution.category = "timeout" if execution.phase is Phase.TIMEOUT else "crash"
            facts.extend(self._bailout(execution, now))
        return facts

    def settle(self, now: float) -> list[Fact]:
        """Count failures whose bailout event did not arrive within the grace."""
        facts: list[Fact] = []
        for execution in self.executions.values():
            if execution.phase.finished and not execution.counted:
                facts.extend(self._count_finish(execution, now))
        return facts

    def _bailout(self, execution: Execution, now: float) -> list[Fact]:
        category = execution.category or "crash"
        facts = [Fact("bailout", self.policy.name, execution.name, category=category)]
        if self.breaker.bailout(now, category, execution.name):
            facts.append(Fact("breaker_opened", self.policy.name, execution.name, detail=self.breaker.reason))
        return facts

    def link_vertex(self, job: VertexJob, now: float) -> list[Fact]:
        """A CustomJob whose trace id (the item id) or run id belongs to one of this queue's items."""
        item = self.items.get(job.item_id) if job.item_id else None
        if item is None and job.run_id:
            item = next((i for i in self.items.values() if i.run_id == job.run_id), None)
        if item is None:
            return []
        job.queue = self.policy.name
        if job.run_id and not item.run_id:
            item.run_id = job.run_id  # the listing that shows associatedRunId may not have come yet
        facts: list[Fact] = []
        if item.vertex_job is None:
            item.vertex_job = job.name
            facts.append(Fact("submitted", self.policy.name, item.claimed_by, seconds=max(0.0, now - item.first_seen)))
            if item.claimed_by and (execution := self.executions.get(item.claimed_by)):
                execution.vertex_job = job.name
                execution.move(Phase.SUBMITTED)
            facts.extend(self._submitted_closes())
        return facts

    def _submitted_closes(self) -> list[Fact]:
        """A job reached Vertex: that closes a half-open breaker (an open one waits for its probe)."""
        was = self.breaker.state
        self.breaker.submitted()
        if was is not BreakerState.CLOSED and self.breaker.state is BreakerState.CLOSED:
            return [Fact("breaker_closed", self.policy.name, detail="a job was submitted")]
        return []

    # -- watchdog events (docs/architecture.md, Events) -----------------------------------------------------------

    def event_claimed(self, execution_name: str, item_id: str, now: float) -> list[Fact]:
        execution = self.executions.get(execution_name)
        if execution is None:
            return []
        if execution.item_id == item_id:  # the listing inferred this pairing first: now it is certain
            inferred = self.items.get(item_id)
            if inferred is not None and inferred.claimed_by == execution_name:
                inferred.claim_confirmed = True
            return []
        item = self.items.get(item_id) or Item(item_id, ItemState.CLAIMED, first_seen=now, last_seen=now)
        self.items.setdefault(item_id, item)
        if execution.item_id is not None:  # an inferred pairing was wrong: undo it
            previous = self.items.get(execution.item_id)
            if previous is not None and previous.claimed_by == execution_name:
                previous.claimed_by = None
        if item.claimed_by and item.claimed_by != execution_name:  # taken from a wrongly inferred one
            other = self.executions.get(item.claimed_by)
            if other is not None and other.item_id == item_id:
                other.item_id = None
        if execution.vertex_job and not item.vertex_job:  # `submitted` arrived first
            item.vertex_job = execution.vertex_job
        item.claim_confirmed = True
        return self._claim(execution, item, now)

    def event_submitted(self, execution_name: str, custom_job: str, now: float) -> list[Fact]:
        execution = self.executions.get(execution_name)
        if execution is None:
            return []
        execution.reported_job = custom_job  # even when a listing linked the same job by inference first
        if execution.vertex_job == custom_job:
            return []
        execution.vertex_job = custom_job
        execution.move(Phase.SUBMITTED)
        facts: list[Fact] = []
        item = self.items.get(execution.item_id) if execution.item_id else None
        if item is not None and item.vertex_job is None:
            item.vertex_job = custom_job
            facts.append(Fact("submitted", self.policy.name, execution_name, seconds=max(0.0, now - item.first_seen)))
        facts.extend(self._submitted_closes())
        return facts

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
        item = self.items.get(execution.item_id) if execution.item_id else None
        if item is not None and item.claimed_by == execution_name and not item.claim_confirmed:
            item.claimed_by = None
            execution.item_id = None
        if execution.phase is Phase.SUCCEEDED:
            execution.move(Phase.IDLE)

    # -- acting -------------------------------------------------------------------------------

    def decide(self, now: float) -> Decision:
        """How many executions to start now (docs/architecture.md, Dispatch)."""
        self.breaker.tick(now)
        while self.dispatch_times and self.dispatch_times[0] <= now - BUDGET_PERIOD:
            self.dispatch_times.popleft()
        pending = self.pending_count()
        in_flight = [e for e in self.executions.values() if e.in_flight]
        unclaimed = sum(1 for e in in_flight if not e.has_claimed and now - e.created < self.policy.claim_timeout)
        want = max(0, pending - unclaimed)
        room = max(0, self.policy.max_inflight - len(in_flight))
        budget = max(0, self.policy.dispatch_budget - len(self.dispatch_times))
        terms = {"want": want, "room": room, "budget": budget}
        allowance = self.breaker.allowance()
        if allowance is not None:
            terms["breaker"] = allowance
        if not self.polled or not self.recovered:
            terms["starting"] = 0
        if self.uncertain_since is not None:
            terms["uncertain"] = 0
        if self.finished_at > self.items_seen_at:
            terms["stale"] = 0
        not_before = self.refusal.until if self.refusal is not None and now < self.refusal.until else None
        if not_before is not None:
            terms["refused"] = 0
        why = min(terms, key=lambda k: terms[k])
        start = terms[why]
        return Decision(
            start=start,
            probe=allowance == 1 and start > 0,
            pending=pending,
            want=want,
            why=why,
            not_before=not_before,
        )

    def in_flight_by_phase(self) -> dict[Phase, int]:
        """Executions not finished, counted by phase (every in-flight phase present)."""
        counts = dict.fromkeys(IN_FLIGHT, 0)
        for execution in self.executions.values():
            if execution.phase in counts:
                counts[execution.phase] += 1
        return counts

    def pending_count(self) -> int:
        """Items PENDING in the latest listing and not known to be claimed. An item missing from the
        listing (it is capped, or the item is gone) keeps its last known state but is never counted as
        waiting work; nor is one a `claimed` event has paired with an execution since the listing."""
        return sum(
            1
            for i in self.items.values()
            if i.state is ItemState.PENDING and i.last_seen >= self.items_seen_at and i.claimed_by is None
        )

    def dispatched(self, name: str, now: float, probe: bool) -> list[Fact]:
        """RunJob created execution `name`; it ends a row of refusals, and their backoff."""
        self.executions[name] = Execution(name, self.policy.name, created=now)
        self.dispatch_times.append(now)
        if probe:
            self.breaker.probe = name
        refusal, self.refusal = self.refusal, None
        if refusal is None:
            return []
        return [Fact("dispatch_recovered", self.policy.name, name, seconds=now - refusal.since, detail=refusal.error)]

    def dispatch_refused(self, now: float, error: str) -> list[Fact]:
        """RunJob was refused: no execution exists. Nothing more is dispatched for the queue until a
        backoff has passed (doubling with each refusal in a row, capped), and the refusal counts
        toward the breaker as a `dispatch_refused` bailout."""
        previous = self.refusal
        if previous is None:
            backoff, since = REFUSAL_BACKOFF, now
        else:
            backoff, since = min(REFUSAL_BACKOFF_MAX, previous.backoff * 2), previous.since
        self.refusal = Refusal(error, since, backoff, now + backoff)
        new = previous is None or previous.error != error
        facts = [
            Fact(
                "dispatch_refused",
                self.policy.name,
                outcome="new" if new else "repeated",
                category=DISPATCH_REFUSED,
                seconds=backoff,
                detail=error,
            )
        ]
        if self.breaker.bailout(now, DISPATCH_REFUSED):
            facts.append(Fact("breaker_opened", self.policy.name, detail=self.breaker.reason))
        return facts

    def resume(self) -> None:
        """An operator's resume: they say the cause is fixed, so the breaker closes and a refusal
        backoff ends too."""
        self.breaker.close()
        self.refusal = None

    def dispatch_unknown(self, now: float) -> None:
        """RunJob failed in a way that may still have created an execution."""
        self.dispatch_times.append(now)
        self.uncertain_since = now

    def hung_items(self, vertex_jobs: Iterable[VertexJob]) -> list[FailItem]:
        """Items still CLAIMED whose CustomJob ended FAILED, CANCELLED or EXPIRED."""
        by_run = {i.run_id: i for i in self.items.values() if i.run_id}
        actions = []
        for job in vertex_jobs:
            item = self.items.get(job.item_id) if job.item_id else None
            if item is None and job.run_id:
                item = by_run.get(job.run_id)
            if item is None or job.state not in HANGING:
                continue
            if item.state is ItemState.CLAIMED and not item.failed_by_supervisor:
                message = job.error or f"Vertex AI job {job.name} ended {job.state.value}"
                actions.append(FailItem(item.id, message, "vertex_job_ended", job.name))
        return actions

    def orphaned_items(self) -> list[FailItem]:
        """Items still CLAIMED, in a listing made after the execution that claimed them ended badly
        without creating a CustomJob: the agent was stopped before it could fail the item itself.
        Only claims a `claimed` event confirmed count: an inferred pairing may name the wrong item."""
        actions = []
        for item in self.items.values():
            if (
                item.state is not ItemState.CLAIMED
                or not item.claim_confirmed
                or item.failed_by_supervisor
                or item.vertex_job is not None
                or item.last_seen < self.items_seen_at
            ):
                continue
            execution = self.executions.get(item.claimed_by or "")
            if execution is None or not execution.counted or execution.phase not in ENDED_BADLY:
                continue
            if execution.finished is None or execution.finished >= self.items_seen_at:
                continue  # the listing may predate the agent's own failRunQueueItem
            short = execution.name.rsplit("/", 1)[-1]
            cause = execution.category or execution.phase.value
            if execution.bailout_rule:
                cause += f", rule {execution.bailout_rule}"
            message = f"launcher execution {short} ended ({cause}) before it created a Vertex AI job"
            actions.append(FailItem(item.id, message, "execution_ended", execution.name))
        return actions

    def _custom_job(self, execution: Execution, jobs: Mapping[str, VertexJob], certain: bool) -> VertexJob | None:
        """The listed CustomJob `execution` submitted. With `certain`, only as the execution itself
        said: its `submitted` event, or its `claimed` event for the item the job runs. A pairing
        inferred by counting may name another execution's item."""
        names = [execution.reported_job]
        item = self.items.get(execution.item_id) if execution.item_id else None
        if item is not None and item.claimed_by == execution.name and (item.claim_confirmed or not certain):
            names.append(item.vertex_job)
        if not certain:
            names.append(execution.vertex_job)
        return next((jobs[name] for name in names if name and name in jobs), None)

    def stop_after_submit(self, jobs: Mapping[str, VertexJob], now: float) -> list[CancelExecution]:
        """Executions still running `stop_after_submit` seconds after their CustomJob was created.

        The watchdog stops the agent the moment it submits; one still running missed that, and would
        hold its slot until the task timeout. Only a pairing the execution reported counts (see
        `_custom_job`): cancelling on an inferred one could stop an execution submitting another item.
        """
        limit = self.policy.stop_after_submit
        if limit <= 0:
            return []
        actions = []
        for execution in self.executions.values():
            if not execution.in_flight or execution.cancel_settled:
                continue
            job = self._custom_job(execution, jobs, certain=True)
            if job is None or job.created <= 0 or now - job.created < limit:
                continue  # no create_time (0) means no clock to go by
            actions.append(
                CancelExecution(
                    self.policy.name,
                    execution.name,
                    execution.item_id,
                    job.name,
                    "stop_after_submit",
                    now - job.created,
                )
            )
        return actions

    def cancel_answered(self, action: CancelExecution, accepted: bool) -> list[Fact]:
        """CancelExecution answered: accepted, or nothing to cancel (gone, or ended). Never again."""
        execution = self.executions.get(action.execution)
        if execution is not None:
            execution.cancel_settled = True
            execution.cancel_error = None
        if not accepted:
            return []
        return [
            Fact(
                "cancel_requested",
                self.policy.name,
                action.execution,
                seconds=action.seconds,
                detail=action.reason,
                custom_job=action.custom_job,
            )
        ]

    def cancel_failed(self, action: CancelExecution, error: str) -> bool:
        """CancelExecution failed; it is tried again later. True when the error is new (worth a log line)."""
        execution = self.executions.get(action.execution)
        if execution is None or execution.cancel_error == error:
            return False
        execution.cancel_error = error
        return True

    def post_submit(self, jobs: Mapping[str, VertexJob]) -> list[Fact]:
        """Executions that ended after submitting: Cloud Run's completion_time minus the CustomJob's
        create_time, once each. Both clocks are Google's; without either time nothing is observed."""
        facts = []
        for execution in self.executions.values():
            if execution.post_submit_counted or execution.in_flight or execution.completed is None:
                continue
            if execution.phase is Phase.IDLE:
                continue
            job = self._custom_job(execution, jobs, certain=False)
            if job is None or job.created <= 0:
                continue
            execution.post_submit_counted = True
            seconds = max(0.0, execution.completed - job.created)
            facts.append(Fact("post_submit", self.policy.name, execution.name, seconds=seconds, custom_job=job.name))
        return facts

    def item_failed(self, item_id: str) -> None:
        item = self.items.get(item_id)
        if item is not None:
            item.failed_by_supervisor = True
            item.state = ItemState.FAILED

    def prune(self, now: float) -> None:
        """Drop finished executions and gone items past retention, keeping memory bounded."""
        keep_after = now - self.policy.retention_seconds
        finished = sorted(
            (e for e in self.executions.values() if not e.in_flight), key=lambda e: e.finished or e.created
        )
        excess = max(0, len(finished) - self.policy.retention_max)
        for index, execution in enumerate(finished):
            if index < excess or (execution.finished or execution.created) < keep_after:
                del self.executions[execution.name]
        for item_id in [i.id for i in self.items.values() if i.last_seen < keep_after]:
            del self.items[item_id]
        if len(self.items) > self.policy.retention_max * 2:
            oldest = sorted(self.items.values(), key=lambda i: i.last_seen)
            for item in oldest[: len(self.items) - self.policy.retention_max * 2]:
                if item.state is not ItemState.PENDING:
                    del self.items[item.id]


def observe_vertex(
    known: dict[str, VertexJob], seen: Iterable[VertexSeen], queues: Iterable[QueueState], now: float
) -> list[Fact]:
    """Fold a CustomJob listing into `known`, link jobs to queue items, and note jobs that ended."""
    facts: list[Fact] = []
    queues = list(queues)
    for obs in seen:
        job = known.get(obs.name)
        if job is None:
            job = known[obs.name] = VertexJob(obs.name, obs.run_id, obs.state, obs.created, item_id=obs.item_id)
        job.item_id = job.item_id or obs.item_id
        was_terminal = job.state.terminal
        job.state, job.ended, job.error = obs.state, obs.ended, obs.error
        if job.queue is None:
            for state in queues:
                facts.extend(state.link_vertex(job, now))
                if job.queue is not None:
                    break
        if job.state.terminal and not was_terminal and job.queue is not None:
            ended = obs.ended or now
            facts.append(
                Fact("vertex_ended", job.queue, outcome=job.state.value, seconds=max(0.0, ended - job.created))
            )
    return facts


def prune_vertex(known: dict[str, VertexJob], horizon: float) -> None:
    """Forget ended jobs older than `horizon` (epoch seconds)."""
    for name in [n for n, j in known.items() if j.state.terminal and (j.ended or j.created) < horizon]:
        del known[name]
