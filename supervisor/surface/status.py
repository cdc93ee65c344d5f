"""The `/status` view: JSON for people and for `launch-supervisor status`, read from the model."""

from __future__ import annotations

from typing import Any

from launch_supervisor.model.queue import QueueState, in_flight_by_phase
from launch_supervisor.model.state import State

LISTED = 200
"""Executions and CustomJobs listed, newest first: enough to see what is going on, never unbounded."""


def _cost(queue: QueueState) -> dict[str, Any]:
    """The queue's spend over the last 24 hours against its daily_budget, and whether that holds
    dispatch (`held`: why, in words)."""
    spend, budget = queue.spending.spend, queue.policy.daily_budget
    held = None
    if budget is not None and spend is None:
        held = "spend not known yet: waiting for the first CustomJob listing"
    elif queue.spending.over(budget):
        held = f"over budget: ${spend:.2f} spent in the last 24 h, daily_budget ${budget:.2f}"
    return {
        "spend_24h": None if spend is None else round(spend, 4),
        "daily_budget": budget,
        "over_budget": queue.spending.over(budget),
        "held": held,
    }


def status_view(state: State, now: float, *, version: str, ready: bool, uptime: float) -> dict[str, Any]:
    queues = {}
    for name, queue in state.queues.items():
        breaker = queue.breaker
        reopens = breaker.reopens_at()
        queues[name] = {
            "entity": queue.policy.entity,
            "launcher_job": queue.policy.launcher_job,
            "polling": state.stopped.get(name, "ok"),
            "pending": queue.pending_count(),
            "in_flight": {phase.value: count for phase, count in in_flight_by_phase(queue).items()},
            "breaker": {
                "state": breaker.state.value,
                "reason": breaker.reason,
                "cooldown_s": breaker.cooldown,
                "reopens_in_s": None if reopens is None else round(max(0.0, reopens - now), 1),
            },
            "cost": _cost(queue),
        }
    executions = sorted(
        (e for q in state.queues.values() for e in q.executions.values()), key=lambda e: e.created, reverse=True
    )
    jobs = sorted(state.vertex_jobs.values(), key=lambda j: j.created, reverse=True)
    return {
        "version": version,
        "ready": ready,
        "uptime_s": round(uptime, 1),
        "queues": queues,
        "executions": [
            {
                "name": e.name,
                "queue": e.queue,
                "phase": e.phase.value,
                "category": e.category,
                "rule": e.bailout_rule,
                "item_id": e.item_id,
                "vertex_job": e.vertex_job,
                "age_s": round(now - e.created, 1),
                "recovered": e.recovered,
            }
            for e in executions[:LISTED]
        ],
        "vertex_jobs": [
            {
                "name": j.name,
                "queue": j.queue,
                "state": j.state.value,
                "error": j.error,
                "run": j.run_id,
                "stopped_in_wandb_since": j.stopped_since,
                "started": j.started,
                "cancel": j.cancel,
            }
            for j in jobs[:LISTED]
        ],
    }
