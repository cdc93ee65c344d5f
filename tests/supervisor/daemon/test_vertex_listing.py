"""The Vertex loop's listings against the Vertex stand-in: a tick reads what changed, two calls plus
one per job that left the live set unseen, however many ended jobs the lookback holds."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from supervisor.clients import Clients, build_clients
from supervisor.daemon.vertex_listing import VertexListing
from supervisor.model.state import State
from supervisor.model.vertex import JobState
from supervisor.sandbox.simulated import agent_job, custom_job
from supervisor.sandbox.stack import ENTITY, Stack, stand_ins

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
