"""Facts become metrics and log lines through one table."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from launch_supervisor.model.facts import Fact, FactKind
from launch_supervisor.model.inbox import Outcome
from launch_supervisor.surface.metrics import Metrics
from launch_supervisor.surface.report import REPORTS, report, report_outcome


def metrics() -> tuple[Metrics, CollectorRegistry]:
    m = Metrics("test", CollectorRegistry())
    m.add_queue("q")
    return m, m.registry


def test_every_fact_kind_has_an_entry() -> None:
    """A new kind of fact cannot be forgotten: the table covers the enum."""
    assert set(REPORTS) == set(FactKind)


def test_each_fact_feeds_its_metric() -> None:
    """Latencies, outcomes and categories land in the series docs/http-and-metrics.md names."""
    m, r = metrics()
    report(
        m,
        [
            Fact(FactKind.CLAIMED, "q", "x1", seconds=2.0),
            Fact(FactKind.FINISHED, "q", "x1", outcome="bailout", seconds=30.0),
            Fact(FactKind.BAILOUT, "q", "x1", category="quota"),
            Fact(FactKind.CANCEL_REQUESTED, "q", "x1", seconds=61.0, detail="stop_after_submit"),
            Fact(FactKind.DISPATCH_REFUSED, "q", outcome="new", category="dispatch_refused", seconds=5.0),
        ],
    )
    sample = r.get_sample_value
    assert sample("launch_supervisor_claim_latency_seconds_sum", {"queue": "q"}) == 2.0
    assert sample("launch_supervisor_executions_finished_total", {"queue": "q", "outcome": "bailout"}) == 1
    assert sample("launch_supervisor_execution_duration_seconds_count", {"queue": "q", "outcome": "bailout"}) == 1
    assert sample("launch_supervisor_bailouts_total", {"queue": "q", "category": "quota"}) == 1
    assert sample("launch_supervisor_bailouts_total", {"queue": "q", "category": "dispatch_refused"}) == 1
    labels = {"queue": "q", "reason": "stop_after_submit"}
    assert sample("launch_supervisor_executions_cancelled_total", labels) == 1


def test_log_lines_name_the_event_and_a_repeated_refusal_is_silent() -> None:
    """One line per fact worth a line; a refusal repeating the previous error makes none."""
    m, _ = metrics()
    with capture_logs() as logs:
        report(
            m,
            [
                Fact(FactKind.BREAKER_OPENED, "q", detail="3 bailouts within 600s"),
                Fact(FactKind.QUEUE_WAIT, "q", "x1", seconds=1.0),
                Fact(FactKind.DISPATCH_REFUSED, "q", outcome="new", seconds=5.04, detail="PermissionDenied"),
                Fact(FactKind.DISPATCH_REFUSED, "q", outcome="repeated", seconds=10.0, detail="PermissionDenied"),
            ],
        )
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("breaker.opened", "warning"),
        ("dispatch.refused", "error"),
    ]
    assert (logs[1]["error"], logs[1]["retry_in_s"], logs[1]["queue"]) == ("PermissionDenied", 5.0, "q")


def test_a_buffered_event_is_counted_once_and_an_expired_one_again() -> None:
    """Counted when received; applied later from the buffer, not again; expired, counted as such."""
    m, r = metrics()
    report_outcome(m, Outcome("watchdog.claimed", "buffered"), received=True)
    report_outcome(m, Outcome("watchdog.claimed", "applied"), received=False)
    report_outcome(m, Outcome("watchdog.claimed", "expired"), received=False)
    for result, count in (("buffered", 1), ("applied", None), ("expired", 1)):
        labels = {"type": "watchdog.claimed", "result": result}
        assert r.get_sample_value("launch_supervisor_pubsub_messages_total", labels) == count
