"""Facts become metrics and log lines here, through one table keyed by `FactKind`.

Each kind names the metric it feeds (if any) and the log line it makes (if any), so what an operator
sees for a change in the model is read in one place. A `dispatch_refused` logs only when its error is
new: a refusal repeats at every retry, and the journal should show a change, not a heartbeat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from launch_supervisor.model.facts import Fact, FactKind
from launch_supervisor.model.inbox import Outcome
from launch_supervisor.surface.metrics import Metrics

log = structlog.get_logger("launch_supervisor")

Field = Callable[[Fact], object]


def tenths(seconds: float | None) -> float | None:
    """A duration for a log line: to a tenth of a second, or None when the fact has none."""
    return None if seconds is None else round(seconds, 1)


@dataclass(frozen=True, slots=True)
class Line:
    """The log line a fact becomes: level, event name, and its fields beyond `queue`."""

    level: str
    event: str
    fields: Mapping[str, Field] = field(default_factory=dict)
    when: Callable[[Fact], bool] = lambda fact: True


@dataclass(frozen=True, slots=True)
class Report:
    record: Callable[[Metrics, Fact], None] | None
    line: Line | None


def _execution(fact: Fact) -> object:
    return fact.execution


def _observe(histogram: str, *labels: Callable[[Fact], str | None]) -> Callable[[Metrics, Fact], None]:
    """Record `fact.seconds` in the metric named `histogram`, labelled by queue and `labels`."""

    def record(metrics: Metrics, fact: Fact) -> None:
        values = [fact.queue, *(label(fact) for label in labels)]
        if fact.seconds is not None and all(values):
            getattr(metrics, histogram).labels(*values).observe(fact.seconds)

    return record


def _count(counter: str, label: Callable[[Fact], str | None]) -> Callable[[Metrics, Fact], None]:
    """Add one to the metric named `counter`, labelled by queue and `label`."""

    def record(metrics: Metrics, fact: Fact) -> None:
        value = label(fact)
        if value:
            getattr(metrics, counter).labels(fact.queue, value).inc()

    return record


def _add(counter: str) -> Callable[[Metrics, Fact], None]:
    """Add `fact.dollars` to the metric named `counter`, labelled by queue."""

    def record(metrics: Metrics, fact: Fact) -> None:
        if fact.dollars is not None and fact.dollars > 0:
            getattr(metrics, counter).labels(fact.queue).inc(fact.dollars)

    return record


_launcher_cost = _add("launcher_cost")
_finished_count = _count("finished", lambda f: f.outcome)
_finished_duration = _observe("execution_duration", lambda f: f.outcome)


def _finished(metrics: Metrics, fact: Fact) -> None:
    _finished_count(metrics, fact)
    _finished_duration(metrics, fact)
    _launcher_cost(metrics, fact)


def _unpriced(metrics: Metrics, fact: Fact) -> None:
    metrics.unpriced.labels(fact.queue).inc()


def _breaker(opened: bool) -> Line:
    return Line("warning", "breaker.opened" if opened else "breaker.closed", {"reason": lambda f: f.detail})


REPORTS: dict[FactKind, Report] = {
    FactKind.CLAIMED: Report(_observe("claim_latency"), Line("info", "execution.claimed", {"execution": _execution})),
    FactKind.QUEUE_WAIT: Report(_observe("queue_wait"), None),
    FactKind.SUBMITTED: Report(
        _observe("submit_latency"), Line("info", "execution.submitted", {"execution": _execution})
    ),
    FactKind.FINISHED: Report(
        _finished, Line("info", "execution.finished", {"execution": _execution, "outcome": lambda f: f.outcome})
    ),
    FactKind.BAILOUT: Report(
        _count("bailouts", lambda f: f.category),
        Line("warning", "execution.bailout", {"execution": _execution, "category": lambda f: f.category}),
    ),
    FactKind.ADOPTED: Report(None, Line("info", "execution.adopted", {"execution": _execution})),
    FactKind.BREAKER_OPENED: Report(None, _breaker(opened=True)),
    FactKind.BREAKER_CLOSED: Report(None, _breaker(opened=False)),
    FactKind.VERTEX_ENDED: Report(_observe("vertex_duration", lambda f: f.outcome), None),
    FactKind.CANCEL_REQUESTED: Report(
        _count("executions_cancelled", lambda f: f.detail),
        Line(
            "warning",
            "execution.cancel_requested",
            {
                "execution": _execution,
                "reason": lambda f: f.detail,
                "custom_job": lambda f: f.custom_job,
                "since_submit_s": lambda f: tenths(f.seconds),
            },
        ),
    ),
    FactKind.VERTEX_CANCEL_REQUESTED: Report(
        _count("vertex_cancels", lambda f: f.detail),
        Line(
            "warning",
            "vertex.cancel_requested",
            {
                "custom_job": lambda f: f.custom_job,
                "reason": lambda f: f.detail,
                "after_s": lambda f: tenths(f.seconds),
            },
        ),
    ),
    FactKind.POST_SUBMIT: Report(_observe("post_submit"), None),
    FactKind.ADMITTED: Report(_observe("admission_wait"), None),
    FactKind.VERTEX_COST: Report(_add("vertex_cost"), None),
    FactKind.UNPRICED: Report(
        _unpriced,
        Line("warning", "vertex.unpriced", {"type": lambda f: f.detail}, when=lambda f: f.outcome == "new"),
    ),
    FactKind.DISPATCH_REFUSED: Report(
        _count("bailouts", lambda f: f.category),
        Line(
            "error",
            "dispatch.refused",
            {"error": lambda f: f.detail, "retry_in_s": lambda f: tenths(f.seconds)},
            when=lambda f: f.outcome == "new",
        ),
    ),
    FactKind.DISPATCH_RECOVERED: Report(
        None,
        Line("info", "dispatch.recovered", {"execution": _execution, "refused_for_s": lambda f: tenths(f.seconds)}),
    ),
}


def report(metrics: Metrics, facts: Iterable[Fact]) -> None:
    """Each fact's metric, then its log line."""
    for fact in facts:
        entry = REPORTS[fact.kind]
        if entry.record is not None:
            entry.record(metrics, fact)
        line = entry.line
        if line is not None and line.when(fact):
            fields = {name: get(fact) for name, get in line.fields.items()}
            getattr(log, line.level)(line.event, queue=fact.queue, **fields)


def report_outcome(metrics: Metrics, outcome: Outcome, *, received: bool) -> None:
    """What became of one Pub/Sub message: counted by type and result, its bailout detection time,
    its facts. An event applied later from the buffer (not `received` now) was counted when it came;
    one that expired there is counted again, as expired. A malformed kind is logged the first time
    only (the model says when), so a flood of garbage does not flood the log."""
    if received or outcome.result == "expired":
        metrics.pubsub_messages.labels(outcome.type, outcome.result).inc()
    if outcome.reason is not None:
        log.warning("pubsub.malformed", kind=outcome.result, reason=outcome.reason)
    if outcome.error is not None:  # a message never stops the daemon
        log.error("pubsub.apply_failed", type=outcome.type, exc_info=outcome.error)
    if outcome.detection is not None:
        queue, seconds = outcome.detection
        metrics.bailout_detection.labels(queue).observe(seconds)
    report(metrics, outcome.facts)
