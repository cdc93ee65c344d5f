"""The W&B GraphQL client against the W&B stand-in: listing, failing items, errors and retries."""

from __future__ import annotations

import pytest

from supervisor.clients import build_clients
from supervisor.engines.sources.wandb import WandbAuthError, WandbClient, WandbProtocolError, WandbUnavailableError
from supervisor.model.items import ItemState
from supervisor.sandbox.faults import Fault
from supervisor.sandbox.stack import ENTITY, stand_ins

pytestmark = pytest.mark.anyio


async def test_wandb_lists_a_queue_in_one_request_and_fails_items() -> None:
    """One GraphQL request lists every item with its state; failRunQueueItem marks one FAILED."""
    async with stand_ins(["q"]) as stack:
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(5)]
        stack.wandb.pop(ENTITY, "q")
        clients = build_clients(stack.config())
        try:
            items = await clients.wandb.list_items(ENTITY, "q")
            assert stack.wandb.faults.calls["GetRunQueueItems"] == 1
            assert sorted(i.id for i in items) == sorted(ids)
            assert sorted(i.state.value for i in items) == ["LEASED", "PENDING", "PENDING", "PENDING", "PENDING"]
            assert await clients.wandb.fail_item(ids[1], "Vertex said no", "run")
            assert stack.wandb.items[ids[1]].failures == [("Vertex said no", "run")]
            with pytest.raises(WandbProtocolError, match="does not exist"):
                await clients.wandb.list_items(ENTITY, "no-such-queue")
        finally:
            await clients.aclose()


async def test_wandb_auth_errors_are_not_retried() -> None:
    """A wrong key gives WandbAuthError after a single request."""
    async with stand_ins(["q"]) as stack:
        client = WandbClient(stack.wandb_url, "wrong-key", timeout=2)
        try:
            with pytest.raises(WandbAuthError, match="401"):
                await client.list_items(ENTITY, "q")
            assert stack.wandb.faults.calls["GetRunQueueItems"] == 1
        finally:
            await client.aclose()


async def test_wandb_5xx_and_timeouts_are_retried_then_reported() -> None:
    """A 503 then success is one successful call; persistent 5xx or delays raise WandbUnavailableError."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.enqueue(ENTITY, "q")
        client = WandbClient(stack.wandb_url, stack.api_key, timeout=0.5, attempts=3)
        try:
            stack.wandb.faults.add("GetRunQueueItems", Fault(status=503))
            assert len(await client.list_items(ENTITY, "q")) == 1
            stack.wandb.faults.add("GetRunQueueItems", Fault(status=502), times=3)
            with pytest.raises(WandbUnavailableError, match="502"):
                await client.list_items(ENTITY, "q")
            stack.wandb.faults.add("GetRunQueueItems", Fault(delay=1.0), times=3)
            with pytest.raises(WandbUnavailableError, match="timed out"):
                await client.list_items(ENTITY, "q")
        finally:
            await client.aclose()


def test_item_state_parsing() -> None:
    """Unknown item states are skipped rather than crashing the poll."""
    assert ItemState.parse("claimed") is ItemState.CLAIMED
    assert ItemState.parse("FINISHED") is None
