"""Properties of the pure model, checked with hypothesis over generated inputs: messages never break
the inbox, dispatch never overshoots whatever the order of observations, records only move forward,
and the model is deterministic (docs/architecture.md, Data flow, State machines, Dispatch, Events).

The model is driven only as the daemon drives it, through its public methods. `Sim` pairs it with a
small world (the queue's items, the Cloud Run executions, the CustomJobs, the Pub/Sub messages in
flight) that moves as the real one does, so the checks can compare the model's decisions with the
truth rather than with the model's own view.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from launch_supervisor.model.breaker import BreakerState
from launch_supervisor.model.dispatching import BUDGET_PERIOD, Decision
from launch_supervisor.model.events import SCHEMA, WATCHDOG_TYPES, EventType, Malformed, parse
from launch_supervisor.model.executions import TRANSITIONS, Phase
from launch_supervisor.model.facts import Fact, FactKind
from launch_supervisor.model.inbox import MALFORMED, Outcome
from launch_supervisor.model.items import ItemState
from launch_supervisor.model.observations import ExecutionSeen, ItemSeen, VertexSeen
from launch_supervisor.model.policy import QueuePolicy
from launch_supervisor.model.queue import QueueState
from launch_supervisor.model.remedies import FailItem
from launch_supervisor.model.state import State
from launch_supervisor.model.vertex import JobState
from tests.supervisor.model.test_queue import JOB, ex, pending, policy

pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
"""On a failure, hypothesis's pytest plugin imports libcst (to suggest an explicit example), which
warns; with warnings as errors that would hide the falsifying example behind an INTERNALERROR."""

QUICK = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
"""No example database: each run stands alone, whatever earlier runs on this machine found."""

# -- 1. Event parsing and the inbox -----------------------------------------------------------------

JOB_R = "projects/p/locations/r/jobs/other"
CUSTOM_JOB = "projects/p/locations/r/customJobs/7"
KNOWN = (ex(1), ex(2), f"{JOB_R}/executions/x3")
"""Executions the inbox's state has listed, running: q's x1 and x2, r's x3."""
MALFORMED_KINDS = frozenset({"not_json", "not_object", "unknown_type", "missing_field"})
RESULTS = {
    "watchdog": frozenset({"applied", "duplicate", "buffered", "unknown_execution"}),
    EventType.ITEM_ADDED: frozenset({"applied", "duplicate", "unknown_queue"}),
    EventType.EXECUTION_HINT: frozenset({"applied"}),
    EventType.VERTEX_HINT: frozenset({"applied"}),
}
FIELDS: dict[str, dict[str, Any]] = {
    "watchdog.started": {"entity": "e", "command": ["wandb", "launch-agent"]},
    "watchdog.claimed": {"item_id": "i1"},
    "watchdog.submitted": {"item_id": "i1", "custom_job": CUSTOM_JOB},
    "watchdog.bailout": {"rule": "quota_exceeded", "category": "quota", "lines": ["x"], "detection_ms": 120},
    "watchdog.idle_exit": {"idle_seconds": 30},
    "watchdog.exited": {"exit_code": 0, "reason": "submitted", "runtime_seconds": 12.5},
}
KEYS = st.sampled_from(
    [
        *("event", "type", "schema", "execution", "queue", "entity", "item_id", "custom_job", "rule"),
        *("category", "detection_ms", "job", "logName", "jsonPayload", "protoPayload", "resource", "labels"),
        *("serviceName", "job_name", "execution_name", "run.googleapis.com/execution_name"),
    ]
) | st.text(max_size=8)
EXECUTION_NAMES = st.sampled_from(["x1", "x2", "x3", "x9", *KNOWN, f"{JOB}/executions/x9", ""])
ODD_VALUES = st.sampled_from(
    [[], {}, [1], {"a": 1}, 10**400, float("nan"), float("-inf"), -1, True, "", "watchdog.claimed", "queue.item_added"]
)
"""Values of the wrong type or range that parsers trip on: empty or unhashable containers, an integer
beyond any float, NaN, a watchdog type where a name is expected."""
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | ODD_VALUES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=10,
)
ATTRIBUTES = st.none() | st.dictionaries(
    st.sampled_from(["type", "schema"]) | st.text(max_size=4),
    st.sampled_from([t.value for t in EventType]) | st.text(max_size=12),
    max_size=2,
)


@st.composite
def watchdog_events(draw: st.DrawFn, execution: st.SearchStrategy[str] = EXECUTION_NAMES) -> dict[str, Any]:
    """A valid watchdog event, about one of the known executions or another."""
    kind = draw(st.sampled_from(sorted(FIELDS)))
    body: dict[str, Any] = {"event": kind, "schema": SCHEMA, "execution": draw(execution), **FIELDS[kind]}
    queue = draw(st.sampled_from([None, "q", "r", "gone"]))
    if queue is not None:
        body["queue"] = queue
    return body


@st.composite
def near_valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A watchdog event with fields dropped, given values of the wrong type, or added."""
    body = draw(watchdog_events())
    for key in draw(st.lists(st.sampled_from(sorted(body)), unique=True, max_size=3)):
        if draw(st.booleans()):
            del body[key]
        else:
            body[key] = draw(ODD_VALUES | JSON_VALUES)
    if draw(st.booleans()):  # the type also (or only) in `type`, as a publisher may put it
        body["type"] = draw(st.sampled_from(sorted(FIELDS)) | ODD_VALUES)
    body.update(draw(st.dictionaries(KEYS, ODD_VALUES | JSON_VALUES, max_size=2)))
    return body


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return value | ODD_VALUES | JSON_VALUES


@st.composite
def log_entries(draw: st.DrawFn) -> dict[str, Any]:
    """A Cloud Logging LogEntry as a sink routes it: a watchdog line, a Cloud Run or Vertex entry, or
    parts of those of the wrong shape."""
    entry: dict[str, Any] = {}
    if draw(st.booleans()):
        entry["logName"] = draw(_maybe(st.just("projects/p/logs/run.googleapis.com%2Fstdout")))
    if draw(st.booleans()):
        entry["jsonPayload"] = draw(near_valid_events() | watchdog_events() | JSON_VALUES)
    if draw(st.booleans()):
        entry["labels"] = draw(_maybe(st.fixed_dictionaries({"run.googleapis.com/execution_name": EXECUTION_NAMES})))
    if draw(st.booleans()):
        labels = st.fixed_dictionaries({"job_name": _maybe(st.just("launcher")), "execution_name": EXECUTION_NAMES})
        kind = st.sampled_from(["cloud_run_job", "ml_job", "gce_instance"])
        entry["resource"] = draw(_maybe(st.fixed_dictionaries({"type": _maybe(kind), "labels": _maybe(labels)})))
    if draw(st.booleans()):
        service = st.sampled_from(["aiplatform.googleapis.com", "run.googleapis.com"])
        entry["protoPayload"] = draw(_maybe(st.fixed_dictionaries({"serviceName": _maybe(service)})))
    if not entry.keys() & {"logName", "jsonPayload", "protoPayload"}:
        entry["logName"] = "projects/p/logs/x"
    return entry


def _encode(value: Any, encoding: str = "utf-8") -> bytes:
    return json.dumps(value).encode(encoding)


MESSAGES = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda n, prefix: prefix * n, st.integers(0, 3000), st.sampled_from([b"[", b'{"a":'])),
    JSON_VALUES.map(_encode),
    st.dictionaries(KEYS, JSON_VALUES, max_size=6).map(_encode),
    near_valid_events().map(_encode),
    st.builds(_encode, watchdog_events(), st.sampled_from(["utf-8", "utf-16", "utf-32"])),
    log_entries().map(_encode),
    st.builds(_encode, st.fixed_dictionaries({"event": st.just("queue.item_added"), "queue": _maybe(st.just("q"))})),
)


def listed_state() -> State:
    """Queues q and r, listed: q's executions x1 and x2 and r's x3 are running."""
    state = State()
    state.apply_policy([policy(name="q"), policy(name="r", launcher_job=JOB_R)])
    for name in ("q", "r"):
        state.queues[name].observe_items(pending("i1", "i2"), 0.0)
    state.observe_executions("q", [ExecutionSeen(n, "running", 0.0, 0.5, None) for n in KNOWN[:2]], 1.0, 1.0)
    state.observe_executions("r", [ExecutionSeen(KNOWN[2], "running", 0.0, 0.5, None)], 1.0, 1.0)
    return state


def _result_kinds(outcome: Outcome) -> frozenset[str]:
    if outcome.type == MALFORMED:
        return MALFORMED_KINDS
    return RESULTS["watchdog" if outcome.type in WATCHDOG_TYPES else outcome.type]


@QUICK
@given(messages=st.lists(st.tuples(MESSAGES, ATTRIBUTES), min_size=1, max_size=6))
def test_no_message_makes_receive_raise_and_each_gets_one_result(messages: list[tuple[bytes, Any]]) -> None:
    """Any message is either counted malformed with its kind, or gets one result of its own type."""
    state = listed_state()
    for n, (data, attributes) in enumerate(messages):
        outcome = state.receive(data, attributes, 2.0 + n, 2.0 + n)
        parsed = parse(data, attributes)
        assert outcome.error is None, outcome.error
        assert outcome.detection is None or 0 <= outcome.detection[1] < math.inf, outcome.detection
        assert outcome.result in _result_kinds(outcome), outcome
        if isinstance(parsed, Malformed):
            assert (outcome.type, outcome.result) == (MALFORMED, parsed.kind)
        else:
            assert outcome.type == parsed.type


def _as_log_entry(body: dict[str, Any]) -> dict[str, Any]:
    """The same event as a log sink delivers it: the watchdog's stdout line as the entry's jsonPayload."""
    return {"logName": "projects/p/logs/run.googleapis.com%2Fstdout", "jsonPayload": body}


@QUICK
@given(
    event=watchdog_events(st.sampled_from(["x1", "x2", "x3", *KNOWN])),
    hint=st.sampled_from([None, "gone", "own"]),
    routes=st.tuples(st.booleans(), st.booleans()),
    noise=st.lists(st.tuples(MESSAGES, ATTRIBUTES), max_size=3),
)
def test_a_watchdog_event_delivered_twice_is_applied_once(
    event: dict[str, Any], hint: str | None, routes: tuple[bool, bool], noise: list[tuple[bytes, Any]]
) -> None:
    """The second delivery of an applied event (direct or through a log sink) is a duplicate, and changes nothing."""
    state = listed_state()
    event.pop("queue", None)
    if hint is not None:  # the queue the event names is a hint: unknown, or the execution's own
        event["queue"] = "r" if event["execution"].endswith("x3") else "q" if hint == "own" else hint
    first, second = (_encode(_as_log_entry(event) if logged else event) for logged in routes)
    assert state.receive(first, {}, 2.0, 2.0).result == "applied"
    for n, (data, attributes) in enumerate(noise):
        state.receive(data, attributes, 3.0 + n, 3.0 + n)
    before = copy.deepcopy(state.queues)
    again = state.receive(second, {}, 9.0, 9.0)
    assert (again.type, again.result, again.facts, again.reconcile) == (event["event"], "duplicate", (), ())
    assert state.queues == before


@QUICK
@given(event=watchdog_events(st.just("x5")), noise=st.lists(st.binary(max_size=20), max_size=3))
def test_a_watchdog_event_waiting_for_its_execution_twice_is_applied_once(
    event: dict[str, Any], noise: list[bytes]
) -> None:
    """Both deliveries wait for the execution; the listing that shows it applies one, and a third is a duplicate."""
    state = listed_state()
    event["queue"] = "q"
    for data in [_encode(event), *noise, _encode(event)]:
        assert state.receive(data, None, 2.0, 2.0).result in {"buffered", *MALFORMED_KINDS}
    step = state.observe_executions("q", [ExecutionSeen(ex(5), "running", 0.0, 0.5, None)], 3.0, 3.0)
    assert [(o.type, o.result) for o in step.events] == [(event["event"], "applied")]
    assert state.inbox.buffered == 0
    assert state.receive(_encode(event), None, 4.0, 4.0).result == "duplicate"


# -- the world the model watches ------------------------------------------------------------------

NAME = "q"
LIVE = ("pending", "running")
REACHABLE: dict[Phase, frozenset[Phase]] = {}
"""Every phase an execution may reach from each phase, by any number of allowed moves."""
for _phase in Phase:
    _seen, _todo = {_phase}, [_phase]
    while _todo:
        for _next in TRANSITIONS.get(_todo.pop(), frozenset()):
            if _next not in _seen:
                _seen.add(_next)
                _todo.append(_next)
    REACHABLE[_phase] = frozenset(_seen)


@dataclass
class Run:
    """A Cloud Run execution, as it really is."""

    name: str
    created: float
    status: str = "pending"
    """pending | running | succeeded | failed | cancelled, as ListExecutions classifies it."""
    started: float | None = None
    finished: float | None = None
    item: str | None = None
    """The item its agent popped."""
    popped: int = 0
    """How many item listings the daemon had made when it popped the item."""
    job: str | None = None
    message: str = ""
    fate: tuple[int, str] = (4, "exit")
    """Where its agent stops (a stage, see `Sim.stage`) and how: `exit` (done), `bailout:CATEGORY`,
    `failed` (a crash, no event), `cancelled`, or `hang` (until the task timeout)."""


@dataclass
class Job:
    """A Vertex AI CustomJob, as it really is."""

    name: str
    item: str
    created: float
    state: JobState = JobState.RUNNING
    ended: float | None = None


class Sim:
    """One queue's model, driven as the daemon drives it, beside the world it observes. Every step
    checks the model's answers against the truth (see `check_decision`, `check`)."""

    def __init__(self, queue_policy: QueuePolicy) -> None:
        self.state = State()
        self.state.apply_policy([queue_policy])
        self.now = 1000.0
        self.clock = 0.0
        self.items: dict[str, ItemState] = {}
        self.runs: dict[str, Run] = {}
        self.jobs: dict[str, Job] = {}
        self.outbox: list[bytes] = []
        """Pub/Sub messages published and not yet delivered (or to be delivered again)."""
        self.calls: list[float] = []
        """RunJob calls that may have started an execution: the per-minute budget counts these."""
        self.trace: list[object] = []
        """Everything the model answered, in order."""
        self.failed: set[str] = set()
        """Items failRunQueueItem succeeded for."""
        self.finished: set[str] = set()
        """Executions whose `finished` fact was reported."""
        self.phases: dict[str, Phase] = {}
        self.breaker = BreakerState.CLOSED
        """The breaker's state after the previous step."""
        self.probes: list[Run] = []
        """Executions created since the breaker last became half-open."""
        self.serial = 0
        self.listings = 0
        """Item listings so far."""
        self.ended: set[str] = set()
        """Executions the previous executions listing showed ended."""

    @property
    def queue(self) -> QueueState:
        return self.state.queues[NAME]

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def report(self, facts: Sequence[Fact]) -> None:
        for fact in facts:
            if fact.kind is FactKind.FINISHED:
                assert fact.execution not in self.finished, f"{fact.execution} finished twice"
                self.finished.add(fact.execution or "")
        self.trace.append(tuple(facts))

    def _outcome(self, outcome: Outcome) -> None:
        assert outcome.result != "failed", outcome.error
        self.report(outcome.facts)
        self.trace.append(outcome)

    # -- the world moves ----------------------------------------------------------------------------

    def moment(self) -> None:
        """Every step takes a little time: no two share a timestamp, as none do in the daemon."""
        self.now += 0.01
        self.clock += 0.01

    def advance(self, seconds: float) -> None:
        """Time passes; Cloud Run ends executions that ran their whole task timeout."""
        self.now += seconds
        self.clock += seconds
        for run in self.runs.values():
            if run.status in LIVE and self.now - run.created >= self.queue.policy.execution_timeout:
                self._end(run, "failed", "Task execution exceeded timeout")

    def enqueue(self, count: int) -> None:
        for _ in range(count):
            self.items[f"i{self._next()}"] = ItemState.PENDING

    def publish(self, run: Run, kind: str, **fields: Any) -> None:
        short = run.name.rsplit("/", 1)[-1]
        body = {"event": kind, "schema": SCHEMA, "execution": short, "queue": NAME, **fields}
        self.outbox.append(json.dumps(body).encode())

    def _end(self, run: Run, status: str, message: str = "") -> None:
        run.status, run.finished, run.message = status, self.now, message
        if run.item is not None and self.items.get(run.item) is ItemState.LEASED:
            self.items[run.item] = ItemState.PENDING  # popped, never acked: the lease runs out

    def stage(self, run: Run) -> int:
        """0 pending, 1 running, 2 popped an item, 3 acked it, 4 submitted its CustomJob."""
        if run.status == "pending":
            return 0
        if run.item is None:
            return 1
        if self.items[run.item] is ItemState.LEASED:
            return 2
        return 3 if run.job is None else 4

    def progress(self, index: int) -> None:
        """One live execution takes its next step (start, pop, ack, submit), or meets its fate."""
        self.moment()
        live = [r for r in self.runs.values() if r.status in LIVE]
        if not live:
            return
        run = live[index % len(live)]
        stop, how = run.fate
        if self.stage(run) == stop:
            if how.startswith("bailout:"):
                category = how.removeprefix("bailout:")
                self.publish(run, "watchdog.bailout", rule=f"{category}_rule", category=category, detection_ms=80)
                self._end(run, "failed")
            elif how == "exit":
                self.publish(run, "watchdog.exited", exit_code=0, reason="submitted")
                self._end(run, "succeeded")
            elif how != "hang":
                self._end(run, how)
        elif run.status == "pending":
            run.status, run.started = "running", self.now
        elif run.item is None:
            item = next((i for i, s in self.items.items() if s is ItemState.PENDING), None)
            if item is None:
                self.publish(run, "watchdog.idle_exit", idle_seconds=30)
                self._end(run, "succeeded")
            else:
                run.item, run.popped, self.items[item] = item, self.listings, ItemState.LEASED
        elif self.items[run.item] is ItemState.LEASED:
            self.items[run.item] = ItemState.CLAIMED
            self.publish(run, "watchdog.claimed", item_id=run.item)
        else:
            run.job = f"projects/p/locations/r/customJobs/{self._next()}"
            self.jobs[run.job] = Job(run.job, run.item, self.now)
            self.publish(run, "watchdog.submitted", item_id=run.item, custom_job=run.job)

    def end_job(self, index: int, end: JobState) -> None:
        """A CustomJob reaches an end state."""
        live = [j for j in self.jobs.values() if not j.state.terminal]
        if live:
            job = live[index % len(live)]
            job.state, job.ended = end, self.now

    # -- the daemon acts ----------------------------------------------------------------------------

    def list_items(self) -> None:
        self.moment()
        seen = [ItemSeen(i, s, f"run-{i}" if s is ItemState.CLAIMED else None) for i, s in self.items.items()]
        self.report(self.queue.observe_items(seen, self.now))
        self.listings += 1

    def list_executions(self) -> None:
        self.moment()
        seen = [
            ExecutionSeen(r.name, r.status, r.created, r.started, r.finished, r.message) for r in self.runs.values()
        ]
        trusted = not self.queue.stale
        ended = {r.name for r in self.runs.values() if r.status not in LIVE}
        step = self.state.observe_executions(NAME, seen, self.now, self.clock)
        if trusted and ended <= self.ended:  # none ended since the previous listing
            assert not self.queue.stale, "a listing where nothing new ended made the item view stale"
        self.ended = ended
        self.report(step.facts)
        for outcome in step.events:
            self._outcome(outcome)

    def deliver(self, index: int, again: bool) -> None:
        """Pub/Sub delivers one message in flight, in any order; `again`: it will be delivered again."""
        self.moment()
        if self.outbox:
            data = self.outbox[index % len(self.outbox)] if again else self.outbox.pop(index % len(self.outbox))
            self._outcome(self.state.receive(data, {}, self.now, self.clock))

    def reconcile(self, answers: Sequence[tuple[str, tuple[int, str]]]) -> None:
        """Decide, then call RunJob that many times; each call is accepted (`ok`) unless `answers` says
        `refused`, `unknown` (no execution) or `unknown_created`; with the fate of the execution."""
        self.moment()
        queue = self.queue
        decision = queue.decide(self.now)
        self.trace.append(decision)
        self.check_decision(decision)
        half_open = queue.breaker.state is BreakerState.HALF_OPEN
        for n in range(decision.start):
            answer, fate = answers[n] if n < len(answers) else ("ok", (4, "exit"))
            if answer == "refused":
                self.report(queue.dispatch_refused(self.now, "403 Permission denied on the launcher job"))
                return
            self.calls.append(self.now)
            name = f"{JOB}/executions/e{self._next()}"
            if answer != "ok":
                queue.dispatch_unknown(self.now)
            if answer != "unknown":
                self.runs[name] = Run(name, self.now, fate=fate)
                if half_open:
                    self.probes.append(self.runs[name])
            if answer == "ok":
                self.report(queue.dispatched(name, self.now))
            else:
                return

    def vertex(self, fail_ok: bool) -> None:
        """A CustomJob listing, then the chores: fail what nothing will run (the call succeeds when
        `fail_ok`), cancel executions still running after they submitted."""
        self.moment()
        seen = [
            VertexSeen(j.name, f"run-{j.item}", j.state, j.created, j.ended, None, item_id=j.item)
            for j in self.jobs.values()
        ]
        self.report(self.state.observe_vertex(seen, self.now, self.now - 86400.0))
        chores = self.state.chores(NAME, self.now)
        self.trace.append(chores)
        self.report(chores.facts)
        for action in chores.stranded:
            assert action.item_id not in self.failed, f"{action} for an item failed already"
        for action in chores.fail:
            self._fail(action, fail_ok)
        for action in chores.stranded:
            if self.state.still_stranded(NAME, action.item_id):
                self._fail(action, fail_ok)
        for cancel in chores.cancel:
            self.report(self.state.cancel_answered(cancel, accepted=True))
            run = self.runs.get(cancel.execution)
            if run is not None and run.status in LIVE:
                self._end(run, "cancelled")

    def _fail(self, action: FailItem, ok: bool) -> None:
        assert action.item_id not in self.failed, f"{action} for an item failed already"
        if ok:
            self.state.item_failed(NAME, action.item_id)
            self.failed.add(action.item_id)
            self.items[action.item_id] = ItemState.FAILED

    def resume(self) -> None:
        self.trace.append(self.state.resume(NAME))

    def tick(self, answers: Sequence[tuple[str, tuple[int, str]]]) -> None:
        """The daemon's usual round: list the executions and the items, then reconcile."""
        self.list_executions()
        self.list_items()
        self.reconcile(answers)

    def round(
        self,
        moves: Sequence[tuple[int, int]],
        deliveries: Sequence[tuple[int, bool]],
        items_first: bool,
        answers: Sequence[tuple[str, tuple[int, str]]],
    ) -> None:
        """A burst of the world and one of the daemon, checked after each step: executions take some
        steps, messages arrive, both listings come (in either order), and the queue reconciles."""
        for index, count in moves:
            self.apply(("steps", index, count))
        for index, again in deliveries:
            self.apply(("deliver", index, again))
        listings = ["list_items", "list_executions"]
        for listing in listings if items_first else listings[::-1]:
            self.apply((listing,))
        self.reconcile(answers)

    def steps(self, index: int, count: int) -> None:
        """One live execution takes `count` steps in a row (6: all the way to its fate)."""
        live = [r for r in self.runs.values() if r.status in LIVE]
        if live:
            run = live[index % len(live)]
            for _ in range(count):
                live = [r for r in self.runs.values() if r.status in LIVE]
                if run in live:
                    self.progress(live.index(run))

    def everyone(self) -> None:
        """Every live execution takes its next step."""
        for run in [r for r in self.runs.values() if r.status in LIVE]:
            live = [r for r in self.runs.values() if r.status in LIVE]
            if run in live:
                self.progress(live.index(run))

    # -- the checks ---------------------------------------------------------------------------------

    def check_decision(self, decision: Decision) -> None:
        """The decision against the truth: the executions really in flight, the items really pending."""
        queue, start = self.queue, decision.start
        p = queue.policy
        assert start >= 0
        live = [r for r in self.runs.values() if r.status in LIVE]
        assert start == 0 or len(live) + start <= p.max_inflight, f"{len(live)} in flight + {start}"
        if queue.breaker.state is BreakerState.HALF_OPEN and self.breaker is not BreakerState.HALF_OPEN:
            self.probes = []
        assert queue.breaker.state is not BreakerState.OPEN or start == 0, "started while the breaker is open"
        if queue.breaker.state is BreakerState.HALF_OPEN:
            probing = sum(1 for r in self.probes if r.status in LIVE)
            assert start + probing <= 1, f"{start} more while {probing} probe(s) run, half-open"
        waiting = sum(1 for s in self.items.values() if s is ItemState.PENDING)
        # By design, an execution that has not claimed within claim_timeout (as far as the model can
        # know: no listing since it popped) stops counting: the item it took still looks pending.
        waiting += sum(
            1
            for r in self.runs.values()
            if r.item
            and self.items[r.item] is not ItemState.PENDING
            and r.popped == self.listings
            and self.now - r.created >= p.claim_timeout
        )
        about_to_pop = sum(1 for r in live if r.item is None and self.now - r.created < p.claim_timeout)
        assert start <= max(0, waiting - about_to_pop), f"{start} started for {waiting} items, {about_to_pop} covered"
        recent = sum(1 for t in self.calls if t > self.now - BUDGET_PERIOD)
        assert start == 0 or recent + start <= p.dispatch_budget, f"{recent} RunJobs this minute + {start}"

    def check_records(self) -> None:
        """No execution's phase moved other than the table allows, since the previous step."""
        for name, execution in self.queue.executions.items():
            before = self.phases.get(name)
            assert before is None or execution.phase in REACHABLE[before], f"{name}: {before} → {execution.phase}"
            self.phases[name] = execution.phase

    def check(self) -> None:
        """After every step: the records, and the decision a reconcile would take now (the daemon
        may reconcile at any moment: an event wakes it)."""
        self.check_records()
        self.check_decision(self.queue.decide(self.now))
        self.breaker = self.queue.breaker.state

    def apply(self, op: tuple[Any, ...]) -> None:
        getattr(self, op[0])(*op[1:])
        self.check()


POLICIES = st.builds(
    policy,
    name=st.just(NAME),
    max_inflight=st.sampled_from([1, 2, 3, 5, 8]),
    dispatch_budget=st.sampled_from([1, 3, 10]),
    claim_timeout=st.sampled_from([30.0, 120.0]),
    execution_timeout=st.sampled_from([300.0, 900.0]),
    breaker_threshold=st.sampled_from([1, 1, 2, 3]),
    breaker_cooldown=st.sampled_from([30.0, 60.0]),
    event_grace=st.sampled_from([0.0, 20.0]),
    stop_after_submit=st.sampled_from([0.0, 60.0]),
    stranded_after=st.sampled_from([1000.0, 2400.0]),
    retention_seconds=st.just(86400.0),
)
SECONDS = st.sampled_from([1.0, 5.0, 20.0, 61.0, 150.0, 400.0])
FATES = st.sampled_from(
    [(4, "exit")] * 4
    + [(0, "failed"), (1, "bailout:permission"), (1, "failed"), (2, "failed"), (3, "bailout:quota")]
    + [(3, "bailout:permission"), (3, "failed"), (3, "cancelled"), (3, "hang"), (4, "hang")]
)
ANSWERS = st.lists(st.tuples(st.sampled_from(["ok", "ok", "refused", "unknown", "unknown_created"]), FATES), max_size=3)
WHICH = st.integers(0, 3)
"""Which live execution moves (modulo how many there are)."""
STEPS = st.integers(1, 6)
MOVES = st.lists(st.tuples(WHICH, STEPS), max_size=4)
DELIVERIES = st.lists(st.tuples(st.integers(0, 9), st.booleans()), max_size=3)
END_STATES = st.sampled_from([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
OPS = st.one_of(
    st.tuples(st.just("advance"), SECONDS),
    st.tuples(st.just("enqueue"), st.integers(1, 3)),
    st.tuples(st.just("list_items")),
    st.tuples(st.just("list_executions")),
    st.tuples(st.just("reconcile"), ANSWERS),
    st.tuples(st.just("steps"), WHICH, STEPS),
    st.tuples(st.just("deliver"), st.integers(0, 9), st.booleans()),
    st.tuples(st.just("end_job"), st.integers(0, 9), END_STATES),
    st.tuples(st.just("vertex"), st.booleans()),
    st.tuples(st.just("resume")),
    st.tuples(st.just("tick"), ANSWERS),
    st.tuples(st.just("everyone")),
    st.tuples(st.just("round"), MOVES, DELIVERIES, st.booleans(), ANSWERS),
)


# -- 2. and 3. Dispatch, in any reachable state; records only move forward ------------------------


class DispatchMachine(RuleBasedStateMachine):
    """The daemon's loops in any interleaving, each step checked by `Sim`."""

    sim: Sim

    @initialize(queue_policy=POLICIES, items=st.integers(0, 6))
    def start(self, queue_policy: QueuePolicy, items: int) -> None:
        self.sim = Sim(queue_policy)
        self.sim.enqueue(items)

    @rule(seconds=SECONDS)
    def advance(self, seconds: float) -> None:
        self.sim.advance(seconds)

    @rule(count=st.integers(1, 3))
    def enqueue(self, count: int) -> None:
        self.sim.enqueue(count)

    @rule()
    def list_items(self) -> None:
        self.sim.list_items()

    @rule()
    def list_executions(self) -> None:
        self.sim.list_executions()

    @rule(answers=ANSWERS)
    def reconcile(self, answers: list[tuple[str, tuple[int, str]]]) -> None:
        self.sim.reconcile(answers)

    @rule(index=WHICH, count=STEPS)
    def steps(self, index: int, count: int) -> None:
        self.sim.steps(index, count)

    @rule(index=st.integers(0, 9), again=st.booleans())
    def deliver(self, index: int, again: bool) -> None:
        self.sim.deliver(index, again)

    @rule(index=st.integers(0, 9), end=END_STATES)
    def end_job(self, index: int, end: JobState) -> None:
        self.sim.end_job(index, end)

    @rule(fail_ok=st.booleans())
    def vertex(self, fail_ok: bool) -> None:
        self.sim.vertex(fail_ok)

    @rule()
    def resume(self) -> None:
        self.sim.resume()

    @rule(answers=ANSWERS)
    def tick(self, answers: list[tuple[str, tuple[int, str]]]) -> None:
        self.sim.tick(answers)

    @rule()
    def everyone(self) -> None:
        self.sim.everyone()

    @rule(moves=MOVES, deliveries=DELIVERIES, items_first=st.booleans(), answers=ANSWERS)
    def round(
        self,
        moves: list[tuple[int, int]],
        deliveries: list[tuple[int, bool]],
        items_first: bool,
        answers: list[tuple[str, tuple[int, str]]],
    ) -> None:
        self.sim.round(moves, deliveries, items_first, answers)

    @invariant()
    def records_move_forward(self) -> None:
        self.sim.check()


run_machine: Callable[..., None] = run_state_machine_as_test
"""hypothesis's runner for a state machine (it has no type annotations)."""


def test_dispatch_stays_within_its_bounds_whatever_the_order() -> None:
    """Never over max_inflight, the budget, the breaker or the work there is, and records move forward."""
    run_machine(
        DispatchMachine, settings=settings(max_examples=800, stateful_step_count=50, deadline=None, database=None)
    )


STATUSES = st.sampled_from(["pending", "running", "succeeded", "failed", "cancelled"])
ITEM_STATES = st.sampled_from(list(ItemState))
EVENT_KINDS = st.sampled_from(["claimed", "submitted", "bailout", "idle_exit", "exited"])
ORDER_OPS = st.one_of(
    st.tuples(
        st.just("executions"),
        st.lists(st.tuples(st.integers(0, 3), STATUSES, st.sampled_from(["", "timeout"]), st.booleans()), max_size=4),
    ),
    st.tuples(
        st.just("event"), EVENT_KINDS, st.integers(0, 3), st.integers(0, 3), st.sampled_from(["quota", "permission"])
    ),
    st.tuples(st.just("items"), st.lists(st.tuples(st.integers(0, 3), ITEM_STATES), max_size=4)),
    st.tuples(
        st.just("job"), st.integers(0, 3), st.sampled_from([JobState.RUNNING, JobState.FAILED, JobState.SUCCEEDED])
    ),
    st.tuples(st.just("advance"), SECONDS),
    st.tuples(st.just("chores"), st.booleans()),
)


@QUICK
@given(ops=st.lists(ORDER_OPS, min_size=5, max_size=40), grace=st.sampled_from([0.0, 20.0]))
def test_records_only_move_forward_whatever_the_order(ops: list[tuple[Any, ...]], grace: float) -> None:
    """Observations in any order: phases move only as TRANSITIONS allows, ends count once, no item fails twice."""
    sim = Sim(policy(name=NAME, event_grace=grace, stranded_after=300.0, stop_after_submit=30.0))
    sim.enqueue(4)
    sim.list_items()
    sim.list_executions()
    sim.reconcile([])
    names = [*sim.runs, f"{JOB}/executions/e99"]
    items = sorted(sim.items)
    jobs: dict[str, VertexSeen] = {}
    for op in ops:
        kind, *args = op
        if kind == "executions":
            seen = [
                ExecutionSeen(names[n], status, 1000.0, 1000.5, sim.now if ended else None, message)
                for n, status, message, ended in args[0]
            ]
            step = sim.state.observe_executions(NAME, seen, sim.now, sim.clock)
            sim.report(step.facts)
        elif kind == "event":
            event, n, i, category = args
            run = sim.runs.get(names[n]) or Run(names[n], 1000.0)
            fields = {"item_id": items[i], "custom_job": f"projects/p/locations/r/customJobs/{i}"}
            fields |= {"rule": f"{category}_rule", "category": category}
            sim.publish(run, f"watchdog.{event}", **fields)
            sim.deliver(-1, again=False)
        elif kind == "items":
            seen_items = [ItemSeen(items[i], state, f"run-{items[i]}") for i, state in args[0]]
            sim.report(sim.queue.observe_items(seen_items, sim.now))
        elif kind == "job":
            i, job_state = args
            job = f"projects/p/locations/r/customJobs/{i}"
            jobs[job] = VertexSeen(job, f"run-{items[i]}", job_state, sim.now - 60, None, "boom", items[i])
            sim.report(sim.state.observe_vertex(jobs.values(), sim.now, 0.0))
        elif kind == "advance":
            sim.now += args[0]
            sim.clock += args[0]
        else:
            sim.vertex(args[0])
        sim.check_records()


# -- 4. Determinism --------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, database=None)
@given(queue_policy=POLICIES, ops=st.lists(OPS, min_size=10, max_size=60))
def test_the_same_inputs_give_the_same_facts_and_decisions(
    queue_policy: QueuePolicy, ops: list[tuple[Any, ...]]
) -> None:
    """Two fresh models fed the same inputs answer the same, step by step, and end in equal states."""
    first, second = Sim(queue_policy), Sim(queue_policy)
    for op in ops:
        first.apply(op)
        second.apply(op)
        assert first.trace == second.trace
    assert first.state.queues == second.state.queues
    assert first.state.vertex_jobs == second.state.vertex_jobs
    assert first.state.inbox.buffered == second.state.inbox.buffered
