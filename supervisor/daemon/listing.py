"""Listing one queue's items in W&B, and saying so once when a listing cannot be whole.

A listing is cut at `wandb.max_item_pages` pages (README, W&B's listing order), or finds no project
or no queue: each listing that does is counted (`queue_listings_incomplete_total{queue,reason}`),
and logged when it starts, when its reason changes, and once when listings are whole again, so a
queue missing in W&B is one clear line, not one per tick. The daemon carries on polling: a queue
created later, or a queue that shrinks, is picked up at the next tick.
"""

from __future__ import annotations

import structlog

from launch_supervisor.engines.sources.wandb import WandbClient, WandbQueueMissingError
from launch_supervisor.model.observations import ItemSeen
from launch_supervisor.surface.metrics import Metrics

log = structlog.get_logger("launch_supervisor")


class QueueLister:
    """The listings of one queue, remembering whether the last one was whole."""

    def __init__(self, wandb: WandbClient, queue: str, metrics: Metrics) -> None:
        self._wandb = wandb
        self._queue = queue
        self._metrics = metrics
        self.problem: str | None = None
        """Why the last listing was not whole (a reason of `INCOMPLETE_LISTINGS`), or None."""

    async def list(self, entity: str) -> list[ItemSeen] | None:
        """The items listed (all, or as many as the page bound allows); None when W&B knows no such
        queue. W&B's other errors are raised, for the loop to log and count."""
        try:
            listing = await self._wandb.list_items(entity, self._queue)
        except WandbQueueMissingError as exc:
            reason = f"{exc.missing}_missing"
            self._metrics.listings_incomplete.labels(self._queue, reason).inc()
            if self.problem != reason:
                log.error(
                    "queue.missing_in_wandb",
                    queue=self._queue,
                    entity=exc.entity,
                    project=exc.project,
                    missing=exc.missing,
                    error=str(exc),
                )
            self.problem = reason
            return None
        if listing.truncated:
            self._metrics.listings_incomplete.labels(self._queue, "truncated").inc()
            if self.problem != "truncated":
                log.warning(
                    "queue.listing_truncated",
                    queue=self._queue,
                    entity=entity,
                    pages=listing.pages,
                    items=len(listing.items),
                    fix="items past the last page are not seen: raise wandb.max_item_pages",
                )
            self.problem = "truncated"
        elif self.problem is not None:
            log.info("queue.listing_whole", queue=self._queue, entity=entity, was=self.problem, pages=listing.pages)
            self.problem = None
        return listing.items
