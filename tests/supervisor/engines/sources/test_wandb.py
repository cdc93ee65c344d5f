"""The W&B GraphQL client against the W&B stand-in: listing, failing items, errors and retries."""

from __future__ import annotations

import pytest

from launch_supervisor.clients import build_clients
from launch_supervisor.engines.sources.wandb import (
    PAGE_SIZE,
    WandbAuthError,
    WandbClient,
    WandbQueueMissingError,
    WandbUnavailableError,
)
from launch_supervisor.model.items import ItemState
from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.stack import ENTITY, stand_ins
from launch_supervisor.sandbox.wandb_server import LISTINGS, REFUSALS

pytestmark = pytest.mark.anyio


async def test_wandb_lists_a_queue_in_one_request_and_fails_items() -> None:
    """One GraphQL request lists every item with its state; failRunQueueItem marks one FAILED."""
    async with stand_ins(["q"]) as stack:
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(5)]
        stack.wandb.pop(ENTITY, "q")
        clients = build_clients(stack.config())
        try:
            items = (await clients.wandb.list_items(ENTITY, "q")).items
            assert stack.wandb.faults.calls["GetRunQueueItems"] == 1
            assert sorted(i.id for i in items) == sorted(ids)
            assert sorted(i.state.value for i in items) == ["LEASED", "PENDING", "PENDING", "PENDING", "PENDING"]
            assert await clients.wandb.fail_item(ids[1], "Vertex said no", "run")
            assert stack.wandb.items[ids[1]].failures == [("Vertex said no", "run")]
            with pytest.raises(WandbQueueMissingError, match="knows no queue 'no-such-queue' in project"):
                await clients.wandb.list_items(ENTITY, "no-such-queue")
        finally:
            await clients.aclose()


@pytest.mark.parametrize("wording", REFUSALS)
async def test_wandb_auth_errors_are_not_retried(wording: str) -> None:
    """A wrong key, refused in either of W&B's wordings, gives WandbAuthError after a single request."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.refusal = wording
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
            assert len((await client.list_items(ENTITY, "q")).items) == 1
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


@pytest.mark.parametrize("listing", LISTINGS)
async def test_a_queue_of_up_to_a_page_costs_one_request(listing: str) -> None:
    """A small queue: one request per listing whatever the order, even with a whole page."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.listing = listing
        for _ in range(PAGE_SIZE - 1):
            stack.wandb.enqueue(ENTITY, "q")
        client = WandbClient(stack.wandb_url, stack.api_key, timeout=2)
        try:
            listing_ = await client.list_items(ENTITY, "q")
            assert (listing_.pages, listing_.truncated, len(listing_.items)) == (1, False, PAGE_SIZE - 1)
            assert stack.wandb.faults.calls["GetRunQueueItems"] == 1
        finally:
            await client.aclose()


async def test_new_items_behind_a_long_history_are_seen_by_following_full_pages() -> None:
    """Oldest first with history kept: 250 finished items, then 3 pending; a full page is followed
    by the next until a short one, so the pending items are seen (3 requests)."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.listing = "oldest_first"
        stack.wandb.add_history(ENTITY, "q", 250)
        pending = {stack.wandb.enqueue(ENTITY, "q") for _ in range(3)}
        client = WandbClient(stack.wandb_url, stack.api_key, timeout=2)
        try:
            listing = await client.list_items(ENTITY, "q")
        finally:
            await client.aclose()
        assert (listing.pages, listing.truncated, len(listing.items)) == (3, False, 253)
        assert {i.id for i in listing.items if i.state is ItemState.PENDING} == pending
        assert len({i.id for i in listing.items}) == 253
        assert stack.wandb.faults.calls["GetRunQueueItems"] == 3


async def test_the_listing_stops_at_the_page_bound_and_says_it_was_cut() -> None:
    """Beyond `max_pages` full pages the rest is left unread, and the listing says so."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.listing = "oldest_first"
        stack.wandb.add_history(ENTITY, "q", 2 * PAGE_SIZE)
        stack.wandb.enqueue(ENTITY, "q")
        client = WandbClient(stack.wandb_url, stack.api_key, timeout=2, max_pages=2)
        try:
            listing = await client.list_items(ENTITY, "q")
        finally:
            await client.aclose()
        assert (listing.pages, listing.truncated, len(listing.items)) == (2, True, 2 * PAGE_SIZE)
        assert not any(i.state is ItemState.PENDING for i in listing.items)
        assert stack.wandb.faults.calls["GetRunQueueItems"] == 2


async def test_a_missing_project_or_queue_names_entity_project_and_queue() -> None:
    """`project: null` (an entity W&B does not know) and `runQueue: null` are each a
    WandbQueueMissingError naming what is missing, where, and the fix."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.unknown_entities.add("nobody")
        client = WandbClient(stack.wandb_url, stack.api_key, timeout=2)
        try:
            with pytest.raises(WandbQueueMissingError) as project:
                await client.list_items("nobody", "q")
            with pytest.raises(WandbQueueMissingError) as queue:
                await client.list_items(ENTITY, "nowhere")
        finally:
            await client.aclose()
    assert project.value.missing == "project"
    assert str(project.value) == (
        "W&B knows no project 'model-registry' in entity 'nobody' (asked for queue 'q'): check [wandb] entity "
        "(or queues[].entity): launch queues live in that entity's project"
    )
    assert (queue.value.missing, queue.value.entity, queue.value.queue) == ("queue", ENTITY, "nowhere")
    assert "queue 'nowhere' in project 'model-registry' of entity 'sandbox-team'" in str(queue.value)


async def test_a_null_fail_payload_is_not_done_and_null_runs_are_none_stopped() -> None:
    """`failRunQueueItem: null` is "not done, ask again" (False), not a malformed answer;
    `project.runs: null` is no run stopped. Both fields are nullable in W&B's schema."""
    async with stand_ins(["q"]) as stack:
        item = stack.wandb.enqueue(ENTITY, "q")
        stack.wandb.faults.add("failRunQueueItem", Fault(body='{"data": {"failRunQueueItem": null}}'))
        stack.wandb.faults.add("RunStopStatus", Fault(body='{"data": {"project": {"runs": null}}}'))
        client = WandbClient(stack.wandb_url, stack.api_key, timeout=2)
        try:
            assert await client.fail_item(item, "Vertex said no") is False
            assert stack.wandb.items[item].state == "PENDING"
            assert await client.fail_item(item, "Vertex said no") is True  # asked again: done
            assert await client.stopped_runs(ENTITY, "train", ["r1"]) == set()
        finally:
            await client.aclose()
