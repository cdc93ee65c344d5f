"""What the trackers and sources observed, already parsed: the model's inputs from the outside."""

from __future__ import annotations

from dataclasses import dataclass

from launch_supervisor.model.items import ItemState
from launch_supervisor.model.vertex import Hardware, JobState


@dataclass(frozen=True, slots=True)
class ItemSeen:
    id: str
    state: ItemState
    run_id: str | None


@dataclass(frozen=True, slots=True)
class ExecutionSeen:
    """One execution as Cloud Run lists it, already classified (docs/architecture.md, Google clients)."""

    name: str
    status: str
    """pending | running | succeeded | failed | cancelled"""
    created: float
    started: float | None
    finished: float | None
    message: str = ""
    cancelling: bool = False
    """A cancel is under way (a condition with reason CANCELLING), whoever asked for it."""


@dataclass(frozen=True, slots=True)
class VertexSeen:
    name: str
    run_id: str | None
    state: JobState
    created: float
    ended: float | None
    error: str | None
    item_id: str | None = None
    """WANDB_LAUNCH_TRACE_ID from the job's container env: the queue item it runs."""
    entity: str | None = None
    project: str | None = None
    """WANDB_ENTITY and WANDB_PROJECT from the container env: where its run lives in W&B."""
    launch_queue: tuple[str, str] | None = None
    """(WANDB_LAUNCH_QUEUE_ENTITY, WANDB_LAUNCH_QUEUE_NAME) from the container env: the queue the
    agent took its item from."""
    started: float | None = None
    """start_time: when it first ran."""
    hardware: Hardware | None = None
    """Its worker pools' machines and its scheduling strategy: what it costs by."""
