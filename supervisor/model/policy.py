"""The settings the model needs for one queue, built from the configuration by the daemon. The model
never reads the configuration itself: a reload hands it a new policy (`State.apply_policy`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueuePolicy:
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
    stranded_after: float = 2400.0
    """Seconds an item may stay CLAIMED with no CustomJob and no execution in flight holding it
    before it is given up for lost (see `remedies.stranded_items`)."""
    event_grace: float = 0.0
    """How long a failed execution waits for its watchdog's bailout event before it counts as
    `crash` (0 when no events are configured)."""
    cancel_stopped_runs: bool = True
    """Cancel the CustomJob of a run stopped in W&B (see `stops`)."""
    stop_grace: float = 60.0
    """Seconds a run stays stopped in W&B, its CustomJob still live, before the job is cancelled: time
    for the training code's own wandb client to end it first."""
    max_queued: float | None = None
    """Seconds a CustomJob may wait QUEUED or PENDING for capacity before it is cancelled (see
    `limits`); None: no limit."""
    max_runtime: float | None = None
    """Seconds a CustomJob may run before it is cancelled; None: no limit."""
    daily_budget: float | None = None
    """Dollars of CustomJob cost over the last 24 hours at which dispatch stops; None: no budget."""
