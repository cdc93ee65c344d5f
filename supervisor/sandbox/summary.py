"""What a sandbox run did, counted from the stand-ins' own records and the watchdogs' logs.

Not from the daemon's metrics: the summary checks the daemon, so it is taken from what W&B, Cloud Run
and Vertex saw (items, executions, CustomJobs) and from what each execution's watchdog printed. Its
keys are fixed (SUMMARY_KEYS): it is written to --summary-json for scripts and tests to read.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from launch_supervisor.sandbox.stack import Stack

SUMMARY_KEYS = (
    "items_submitted",
    "items_terminal",
    "items_non_terminal",
    "executions_started",
    "max_executions_per_item",
    "vertex_jobs_created",
    "duplicates",
    "outcomes",
    "bailouts",
    "items_failed_by_supervisor",
    "runs_stopped_in_wandb",
    "cancelled_stopped_in_wandb",
    "submit_latency_p50_s",
    "submit_latency_p95_s",
    "dispatch_mode",
)
TRACE_ID = "WANDB_LAUNCH_TRACE_ID"
"""The agent puts the item's id in each CustomJob's environment under this name."""


def summarize(stack: Stack, item_ids: Sequence[str], executions: Path, dispatch_mode: str) -> dict[str, Any]:
    """The summary of the items enqueued, with the keys of SUMMARY_KEYS in that order. `executions`
    is the directory of each execution's output (`<execution>.stdout.log`)."""
    jobs = jobs_by_item(stack)
    items = [stack.wandb.items[i] for i in item_ids]
    terminal = sum(1 for i in item_ids if is_terminal(stack, i, jobs))
    outcomes: Counter[str] = Counter()
    bailouts: Counter[str] = Counter()
    for name in stack.cloudrun.executions:
        events = watchdog_events(executions, name)
        exited = next((e for e in events if e["event"] == "watchdog.exited"), None)
        outcomes[exited["reason"] if exited else stack.cloudrun.status(name)] += 1
        for event in events:
            if event["event"] == "watchdog.bailout":
                bailouts[event["category"]] += 1
    latencies = []
    for item in items:
        created = [j.create_time.timestamp() for j in jobs.get(item.id, [])]
        if created:
            latencies.append(min(created) - item.enqueued_at)
    stopped = [i for i in items if run_stopped(stack, i.run_id)]
    summary = {
        "items_submitted": len(items),
        "items_terminal": terminal,
        "items_non_terminal": len(items) - terminal,
        "executions_started": len(stack.cloudrun.executions),
        "max_executions_per_item": max((i.leases for i in items), default=0),
        "vertex_jobs_created": len(stack.vertex.jobs),
        "duplicates": sum(max(0, len(found) - 1) for found in jobs.values()),
        "outcomes": dict(sorted(outcomes.items())),
        "bailouts": dict(sorted(bailouts.items())),
        "items_failed_by_supervisor": sum(
            1 for i in items if any(by.startswith("launch-supervisor") for by in i.failed_by)
        ),
        "runs_stopped_in_wandb": len(stopped),
        "cancelled_stopped_in_wandb": sum(1 for i in stopped if cancelled_for_stop(stack, i.id, jobs)),
        "submit_latency_p50_s": percentile(latencies, 0.5),
        "submit_latency_p95_s": percentile(latencies, 0.95),
        "dispatch_mode": dispatch_mode,
    }
    assert tuple(summary) == SUMMARY_KEYS
    return summary


def jobs_by_item(stack: Stack) -> dict[str, list[Any]]:
    """Each item's CustomJobs, by the trace id the agent put in the job's environment."""
    jobs: dict[str, list[Any]] = {}
    for tracked in stack.vertex.jobs.values():
        for pool in tracked.job.job_spec.worker_pool_specs:
            trace = next((e.value for e in pool.container_spec.env if e.name == TRACE_ID), None)
            if trace:
                jobs.setdefault(trace, []).append(tracked.job)
                break
    return jobs


def is_terminal(stack: Stack, item_id: str, jobs: dict[str, list[Any]]) -> bool:
    """FAILED, or CLAIMED with a CustomJob that succeeded: nothing more will happen to it. (CLAIMED
    with a job that failed is not terminal until the supervisor has failed the item.)"""
    item = stack.wandb.items[item_id]
    if item.state == "FAILED":
        return True
    found = jobs.get(item_id, [])
    return item.state == "CLAIMED" and any(job.state.name == "JOB_STATE_SUCCEEDED" for job in found)


def run_stopped(stack: Stack, run_id: str | None) -> bool:
    """The item's run (by the id it was acknowledged with) was stopped in W&B."""
    return run_id is not None and any(run.stopped for run in stack.wandb.runs_named(run_id))


def cancelled_for_stop(stack: Stack, item_id: str, jobs: dict[str, list[Any]]) -> bool:
    """Its run stopped in W&B, its CustomJob ended CANCELLED and the item FAILED: what the supervisor
    does with a run stopped while its training code runs on. (A stopped run whose job ended on its own
    is terminal too, but not counted here.)"""
    item = stack.wandb.items[item_id]
    cancelled = any(job.state.name == "JOB_STATE_CANCELLED" for job in jobs.get(item_id, []))
    return item.state == "FAILED" and cancelled and run_stopped(stack, item.run_id)


def count_terminal(stack: Stack, item_ids: Iterable[str]) -> int:
    jobs = jobs_by_item(stack)
    return sum(1 for i in item_ids if is_terminal(stack, i, jobs))


def settled(stack: Stack, item_ids: Iterable[str]) -> bool:
    """Every item terminal and no execution pending or running: nothing more will happen."""
    running = any(stack.cloudrun.status(n) in ("pending", "running") for n in stack.cloudrun.executions)
    jobs = jobs_by_item(stack)
    return not running and all(is_terminal(stack, item_id, jobs) for item_id in item_ids)


def watchdog_events(executions: Path, execution: str) -> list[dict[str, Any]]:
    """The `watchdog.*` events an execution's watchdog printed; none when its log is missing."""
    path = executions / f"{execution.rsplit('/', 1)[-1]}.stdout.log"
    events = []
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith('{"event":"watchdog.'):
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
    return events


def post_submit_seconds(stack: Stack, executions: Path) -> list[float]:
    """For each execution that reported a submission: its end minus its CustomJob's creation,
    both in Google's own times (what one-shot saves is what is left of this)."""
    found = []
    for name, execution in stack.cloudrun.executions.items():
        submitted = [e for e in watchdog_events(executions, name) if e["event"] == "watchdog.submitted"]
        tracked = stack.vertex.jobs.get(submitted[0]["custom_job"]) if submitted else None
        if tracked is not None and execution.completion_time:
            found.append(execution.completion_time.timestamp() - tracked.job.create_time.timestamp())
    return found


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile, rounded to the millisecond; None without values."""
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1], 3)
