"""Listing a queue in W&B from the daemon: a queue W&B does not know is one clear log line and a
metric, and the daemon carries on; a long history is paged through; a listing cut at the page
bound is said once."""

from __future__ import annotations

import anyio
import httpx
import pytest
from structlog.testing import capture_logs

from launch_supervisor.config import Config, parse_config
from launch_supervisor.sandbox.stack import ENTITY, Stack, stand_ins
from tests.supervisor.daemon.test_shell import executions_of, metric, running, scrape, until

pytestmark = pytest.mark.anyio


def config_with_pages(stack: Stack, pages: int) -> Config:
    """The stack's config with `wandb.max_item_pages` set through its environment override."""
    environ = {"WANDB_API_KEY": stack.api_key, "LAUNCH_SUPERVISOR_WANDB__MAX_ITEM_PAGES": str(pages)}
    return parse_config(stack.config_toml(), "sandbox", environ)


async def test_a_queue_w_and_b_does_not_know_is_said_once_counted_and_survived() -> None:
    """`runQueue: null` at every tick: one error line naming entity, project and queue, a counter per
    listing, /healthz still ok; once the queue exists its items are dispatched and that is said."""
    async with stand_ins(["q"]) as stack:
        with capture_logs() as logs:
            async with running(stack.config()) as (_, url):
                await until(lambda: stack.wandb.faults.calls["GetRunQueueItems"] >= 3, what="three listings")
                text = await scrape(url)
                listings = metric(
                    text, "launch_supervisor_queue_listings_incomplete_total", queue="q", reason="queue_missing"
                )
                assert listings >= 3
                async with httpx.AsyncClient() as client:
                    assert (await client.get(url + "/healthz")).json()["ok"] is True
                stack.wandb.enqueue(ENTITY, "q")
                await until(lambda: len(executions_of(stack)) == 1, what="the item dispatched")
        missing = [e for e in logs if e["event"] == "queue.missing_in_wandb"]
        assert len(missing) == 1
        assert (missing[0]["entity"], missing[0]["project"], missing[0]["queue"]) == (ENTITY, "model-registry", "q")
        assert missing[0]["log_level"] == "error"
        assert [e["was"] for e in logs if e["event"] == "queue.listing_whole"] == ["queue_missing"]
        assert not [e for e in logs if e["event"] == "loop.failed"]


async def test_an_unknown_entity_is_a_missing_project() -> None:
    """`project: null` (W&B knows no such entity): said once as a missing project, counted."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.unknown_entities.add(ENTITY)
        with capture_logs() as logs:
            async with running(stack.config()) as (_, url):
                await until(lambda: stack.wandb.faults.calls["GetRunQueueItems"] >= 2, what="two listings")
                text = await scrape(url)
        reason = "project_missing"
        assert metric(text, "launch_supervisor_queue_listings_incomplete_total", queue="q", reason=reason) >= 2
        [missing] = [e for e in logs if e["event"] == "queue.missing_in_wandb"]
        assert missing["missing"] == "project"
        assert "knows no project 'model-registry' in entity 'sandbox-team'" in missing["error"]


async def test_items_behind_a_long_history_are_dispatched() -> None:
    """Oldest first with 300 finished items kept: each listing reads four pages, and the five
    pending items behind them get one execution each."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.listing = "oldest_first"
        stack.wandb.add_history(ENTITY, "q", 300)
        for _ in range(5):
            stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config("max_inflight = 10")):
            await until(lambda: len(executions_of(stack)) == 5, what="five executions")
            await anyio.sleep(0.5)
            assert len(executions_of(stack)) == 5
        assert stack.wandb.faults.calls["GetRunQueueItems"] >= 4  # four pages a listing


async def test_a_listing_cut_at_the_page_bound_is_said_once() -> None:
    """Two pages at most, 250 finished items before a pending one: the pending item is never seen
    (the documented cost), the cut is logged once and counted at every listing."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.listing = "oldest_first"
        stack.wandb.add_history(ENTITY, "q", 250)
        stack.wandb.enqueue(ENTITY, "q")
        with capture_logs() as logs:
            async with running(config_with_pages(stack, 2)) as (_, url):
                await until(lambda: stack.wandb.faults.calls["GetRunQueueItems"] >= 6, what="three listings")
                text = await scrape(url)
        assert metric(text, "launch_supervisor_queue_listings_incomplete_total", queue="q", reason="truncated") >= 3
        assert executions_of(stack) == []
        [cut] = [e for e in logs if e["event"] == "queue.listing_truncated"]
        assert (cut["queue"], cut["pages"], cut["items"]) == ("q", 2, 200)
