"""Every Prometheus metric of the daemon, in one place (docs/architecture.md, Metrics).

Counters and histograms are updated as facts happen. Gauges that mirror state (pending items,
executions in flight by phase, Vertex jobs by state, breaker state) are produced at scrape time by a
collector that reads the live state, so they cannot drift from it. Every (queue, category) and
(queue, outcome) series exists from the start, so the first bailout shows up in `increase()`.
No item ids, run ids or execution names are ever label values.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from launch_supervisor.model.breaker import CATEGORIES, BreakerState
from launch_supervisor.model.executions import Phase
from launch_supervisor.model.limits import MAX_QUEUED, MAX_RUNTIME
from launch_supervisor.model.queue import in_flight_by_phase
from launch_supervisor.model.remedies import CANCEL_REASONS, FAIL_STAGES
from launch_supervisor.model.state import State
from launch_supervisor.model.stops import RUN_STOPPED
from launch_supervisor.model.vertex import JobState

PREFIX = "launch_supervisor_"
INCOMPLETE_LISTINGS = ("truncated", "project_missing", "queue_missing")
"""Why a listing of a queue's items was not whole (`queue_listings_incomplete_total{reason}`)."""
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400, 172800)
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
DETECTION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 10)
POST_SUBMIT_BUCKETS = (0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
"""From a watchdog stopping the agent within a second of submission to an execution left to its timeout;
fine around 2 s, the goal for one-shot's p99, so that a miss shows."""
OUTCOMES = tuple(p.value for p in Phase if p.finished)
ENDED_STATES = tuple(s.value for s in JobState if s.terminal)
OVERDUE_MARGIN = 120.0
"""Past a stopped run's grace, time for the cancel to be made and take effect (a few Vertex ticks)."""
ADMISSION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200, 14400, 43200, 86400)
"""From a job whose machines were free (seconds) to one that waited hours or a day for GPUs; fine
around 15 to 30 minutes, where the admission alert's threshold lies."""
VERTEX_CANCEL_REASONS = (RUN_STOPPED, MAX_QUEUED, MAX_RUNTIME)
HINTED_LOOPS = ("queue", "executions", "vertex")
"""Loops that a hint makes list early, each at most once per its `poll.*_min_gap`."""
SOURCES = ("wandb", "cloudrun", "vertex")
"""The `source` label of last_successful_poll_timestamp_seconds."""


class _StateCollector(Collector):
    def __init__(self, state: State, now: Callable[[], float]) -> None:
        self._state = state
        self._now = now

    def collect(self) -> Iterator[Metric]:
        snap = self._state
        pending = GaugeMetricFamily(f"{PREFIX}queue_pending_items", "Items PENDING at the last poll.", labels=["queue"])
        in_flight = GaugeMetricFamily(
            f"{PREFIX}executions_in_flight", "Executions not finished, by phase.", labels=["queue", "phase"]
        )
        breaker = GaugeMetricFamily(
            f"{PREFIX}breaker_open", "1 while the queue's breaker is open or half-open.", labels=["queue"]
        )
        stopped = GaugeMetricFamily(
            f"{PREFIX}queue_polling_stopped",
            "1 when polling a queue stopped (reason: auth).",
            labels=["queue", "reason"],
        )
        vertex = GaugeMetricFamily(f"{PREFIX}vertex_jobs", "Known Vertex AI jobs by state.", labels=["queue", "state"])
        spend = GaugeMetricFamily(
            f"{PREFIX}queue_spend_last_day_dollars",
            "What the queue's CustomJobs cost over the last 24 hours, as the budget gate counts it.",
            labels=["queue"],
        )
        budget = GaugeMetricFamily(
            f"{PREFIX}queue_daily_budget_dollars", "The queue's daily_budget (queues that set one).", labels=["queue"]
        )
        over = GaugeMetricFamily(
            f"{PREFIX}queue_over_budget",
            "1 while the queue's 24 h spend is at or above its daily_budget: nothing new is dispatched.",
            labels=["queue"],
        )
        late = GaugeMetricFamily(
            f"{PREFIX}stopped_runs_still_running",
            f"Live CustomJobs whose run was stopped in W&B more than stop_grace + {OVERDUE_MARGIN:g} s ago.",
            labels=["queue"],
        )
        overdue = snap.stopped_still_running(self._now(), OVERDUE_MARGIN)
        jobs = Tally((j.queue, j.state) for j in snap.vertex_jobs.values())  # one pass, however many queues
        for name, state in snap.queues.items():
            pending.add_metric([name], state.pending_count())
            for phase, count in in_flight_by_phase(state).items():
                in_flight.add_metric([name, phase.value], count)
            breaker.add_metric([name], 0 if state.breaker.state is BreakerState.CLOSED else 1)
            stopped.add_metric([name, "auth"], 1 if snap.stopped.get(name) == "auth" else 0)
            late.add_metric([name], overdue.get(name, 0))
            spend.add_metric([name], state.spending.spend or 0.0)
            over.add_metric([name], 1 if state.spending.over(state.policy.daily_budget) else 0)
            if state.policy.daily_budget is not None:
                budget.add_metric([name], state.policy.daily_budget)
            for job_state in JobState:
                count = jobs[(name, job_state)]
                if count or job_state in (JobState.RUNNING, JobState.PENDING, JobState.QUEUED):
                    vertex.add_metric([name, job_state.value], count)
        yield from (pending, in_flight, breaker, stopped, vertex, late, spend, budget, over)


class Metrics:
    """The daemon's metrics on their own registry (tests read a fresh one per daemon)."""

    def __init__(self, version: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.dispatches = Counter(
            f"{PREFIX}dispatches", "Executions started, by result.", ["queue", "result"], registry=r
        )
        self.bailouts = Counter(
            f"{PREFIX}bailouts",
            "Executions that bailed out, and RunJob refusals (category dispatch_refused).",
            ["queue", "category"],
            registry=r,
        )
        self.finished = Counter(
            f"{PREFIX}executions_finished", "Executions finished, by outcome.", ["queue", "outcome"], registry=r
        )
        self.queue_wait = Histogram(
            f"{PREFIX}queue_wait_seconds",
            "Item first seen pending until the execution that took it was dispatched.",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.claim_latency = Histogram(
            f"{PREFIX}claim_latency_seconds",
            "Execution dispatched until it claimed an item.",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.submit_latency = Histogram(
            f"{PREFIX}submit_latency_seconds",
            "Item first seen until its CustomJob existed.",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.execution_duration = Histogram(
            f"{PREFIX}execution_duration_seconds",
            "Execution dispatched until finished.",
            ["queue", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.bailout_detection = Histogram(
            f"{PREFIX}bailout_detection_seconds",
            "Fatal line read until the agent was signalled, as the watchdog measured it.",
            ["queue"],
            buckets=DETECTION_BUCKETS,
            registry=r,
        )
        self.vertex_duration = Histogram(
            f"{PREFIX}vertex_job_duration_seconds",
            "CustomJob created until it ended, by end state.",
            ["queue", "state"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.post_submit = Histogram(
            f"{PREFIX}post_submit_seconds",
            "CustomJob created until the execution that submitted it ended (Google's timestamps).",
            ["queue"],
            buckets=POST_SUBMIT_BUCKETS,
            registry=r,
        )
        self.executions_cancelled = Counter(
            f"{PREFIX}executions_cancelled",
            "Executions the supervisor cancelled, by reason.",
            ["queue", "reason"],
            registry=r,
        )
        self.vertex_cancels = Counter(
            f"{PREFIX}vertex_cancels",
            "Vertex AI CustomJobs the supervisor cancelled, by reason (run_stopped: stopped in W&B; max_queued:"
            " waited too long for capacity; max_runtime: ran too long).",
            ["queue", "reason"],
            registry=r,
        )
        self.admission_wait = Histogram(
            f"{PREFIX}vertex_admission_wait_seconds",
            "CustomJob created until it started running (create_time to start_time): the wait for capacity.",
            ["queue"],
            buckets=ADMISSION_BUCKETS,
            registry=r,
        )
        self.vertex_cost = Counter(
            f"{PREFIX}vertex_cost_dollars",
            "What the queue's CustomJobs cost while running, by [prices] (counted from this process's start).",
            ["queue"],
            registry=r,
        )
        self.launcher_cost = Counter(
            f"{PREFIX}launcher_cost_dollars",
            "What the queue's launcher executions cost: their task's seconds by the launcher job's CPU and memory.",
            ["queue"],
            registry=r,
        )
        self.unpriced = Counter(
            f"{PREFIX}vertex_unpriced_jobs",
            "CustomJobs whose machine or accelerator type [prices] lacks: their cost is not counted.",
            ["queue"],
            registry=r,
        )
        self.items_failed = Counter(
            f"{PREFIX}items_failed_by_supervisor",
            "Items failed with failRunQueueItem so they do not hang.",
            ["queue", "reason"],
            registry=r,
        )
        self.listings_incomplete = Counter(
            f"{PREFIX}queue_listings_incomplete",
            "Queue listings that could not show every item: truncated at wandb.max_item_pages, or the "
            "queue's project or the queue itself missing in W&B.",
            ["queue", "reason"],
            registry=r,
        )
        self.api_requests = Counter(
            f"{PREFIX}api_requests", "API calls by result code.", ["api", "method", "code"], registry=r
        )
        self.api_duration = Histogram(
            f"{PREFIX}api_request_duration_seconds",
            "API call durations.",
            ["api", "method"],
            buckets=API_BUCKETS,
            registry=r,
        )
        self.pubsub_messages = Counter(
            f"{PREFIX}pubsub_messages", "Pub/Sub messages by type and result.", ["type", "result"], registry=r
        )
        self.last_poll = Gauge(
            f"{PREFIX}last_successful_poll_timestamp_seconds",
            "When each source last answered a poll (the daemon's start until the first answer).",
            ["source"],
            registry=r,
        )
        started = time.time()
        for source in SOURCES:  # a source that never answers is stale from the start, not invisible
            self.last_poll.labels(source).set(started)
        self.loop_failures = Counter(
            f"{PREFIX}loop_failures", "Loop iterations that failed and were retried later.", ["loop"], registry=r
        )
        for loop in ("queue", "reconcile", "executions", "vertex"):
            self.loop_failures.labels(loop)
        self.hints_coalesced = Counter(
            f"{PREFIX}hints_coalesced",
            "Hints to list again that arrived while a listing was already due: they shared it (poll.*_min_gap).",
            ["loop"],
            registry=r,
        )
        for loop in HINTED_LOOPS:
            self.hints_coalesced.labels(loop)
        self.reconcile_duration = Histogram(
            f"{PREFIX}reconcile_duration_seconds", "One reconcile of one queue.", buckets=API_BUCKETS, registry=r
        )
        self.build_info = Gauge(f"{PREFIX}build_info", "The running version.", ["version"], registry=r)
        self.build_info.labels(version).set(1)

    def watch(self, state: State, now: Callable[[], float] = time.time) -> None:
        """Mirror the state in gauges, read at scrape time; `now`: the daemon's clock."""
        self.registry.register(_StateCollector(state, now))

    def add_queue(self, queue: str) -> None:
        """Create every series of a queue at zero."""
        for category in CATEGORIES:
            self.bailouts.labels(queue, category)
        for outcome in OUTCOMES:
            self.finished.labels(queue, outcome)
        for result in ("started", "refused", "unknown"):
            self.dispatches.labels(queue, result)
        for reason in FAIL_STAGES:
            self.items_failed.labels(queue, reason)
        for reason in CANCEL_REASONS:
            self.executions_cancelled.labels(queue, reason)
        for reason in VERTEX_CANCEL_REASONS:
            self.vertex_cancels.labels(queue, reason)
        for counter in (self.vertex_cost, self.launcher_cost, self.unpriced):
            counter.labels(queue)
        for reason in INCOMPLETE_LISTINGS:
            self.listings_incomplete.labels(queue, reason)
        for state in ENDED_STATES:  # so the first FAILED after a start shows in increase()
            self.vertex_duration.labels(queue, state)
        for histogram in (
            self.queue_wait,
            self.claim_latency,
            self.submit_latency,
            self.bailout_detection,
            self.post_submit,
            self.admission_wait,
        ):
            histogram.labels(queue)

    def api_call(self, api: str, method: str, code: str, seconds: float) -> None:
        self.api_requests.labels(api, method, code).inc()
        self.api_duration.labels(api, method).observe(seconds)
