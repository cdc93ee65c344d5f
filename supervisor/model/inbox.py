"""Where a Pub/Sub message changes the state (docs/architecture.md, Events). Pure: the daemon passes
the queue states and the time in, and turns the `Outcome` into metrics, log lines and wake-ups.

Handling is idempotent: an execution's record keeps the types of the watchdog events applied to it,
so what dedupes them is kept as long as retention keeps the record, with no store of keys that grows
with the events (docs/architecture.md, Events). An item-added hint is remembered for the buffer's
time (BUFFER_SECONDS), which bounds that memory by time too. An event about an execution no listing
has shown yet waits in a bounded buffer until one does, or until it expires; a message that does not
parse is reported once per kind, so a flood of garbage does not flood the log.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from launch_supervisor.model.events import Event, EventType, Malformed, parse
from launch_supervisor.model.facts import Fact
from launch_supervisor.model.queue import QueueState

BUFFERED_EVENTS = 1_000
BUFFER_SECONDS = 600.0
"""Events about executions not yet known wait this long for the execution to appear."""
MALFORMED = "malformed"
"""The `type` label of a message that did not parse; its result is the `Malformed` kind."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message, and what the daemon must do about it."""

    type: str
    """The `type` label of `pubsub_messages_total`: the event's type, or `malformed`."""
    result: str
    """applied | duplicate | buffered | unknown_queue | unknown_execution | failed | expired, or for
    a malformed message its kind (not_json | not_object | unknown_type | missing_field)."""
    facts: tuple[Fact, ...] = ()
    poll: tuple[str, ...] = ()
    """Queues to list now, then reconcile: an item was added."""
    reconcile: tuple[str, ...] = ()
    """Queues to reconcile now: an execution's record changed."""
    executions: tuple[str, ...] = ()
    """Queues whose executions loop to wake: an execution changed that only a listing shows."""
    vertex: bool = False
    """Wake the Vertex loop: a CustomJob changed."""
    detection: tuple[str, float] | None = None
    """(queue, seconds) the watchdog took to detect a bailout, for its histogram."""
    reason: str | None = None
    """Why a message did not parse; only the first time of its kind."""
    error: Exception | None = None
    """What applying the event raised (result `failed`): a message never stops the daemon."""


def find_execution(states: Mapping[str, QueueState], short: str, queue: str | None) -> tuple[QueueState, str] | None:
    """The queue state and full name of an execution an event names by short or full name; the
    event's queue is only a hint, since a watchdog may not know the queue's configured name."""
    candidates = [states[queue]] if queue is not None and queue in states else list(states.values())
    suffix = "/executions/" + short.rsplit("/", 1)[-1]
    for state in candidates:
        for name in state.executions:
            if name == short or name.endswith(suffix):
                return state, name
    return None


class Inbox:
    """The memory Pub/Sub handling needs between messages: events waiting for their execution,
    the item-added hints of the last BUFFER_SECONDS, malformed kinds already reported."""

    def __init__(self, buffer_max: int = BUFFERED_EVENTS, buffer_seconds: float = BUFFER_SECONDS) -> None:
        self.buffer_max = buffer_max
        self.buffer_seconds = buffer_seconds
        self._hinted: OrderedDict[tuple[str, str], float] = OrderedDict()
        """(queue, item) of the item-added hints applied → when they are forgotten, soonest first."""
        self._buffered: list[tuple[float, Event]] = []
        self._malformed_kinds: set[str] = set()

    @property
    def buffered(self) -> int:
        """How many events wait for their execution."""
        return len(self._buffered)

    def receive(
        self,
        data: bytes,
        attributes: dict[str, str] | None,
        states: Mapping[str, QueueState],
        now: float,
        clock: float,
    ) -> Outcome:
        """One message body and attributes, applied to `states`. `now` is wall time (for the state),
        `clock` monotonic time (for the buffer's deadlines). Never raises."""
        parsed = parse(data, attributes)
        if isinstance(parsed, Malformed):
            first = parsed.kind not in self._malformed_kinds
            self._malformed_kinds.add(parsed.kind)
            return Outcome(MALFORMED, parsed.kind, reason=parsed.reason if first else None)
        try:
            return self._apply(parsed, states, now, clock)
        except Exception as exc:  # noqa: BLE001 - a message never stops the daemon
            return Outcome(parsed.type, "failed", error=exc)

    def retry(self, states: Mapping[str, QueueState], now: float, clock: float) -> list[Outcome]:
        """Apply buffered events whose execution is now known and drop the expired, after a listing.
        Returns the applied (counted as `buffered` when they came, so not counted again) and the
        expired (result `expired`, to count); a second delivery of one applied is dropped, and the
        others keep waiting."""
        if not self._buffered:
            return []
        waiting, self._buffered = self._buffered, []
        outcomes: list[Outcome] = []
        for expires, event in waiting:
            if expires < clock:
                outcomes.append(Outcome(event.type, "expired"))
                continue
            assert event.execution is not None
            if find_execution(states, event.execution, event.queue) is None:
                self._buffered.append((expires, event))
            elif (outcome := self._apply(event, states, now, clock)).result == "applied":
                outcomes.append(outcome)
        return outcomes

    def _apply(self, event: Event, states: Mapping[str, QueueState], now: float, clock: float) -> Outcome:
        if event.type is EventType.ITEM_ADDED:
            if event.queue is None or event.queue not in states:
                return Outcome(event.type, "unknown_queue")
            if event.item_id:
                hint = (event.queue, event.item_id)
                while self._hinted and next(iter(self._hinted.values())) < clock:
                    self._hinted.popitem(last=False)
                if hint in self._hinted:
                    return Outcome(event.type, "duplicate")
                self._hinted[hint] = clock + self.buffer_seconds
            return Outcome(event.type, "applied", poll=(event.queue,))
        if event.type is EventType.EXECUTION_HINT:
            woken = tuple(
                name
                for name, state in states.items()
                if event.job is None or state.policy.launcher_job.endswith("/jobs/" + event.job)
            )
            return Outcome(event.type, "applied", executions=woken)
        if event.type is EventType.VERTEX_HINT:
            return Outcome(event.type, "applied", vertex=True)
        assert event.execution is not None
        found = find_execution(states, event.execution, event.queue)
        if found is None:
            if len(self._buffered) < self.buffer_max:
                self._buffered.append((clock + self.buffer_seconds, event))
                return Outcome(event.type, "buffered")
            return Outcome(event.type, "unknown_execution")
        state, name = found
        record = state.executions[name]
        if event.type in record.events:
            return Outcome(event.type, "duplicate")
        queue = state.policy.name
        facts: list[Fact] = []
        detection: tuple[str, float] | None = None
        executions: tuple[str, ...] = ()
        if event.type is EventType.CLAIMED and event.item_id:
            facts = state.event_claimed(name, event.item_id, now)
        elif event.type is EventType.SUBMITTED and event.custom_job:
            if event.item_id:  # it names the item too: so the claim is known though `claimed` is late or lost
                facts = state.event_claimed(name, event.item_id, now)
            facts += state.event_submitted(name, event.custom_job, now)
        elif event.type is EventType.BAILOUT and event.rule and event.category:
            facts = state.event_bailout(name, event.rule, event.category, now)
            if event.detection_ms is not None:
                detection = (queue, event.detection_ms / 1000)
        elif event.type is EventType.IDLE_EXIT:
            state.event_idle(name)
        elif event.type is EventType.EXITED:
            executions = (queue,)
        record.events += (event.type,)
        return Outcome(
            event.type, "applied", tuple(facts), reconcile=(queue,), executions=executions, detection=detection
        )
