"""W&B Launch queue items as the supervisor sees them."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ItemState(enum.Enum):
    """The server's item states (docs/architecture.md, State machines). There is no "finished": W&B
    derives it from the run."""

    PENDING = "PENDING"
    LEASED = "LEASED"
    CLAIMED = "CLAIMED"
    FAILED = "FAILED"

    @classmethod
    def parse(cls, raw: str) -> ItemState | None:
        try:
            return cls(raw.upper())
        except ValueError:
            return None


@dataclass(slots=True)
class Item:
    """One queue item, from the first poll that listed it."""

    id: str
    state: ItemState
    first_seen: float
    """When it was first listed (pending, normally): start of queue wait and submit latency."""
    run_id: str | None = None
    """associatedRunId: the W&B run, the CustomJob label wandb-run-id."""
    claimed_by: str | None = None
    """Execution name, from a watchdog event or inferred."""
    claim_confirmed: bool = False
    """The pairing came from the execution's own `claimed` event, not from counting."""
    vertex_job: str | None = None
    failed_by_supervisor: bool = False
    """failRunQueueItem succeeded for it: never call again."""
    claimed_seen: float | None = None
    """When this process first saw it out of PENDING: the clock of the last-resort rule."""
    last_seen: float = 0.0
    """Last poll that listed it; items that disappear are dropped after retention."""

    def observe(self, state: ItemState, run_id: str | None, now: float) -> bool:
        """A listing shows it in `state`. True when it just left PENDING and no event said who took
        it: the claim is to be inferred."""
        self.last_seen = now
        if run_id and not self.run_id:
            self.run_id = run_id
        was_pending = self.state is ItemState.PENDING
        if state is ItemState.PENDING and self.state is ItemState.LEASED:
            self.claimed_by = None  # the lease ran out un-acked: nobody holds the item any more
        self.state = state
        held = state in (ItemState.LEASED, ItemState.CLAIMED)
        if not held:
            self.claimed_seen = None
        elif self.claimed_seen is None:
            self.claimed_seen = now
        return was_pending and held and self.claimed_by is None
