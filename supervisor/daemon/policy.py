"""From the configuration to the model's per-queue policies: the model never reads the config."""

from __future__ import annotations

from launch_supervisor.config import Config, QueueConfig
from launch_supervisor.model.cost import Prices
from launch_supervisor.model.policy import QueuePolicy
from launch_supervisor.model.remedies import STRANDED_MARGIN

EVENT_GRACE = 30.0
"""With events on, how long a failed execution waits for its watchdog's bailout event before it
counts as `crash`: the event travels through Pub/Sub, the listing through Cloud Run."""


def policy_of(config: Config, queue: QueueConfig) -> QueuePolicy:
    b = queue.breaker
    return QueuePolicy(
        name=queue.name,
        entity=config.entity_of(queue),
        launcher_job=queue.launcher_job,
        max_inflight=queue.max_inflight,
        dispatch_budget=queue.dispatch_budget,
        claim_timeout=queue.claim_timeout,
        execution_timeout=queue.execution_timeout,
        breaker_threshold=b.threshold,
        breaker_window=b.window,
        breaker_cooldown=b.cooldown,
        breaker_max_cooldown=b.max_cooldown,
        retention_seconds=config.retention.finished_seconds,
        retention_max=config.retention.finished_max,
        stop_after_submit=queue.stop_after_submit,
        stranded_after=queue.stranded_after or queue.execution_timeout + STRANDED_MARGIN,
        event_grace=EVENT_GRACE if config.pubsub.subscription else 0.0,
        cancel_stopped_runs=queue.cancel_stopped_runs,
        stop_grace=queue.stop_grace,
        max_queued=queue.max_queued,
        max_runtime=queue.max_runtime,
        daily_budget=queue.daily_budget,
    )


def policies_of(config: Config) -> list[QueuePolicy]:
    return [policy_of(config, queue) for queue in config.queues]


def prices_of(config: Config) -> Prices:
    p = config.prices
    return Prices(
        machine=dict(p.machine),
        machine_spot=dict(p.machine_spot),
        accelerator=dict(p.accelerator),
        accelerator_spot=dict(p.accelerator_spot),
        vcpu_second=p.launcher_vcpu_second,
        gib_second=p.launcher_gib_second,
    )
