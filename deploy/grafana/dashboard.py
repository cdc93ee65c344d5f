"""The launch-supervisor Grafana dashboard, as code, with Grafana's own SDK (grafana-foundation-sdk).

    python3 deploy/grafana/dashboard.py > deploy/grafana/launch-supervisor.json

The JSON is committed beside this file and imported as it is (docs/operating.md, The dashboard); a test
checks that it is what this file prints, and the end-to-end test runs every query below against a
real Prometheus scraping the sandbox. Variables: `datasource` (any Prometheus) and `queue`.
Every panel's description says what a healthy value looks like.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, stat, statetimeline, timeseries
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

UID = "launch-supervisor"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
Q = 'queue=~"$queue"'
"""The queue filter every per-queue query carries."""
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    heatmap: bool = False


Panel = timeseries.Panel | stat.Panel | statetimeline.Panel | heatmap.Panel


@dataclass(frozen=True)
class Section:
    """A row of the dashboard and its panels."""

    title: str
    panels: list[Panel]


def _target(query: Query, ref: str) -> Dataquery:
    target = Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref).datasource(DATASOURCE).range()
    if query.heatmap:
        target = target.format(PromQueryFormat.HEATMAP)
    return target


def _thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def _size(panel: Panel, w: int, h: int) -> None:
    panel.span(w).height(h)


def series(
    title: str,
    description: str,
    *queries: Query,
    unit: str = "short",
    stacked: bool = False,
    bars: bool = False,
    w: int = 8,
    threshold: float | None = None,
) -> timeseries.Panel:
    """A time series panel; `threshold` draws a red line where an alert fires."""
    panel = timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit).min(0)
    for index, query in enumerate(queries):
        panel = panel.with_target(_target(query, chr(ord("A") + index)))
    legend = (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
    )
    panel = panel.legend(legend.show_legend(True)).fill_opacity(20 if stacked else 10)
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
    if threshold is not None:
        panel = panel.thresholds(_thresholds((None, "green"), (threshold, "red"))).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
        )
    _size(panel, w, 8)
    return panel


def states(
    title: str, description: str, query: Query, mapping: dict[str, tuple[str, str]], w: int = 8
) -> statetimeline.Panel:
    """A state timeline: each value shown as the text and colour `mapping` gives it."""
    options = {value: model.ValueMappingResult(text=text, color=color) for value, (text, color) in mapping.items()}
    panel = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(_target(query, "A"))
        .mappings([model.ValueMap(options=options)])
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .line_width(0)
        .fill_opacity(70)
    )
    _size(panel, w, 8)
    return panel


def single(
    title: str, description: str, query: Query, *, unit: str = "short", red_at: float | None = None
) -> stat.Panel:
    """A stat panel of the latest value; red from `red_at` on."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(_target(query, "A"))
        .unit(unit)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if red_at is not None:
        panel = panel.thresholds(_thresholds((None, "green"), (red_at, "red")))
    else:
        panel = panel.thresholds(_thresholds((None, "blue")))
    _size(panel, 8, 8)
    return panel


def quantiles(
    metric: str,
    title: str,
    description: str,
    *,
    by: str = "",
    per_queue: bool = True,
    levels: tuple[float, ...] = (0.5, 0.95),
) -> timeseries.Panel:
    """Quantiles (p50 and p95 unless told) of a histogram over the rate interval, per `by` label when given."""
    selector = f"{{{Q}}}" if per_queue else ""
    group = f"{by}, le" if by else "le"
    queries = [
        Query(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{selector}[{RATE}])))",
            f"p{int(q * 100)}" + (f" {{{{{by}}}}}" if by else ""),
        )
        for q in levels
    ]
    return series(title, description, *queries, unit="s")


def rate_per_minute(metric: str, by: str, *, per_queue: bool = True) -> Query:
    selector = f"{{{Q}}}" if per_queue else ""
    return Query(f"sum by ({by}) (rate({metric}{selector}[{RATE}])) * 60", f"{{{{{by}}}}}")


def increase(metric: str, by: str, *, nonzero: bool = False) -> Query:
    expr = f"sum by ({by}) (increase({metric}{{{Q}}}[{RATE}]))"
    return Query(expr + (" > 0" if nonzero else ""), f"{{{{{by}}}}}")


def queues_row() -> Section:
    return Section(
        "Queues",
        [
            series(
                "Queue depth",
                "Items PENDING in the queue at the daemon's last poll. Healthy: back to 0 within a few "
                "seconds of items arriving (the daemon starts one execution per item); a level that stays "
                "above 0 while the breaker is closed and nothing is dispatched is a stuck queue "
                "(LaunchSupervisorQueueStuck).",
                Query(f"sum by (queue) (launch_supervisor_queue_pending_items{{{Q}}})", "{{queue}}"),
            ),
            series(
                "In flight by phase",
                "Executions not finished, by phase: dispatched, running, claimed (took an item), submitted "
                "(its CustomJob exists). Healthy: at most max_inflight per queue, each execution reaching "
                "claimed and submitted within a minute or two; executions that stay dispatched or running "
                "start but find no item or cannot reach W&B.",
                Query(f"sum by (phase) (launch_supervisor_executions_in_flight{{{Q}}})", "{{phase}}"),
                stacked=True,
            ),
            states(
                "Breaker",
                "Each queue's breaker: closed (dispatching) or open (open or half-open: nothing, or one "
                "probe, is started). Healthy: closed. It opens at once on a permission, invalid_spec, "
                "not_found or image_pull bailout and after 3 other bailouts within its window; open for 5 "
                "minutes pages (LaunchSupervisorBreakerOpen). `launch-supervisor resume QUEUE` closes it.",
                Query(f"max by (queue) (launch_supervisor_breaker_open{{{Q}}})", "{{queue}}"),
                {"0": ("closed", "green"), "1": ("open", "red")},
            ),
            series(
                "Dispatches by result",
                "RunJob calls per minute: started (an execution was created), refused (Cloud Run said no: "
                "no execution), unknown (deadline or unavailable: the next listing tells). Healthy: started "
                "follows the items arriving; refused and unknown at 0 (3 within 15 minutes opens a ticket, "
                "LaunchSupervisorDispatchErrors).",
                rate_per_minute("launch_supervisor_dispatches_total", "result"),
                unit="opm",
            ),
            series(
                "Bailouts by category",
                "Executions that bailed out (the watchdog stopped a fatally stuck agent), by the category "
                "it reported, and RunJob refusals (dispatch_refused); crash when no event came. Healthy: "
                "none. Bars are per rate interval; no data means no bailout.",
                increase("launch_supervisor_bailouts_total", "category", nonzero=True),
                bars=True,
                stacked=True,
            ),
            single(
                "Bailouts within 30 minutes",
                "Bailouts of each queue within the last 30 minutes, all categories. Healthy: 0; red at 3, "
                "where LaunchSupervisorRepeatedBailouts pages.",
                Query(f"sum by (queue) (increase(launch_supervisor_bailouts_total{{{Q}}}[30m]))", "{{queue}}"),
                red_at=3,
            ),
        ],
    )


def latency_row() -> Section:
    return Section(
        "Latencies",
        [
            quantiles(
                "launch_supervisor_queue_wait_seconds",
                "Queue wait",
                "From an item first seen PENDING to the dispatch of the execution that took it, p50 and "
                "p95. Healthy: under a second with Pub/Sub events, under a queue poll interval (5 s) "
                "without; rising while executions are at max_inflight means max_inflight is too low for "
                "the arrivals.",
            ),
            quantiles(
                "launch_supervisor_claim_latency_seconds",
                "Claim latency",
                "From dispatch to the execution claiming its item, p50 and p95: Cloud Run's start plus the "
                "agent's. Healthy: tens of seconds; near claim_timeout (180 s) executions stop counting as "
                "covering an item and more are started.",
            ),
            quantiles(
                "launch_supervisor_submit_latency_seconds",
                "Submit latency",
                "From an item first seen to its CustomJob existing, p50 and p95: what a user waits for. "
                "Healthy: about a minute (queue wait + claim + the agent building the job); minutes mean "
                "slow executions or a breaker that held the queue.",
            ),
            heatmap.Panel()
            .title("Submit latency distribution")
            .description(
                "Items by submit latency bucket over time. Healthy: one band, under about a minute; a "
                "second band further up is items that waited for a breaker or a retry."
            )
            .datasource(DATASOURCE)
            .with_target(
                _target(
                    Query(
                        f"sum by (le) (increase(launch_supervisor_submit_latency_seconds_bucket{{{Q}}}[{RATE}]))",
                        "{{le}}",
                        heatmap=True,
                    ),
                    "A",
                )
            )
            .calculate(False)
            .y_axis(heatmap.YAxisConfig().unit("s"))
            .show_y_histogram()
            .span(8)
            .height(8),
            quantiles(
                "launch_supervisor_bailout_detection_seconds",
                "Bailout detection",
                "From the agent's fatal line to the watchdog signalling it, p50 and p95, as the watchdog "
                "measured it (needs Pub/Sub events). Healthy: milliseconds; no data without events or "
                "without bailouts.",
            ),
            quantiles(
                "launch_supervisor_post_submit_seconds",
                "Run time after submission",
                "From a CustomJob's creation to the end of the execution that submitted it, p50, p95 and "
                "p99 (Google's timestamps): what a launch costs after its job exists. Healthy: about a "
                "second, p99 under 2 s (the watchdog stops the agent); near stop_after_submit (60 s) means "
                "the daemon's backstop cancelled it.",
                levels=(0.5, 0.95, 0.99),
            ),
        ],
    )


def executions_row() -> Section:
    return Section(
        "Executions",
        [
            series(
                "Execution outcomes",
                "Executions that finished, by outcome, per rate interval. Healthy: mostly succeeded (the "
                "execution submitted its CustomJob and exited), some idle (a surplus execution found no "
                "item); bailout, failed, timeout and cancelled each need a look.",
                increase("launch_supervisor_executions_finished_total", "outcome"),
                bars=True,
                stacked=True,
            ),
            quantiles(
                "launch_supervisor_execution_duration_seconds",
                "Execution duration by outcome",
                "From dispatch to the end, p50 and p95 by outcome. Healthy: succeeded about a minute or two; "
                "idle about the watchdog's idle timeout (300 s by default); timeout is the task timeout.",
                by="outcome",
            ),
            series(
                "Executions cancelled by the supervisor",
                "Executions the daemon cancelled, by reason (stop_after_submit: still running a minute "
                "after its CustomJob was created). Healthy: 0, the watchdog stops the agent itself; a "
                "steady rate means watchdogs miss submissions.",
                increase("launch_supervisor_executions_cancelled_total", "reason"),
                bars=True,
            ),
        ],
    )


def vertex_row() -> Section:
    return Section(
        "Vertex AI",
        [
            series(
                "Vertex AI jobs by state",
                "CustomJobs the daemon knows (created within gcp.vertex_lookback, 24 h by default), by "
                "state. Healthy: QUEUED and PENDING short-lived, RUNNING as many as your workload; FAILED "
                "growing faster than SUCCEEDED needs a look (LaunchSupervisorVertexJobsFailing).",
                Query(f"sum by (state) (launch_supervisor_vertex_jobs{{{Q}}})", "{{state}}"),
            ),
            quantiles(
                "launch_supervisor_vertex_job_duration_seconds",
                "Vertex AI job duration by end state",
                "From a CustomJob's creation to its end, p50 and p95 by end state. Healthy: SUCCEEDED as "
                "long as your training runs; FAILED within minutes means jobs that cannot start (image, "
                "quota, code that exits at once).",
                by="state",
            ),
            series(
                "Items failed by the supervisor",
                "Items the daemon failed with failRunQueueItem so they do not hang, by reason: "
                "vertex_job_ended (the CustomJob ended FAILED, CANCELLED or EXPIRED), run_stopped (the daemon "
                "cancelled its CustomJob after its run was stopped in W&B), execution_ended (the "
                "watchdog stopped the agent before it could fail the item), stranded (claimed, no job, no "
                "execution). Healthy: vertex_job_ended only as often as jobs fail; stranded 0.",
                increase("launch_supervisor_items_failed_by_supervisor_total", "reason"),
                bars=True,
                stacked=True,
            ),
            series(
                "Vertex AI jobs cancelled by the supervisor",
                "CustomJobs the daemon cancelled, by reason (run_stopped: the run was stopped in W&B and "
                "its job still ran stop_grace seconds later, 60 by default). Healthy: as often as users "
                "stop runs whose training code ignores the stop; API errors on CancelCustomJob mean the "
                "supervisor's account lacks aiplatform.customJobs.cancel.",
                increase("launch_supervisor_vertex_cancels_total", "reason"),
                bars=True,
            ),
            series(
                "Stopped runs still running",
                "CustomJobs still QUEUED, PENDING or RUNNING although their W&B run was stopped more than "
                "stop_grace + 2 min ago: the daemon's cancel did not end them. Healthy: 0; lasting 10 min it "
                "opens a ticket (LaunchSupervisorStoppedRunsStillRunning).",
                Query(f"sum (launch_supervisor_stopped_runs_still_running{{{Q}}})", "jobs"),
            ),
        ],
    )


def cost_row() -> Section:
    vertex, launcher = "launch_supervisor_vertex_cost_dollars_total", "launch_supervisor_launcher_cost_dollars_total"
    return Section(
        "Cost and capacity",
        [
            series(
                "Cost per queue per day",
                "What each queue cost over the 24 hours before each point: its CustomJobs while they ran "
                "plus its launcher executions, priced with [prices] (list prices; the billing export stays "
                "the record). The spend the budget gate counts is beside it, rebuilt from the jobs' own "
                "times (FAILED jobs left out, as Google bills them nothing). Healthy: below each queue's "
                "daily_budget; at it, the queue dispatches nothing (LaunchSupervisorQueueOverBudget).",
                Query(
                    f"sum by (queue) (increase({vertex}{{{Q}}}[1d]))"
                    f" + sum by (queue) (increase({launcher}{{{Q}}}[1d]))",
                    "{{queue}} counted",
                ),
                Query(
                    f"sum by (queue) (launch_supervisor_queue_spend_last_day_dollars{{{Q}}})", "{{queue}} budget spend"
                ),
                Query(
                    f"max by (queue) (launch_supervisor_queue_daily_budget_dollars{{{Q}}})", "{{queue}} daily_budget"
                ),
                unit="currencyUSD",
            ),
            series(
                "Vertex AI against launcher cost",
                "Dollars per hour going to CustomJobs and to the launcher's Cloud Run executions. Healthy: "
                "the launcher a sliver of the total (an execution lives seconds, a job hours).",
                Query(f"sum (rate({vertex}{{{Q}}}[{RATE}])) * 3600", "Vertex AI"),
                Query(f"sum (rate({launcher}{{{Q}}}[{RATE}])) * 3600", "launcher"),
                unit="currencyUSD",
            ),
            quantiles(
                "launch_supervisor_vertex_admission_wait_seconds",
                "Admission wait p50 and p90",
                "From a CustomJob's creation to its start: the wait for machines. Healthy: minutes "
                "(provisioning and the image pull); p90 past 30 min for an hour opens a ticket "
                "(LaunchSupervisorAdmissionWaitLong): the region lacks capacity for the jobs' accelerators.",
                levels=(0.5, 0.9),
            ),
            series(
                "Capacity and runtime cancels",
                "CustomJobs the daemon cancelled for waiting longer than max_queued for capacity, or running "
                "longer than max_runtime. Healthy: 0 most of the time; a steady stream of max_queued "
                "means the queue asks for accelerators the region cannot give.",
                Query(
                    "sum by (reason) (increase(launch_supervisor_vertex_cancels_total"
                    f'{{{Q}, reason=~"max_queued|max_runtime"}}[{RATE}]))',
                    "{{reason}}",
                ),
                bars=True,
            ),
            series(
                "Unpriced jobs and over budget",
                "CustomJobs whose machine or accelerator type [prices] lacks (their cost is not counted: add "
                "the type), and queues over their daily budget (1: dispatch held). Healthy: both 0.",
                Query(
                    f"sum by (queue) (increase(launch_supervisor_vertex_unpriced_jobs_total{{{Q}}}[{RATE}]))",
                    "{{queue}} unpriced",
                ),
                Query(f"max by (queue) (launch_supervisor_queue_over_budget{{{Q}}})", "{{queue}} over budget"),
            ),
        ],
    )


def dependencies_row() -> Section:
    api_errors = 'launch_supervisor_api_requests_total{code!~"OK|2.."}'
    api_all = "launch_supervisor_api_requests_total"
    return Section(
        "Daemon and dependencies",
        [
            series(
                "API errors by API",
                "Share of calls to W&B, Cloud Run and Vertex AI that failed (any code but OK or 2xx). "
                "Healthy: 0, with short spikes that retries absorb; a lasting share shows as loop failures "
                "and stale polls.",
                Query(
                    f"(sum by (api) (rate({api_errors}[{RATE}])) or 0 * sum by (api) (rate({api_all}[{RATE}])))"
                    f" / sum by (api) (rate({api_all}[{RATE}]))",
                    "{{api}}",
                ),
                unit="percentunit",
            ),
            series(
                "API calls by API and code",
                "Calls per minute by API and result code (OK or an HTTP status on success, the exception "
                "otherwise). Healthy: a steady rate set by the poll intervals, all OK or 200.",
                Query(f"sum by (api, code) (rate({api_all}[{RATE}])) * 60", "{{api}} {{code}}"),
                unit="opm",
            ),
            quantiles(
                "launch_supervisor_api_request_duration_seconds",
                "API latency by API",
                "Call durations, p50 and p95 by API. Healthy: well under a second; near the request "
                "timeout (10 s) calls time out and are retried at the next tick.",
                by="api",
                per_queue=False,
            ),
            series(
                "Pub/Sub messages",
                "Event messages per minute by type and result. Healthy: applied for queue.item_added and "
                "the watchdog events; malformed and expired about 0. No data when [pubsub] is not "
                "configured (polling only).",
                rate_per_minute("launch_supervisor_pubsub_messages_total", "type, result", per_queue=False),
                unit="opm",
            ),
            series(
                "Poll freshness",
                "Seconds since the last successful poll of each source (wandb, cloudrun, vertex). Healthy: "
                "below the source's poll interval plus a call (5, 10 and 15 s by default); the red line at "
                "5 minutes is LaunchSupervisorPollStale.",
                Query(
                    "time() - max by (source) (launch_supervisor_last_successful_poll_timestamp_seconds)", "{{source}}"
                ),
                unit="s",
                threshold=300,
            ),
            series(
                "Loop failures",
                "Loop iterations that failed and were retried at the next tick, by loop. Healthy: 0; each "
                "failure is logged as loop.failed with the error.",
                Query(f"sum by (loop) (increase(launch_supervisor_loop_failures_total[{RATE}]))", "{{loop}}"),
                bars=True,
            ),
            series(
                "Hints coalesced",
                "Hints (events) per minute that found a listing already due, by loop: they shared it, as "
                "poll.*_min_gap (1 s by default) allows one hinted listing per gap. Healthy: anything; a "
                "steady high rate means a chatty event source, costing one listing a gap per loop, no more.",
                rate_per_minute("launch_supervisor_hints_coalesced_total", "loop", per_queue=False),
                unit="opm",
            ),
            states(
                "Queue polling",
                "Whether the daemon still polls each queue. Healthy: polling. stopped (auth) means W&B "
                "rejected the key: fix it and restart the daemon.",
                Query(f"max by (queue) (launch_supervisor_queue_polling_stopped{{{Q}}})", "{{queue}}"),
                {"0": ("polling", "green"), "1": ("stopped (auth)", "red")},
            ),
            series(
                "Incomplete queue listings",
                "Listings of a queue that could not show every item, by queue and reason. Healthy: 0. "
                "truncated: the listing stopped at wandb.max_item_pages pages and the newest items, "
                "pending ones among them, are not seen (log queue.listing_truncated; raise the bound); "
                "queue_missing or project_missing: W&B knows no such queue or project (log "
                "queue.missing_in_wandb names entity, project and queue). Lasting 15 min it opens a ticket "
                "(LaunchSupervisorQueueListingIncomplete).",
                Query(
                    "sum by (queue, reason) "
                    f"(increase(launch_supervisor_queue_listings_incomplete_total{{{Q}}}[{RATE}]))",
                    "{{queue}} {{reason}}",
                ),
                bars=True,
            ),
            quantiles(
                "launch_supervisor_reconcile_duration_seconds",
                "Reconcile duration",
                "One reconcile of one queue (the dispatch decision and its RunJob calls), p50 and p95. "
                "Healthy: milliseconds without dispatches, a RunJob call's time with them.",
                per_queue=False,
            ),
            single(
                "Daemons by version",
                "Running daemons by version (build_info). Healthy: 1, the version you deployed; 0 or no "
                "data means the daemon is not scraped (LaunchSupervisorDown).",
                Query("count by (version) (launch_supervisor_build_info)", "{{version}}"),
            ),
        ],
    )


def build() -> db.Dashboard:
    queue = (
        db.QueryVariable("queue")
        .label("Queue")
        .datasource(DATASOURCE)
        .query("label_values(launch_supervisor_queue_pending_items, queue)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )
    alerts = (
        db.AnnotationQuery()
        .name("launch-supervisor alerts")
        .datasource(DATASOURCE)
        .expr('ALERTS{alertname=~"LaunchSupervisor.+", alertstate="firing"}')
        .icon_color("red")
        .enable(True)
    )
    dashboard = (
        db.Dashboard("launch-supervisor")
        .uid(UID)
        .description("W&B Launch queues run on Google Cloud by launch-supervisor: queues, executions, Vertex AI jobs.")
        .tags(["launch-supervisor"])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(queue)
        .annotation(alerts)
        .link(
            db.DashboardLink("Runbook")
            .type(model.DashboardLinkType.LINK)
            .url("https://github.com/OWNER/launch-supervisor/blob/main/docs/runbook.md")
            .target_blank(True)
        )
    )
    for section in (queues_row(), latency_row(), executions_row(), vertex_row(), cost_row(), dependencies_row()):
        dashboard = dashboard.with_row(db.Row(section.title))
        for panel in section.panels:
            dashboard = dashboard.with_panel(panel)
    return dashboard


def render() -> str:
    """The dashboard's JSON, as committed in launch-supervisor.json."""
    model_ = build().build()
    for number, panel in enumerate(model_.panels or [], start=1):
        panel.id_val = number  # stable ids, in layout order
    data = json.loads(JSONEncoder().encode(model_))
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
