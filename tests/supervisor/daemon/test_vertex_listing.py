"""The Vertex loop's listings against the Vertex stand-in: a tick reads what changed, two calls plus
one per job that left the live set unseen, however many ended jobs the lookback holds."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from launch_supervisor.clients import Clients, build_clients
from launch_supervisor.config import parse_config
from launch_supervisor.daemon.vertex_listing import VertexListing
from launch_supervisor.engines.trackers.vertex import LIVE_FILTER
from launch_supervisor.model.events import item_added
from launch_supervisor.model.state import State
from launch_supervisor.model.vertex import JobState
from launch_supervisor.sandbox.simulated import agent_job, custom_job
from launch_supervisor.sandbox.stack import ENTITY, Stack, stand_ins
from tests.supervisor.daemon.test_shell import running

pytestmark = pytest.mark.anyio


@dataclass
class Watched:
    """A model and a listing over the stand-ins, with the Vertex calls made, by method."""

    stack: Stack
    clients: Clients
    state: State = field(default_factory=State)
    listing: VertexListing = field(default_factory=lambda: VertexListing(lookback=86400.0, full_every=600.0))
    calls: Counter[str] = field(default_factory=Counter)

    async def tick(self) -> Counter[str]:
        """One tick; the calls it made."""
        self.calls.clear()
        await self.listing.tick(self.state, self.clients.vertex)
        return Counter(self.calls)


@asynccontextmanager
async def watched(prepare: Callable[[Stack], None] = lambda stack: None) -> AsyncIterator[Watched]:
    async with stand_ins(["q"]) as stack:
        prepare(stack)
        calls: Counter[str] = Counter()
        clients = build_clients(stack.config(), lambda api, method, code, seconds: calls.update([method]))
        try:
            yield Watched(stack, clients, calls=calls)
        finally:
            await clients.aclose()


async def test_a_tick_costs_two_calls_plus_one_per_job_that_ended_unseen() -> None:
    live: list[str] = []

    def prepare(stack: Stack) -> None:
        stack.vertex.schedule.done = 3600.0
        stack.vertex.cancel_delay = 0.0
        stack.vertex.preload(agent_job("q", f"old-{n}", f"old-{n}", ENTITY) for n in range(2500))
        live.extend(stack.vertex.create(custom_job("q", f"i-{n}", f"r-{n}", entity=ENTITY)).name for n in range(5))
        for name in live:  # running for two hours: older than any listing of new jobs reaches
            stack.vertex.jobs[name].job.create_time = datetime.now(UTC) - timedelta(hours=2)

    async with watched(prepare) as w:
        assert await w.tick() == {"ListCustomJobs": 3}  # the full listing: 2,505 jobs, three pages
        assert len(w.state.vertex_jobs) == 2505
        assert sorted(w.state.vertex_in_flight()) == sorted(live)
        assert await w.tick() == {"ListCustomJobs": 2}

        w.stack.vertex.cancel(live[0])  # ends before the next read (cancel_delay 0)
        del w.stack.vertex.jobs[live[1]]  # deleted while running
        assert await w.tick() == {"ListCustomJobs": 2, "GetCustomJob": 2}
        assert w.state.vertex_jobs[live[0]].state is JobState.CANCELLED
        gone = w.state.vertex_jobs[live[1]]
        assert (gone.state, gone.error) == (JobState.CANCELLED, "the CustomJob no longer exists (deleted?)")
        assert sorted(w.state.vertex_in_flight()) == sorted(live[2:])


async def test_the_full_listing_is_folded_a_page_at_a_time() -> None:
    """2,500 jobs come in three pages, and each is in the model before the next is asked for: what a
    full listing holds at once is one page of parsed jobs, however many the lookback has."""
    state = State()
    folded: list[int] = []  # the jobs the model held as each page's answer came
    async with stand_ins(["q"]) as stack:
        stack.vertex.preload(agent_job("q", f"old-{n}", f"old-{n}", ENTITY) for n in range(2500))
        clients = build_clients(
            stack.config(), lambda api, method, code, seconds: folded.append(len(state.vertex_jobs))
        )
        try:
            await VertexListing(lookback=86400.0, full_every=600.0).tick(state, clients.vertex)
        finally:
            await clients.aclose()
    assert folded == [0, 1000, 2000]
    assert len(state.vertex_jobs) == 2500


async def test_a_job_that_ends_between_two_live_listings_is_seen_ended() -> None:
    """Created and ended between two ticks, it is never listed live: the listing of jobs created
    since the previous tick shows it, ended, with no GetCustomJob."""
    async with watched() as w:
        await w.tick()
        w.stack.vertex.schedule.done = 0.0
        brief = w.stack.vertex.create(custom_job("q", "item-b", "run-b", entity=ENTITY)).name
        w.stack.vertex.advance()
        assert await w.tick() == {"ListCustomJobs": 2}
        assert w.state.vertex_jobs[brief].state is JobState.SUCCEEDED


async def test_the_full_listing_comes_back_on_its_cadence() -> None:
    async with watched() as w:
        await w.tick()
        assert w.listing.full_at is not None
        w.listing.full_at -= 601.0
        assert await w.tick() == {"ListCustomJobs": 1}  # the whole lookback, in one page


async def test_a_flood_of_hints_reaches_each_loop_at_most_once_per_gap() -> None:
    """A daemon handed 50 hints a second for 2 s per loop (an enqueuer's item_added, a RunJob's end,
    a CreateCustomJob audit entry, as the sinks deliver them) lists each at most 2 / min_gap + 1
    times, and counts the rest as coalesced."""
    fixtures = Path(__file__).parents[1] / "model" / "logentries"
    run_end = json.loads((fixtures / "runjob_end_audit.json").read_text())
    run_end["data"]["resource"]["labels"]["job_name"] = "launcher-q"
    create = json.loads((fixtures / "create_custom_job_audit.json").read_text())
    hints = [
        (item_added("q"), {"type": "queue.item_added"}),
        (json.dumps(run_end["data"]).encode(), run_end["attributes"]),
        (json.dumps(create["data"]).encode(), create["attributes"]),
    ]
    async with stand_ins(["q"]) as stack:
        poll = "queue_interval = 60\nexecutions_interval = 60\nvertex_interval = 60\njitter = 0\n"
        poll += "queue_min_gap = 0.5\nexecutions_min_gap = 0.5\nvertex_min_gap = 0.5"
        config = parse_config(stack.config_toml(poll=poll), "test", {"WANDB_API_KEY": stack.api_key})
        async with running(config) as (daemon, _):
            await anyio.sleep(1.0)  # past the start-up listings
            before = (
                stack.wandb.faults.calls["GetRunQueueItems"],
                stack.cloudrun.faults.calls["ListExecutions"],
                stack.vertex.listings[LIVE_FILTER],
            )
            started = anyio.current_time()
            for _ in range(100):
                for data, attributes in hints:
                    daemon.handle_message(data, attributes)
                await anyio.sleep(0.02)
            flood = anyio.current_time() - started
            await anyio.sleep(0.6)  # the listing the last hints asked for
            after = (
                stack.wandb.faults.calls["GetRunQueueItems"],
                stack.cloudrun.faults.calls["ListExecutions"],
                stack.vertex.listings[LIVE_FILTER],
            )
            coalesced = {
                loop: daemon.registry.get_sample_value("launch_supervisor_hints_coalesced_total", {"loop": loop}) or 0.0
                for loop in ("queue", "executions", "vertex")
            }
    for loop, listed in zip(
        ("queue", "executions", "vertex"), (a - b for a, b in zip(after, before, strict=True)), strict=True
    ):
        assert 2 <= listed <= (flood + 0.6) / 0.5 + 1, (loop, listed)
        assert coalesced[loop] >= 100 - listed - 1, loop
