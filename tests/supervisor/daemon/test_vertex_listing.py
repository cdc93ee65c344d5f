"""The Vertex loop's listings against the Vertex stand-in: a tick reads what changed, two calls plus
one per job that left the live set unseen, however many ended jobs the lookback holds."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from supervisor.clients import build_clients
from supervisor.daemon.vertex_listing import VertexListing
from supervisor.model.state import State
from supervisor.model.vertex import JobState
from supervisor.sandbox.simulated import agent_job, custom_job
from supervisor.sandbox.stack import ENTITY, stand_ins

pytestmark = pytest.mark.anyio


async def test_a_tick_costs_two_calls_plus_one_per_job_that_ended_unseen() -> None:
    calls: Counter[str] = Counter()
    async with stand_ins(["q"]) as stack:
        stack.vertex.schedule.done = 3600.0
        stack.vertex.cancel_delay = 0.0
        stack.vertex.preload(agent_job("q", f"old-{n}", f"old-{n}", ENTITY) for n in range(2500))
        live = [stack.vertex.create(custom_job("q", f"item-{n}", f"run-{n}", entity=ENTITY)).name for n in range(5)]
        for name in live:  # running for two hours: older than any listing of new jobs reaches
            stack.vertex.jobs[name].job.create_time = datetime.now(UTC) - timedelta(hours=2)
        clients = build_clients(stack.config(), lambda api, method, code, seconds: calls.update([method]))
        state, listing = State(), VertexListing(lookback=86400.0, full_every=600.0)
        try:
            await listing.tick(state, clients.vertex)  # the full listing: 2,505 jobs, three pages
            assert calls == {"ListCustomJobs": 3}
            assert len(state.vertex_jobs) == 2505
            assert sorted(state.vertex_in_flight()) == sorted(live)

            calls.clear()
            await listing.tick(state, clients.vertex)
            assert calls == {"ListCustomJobs": 2}

            stack.vertex.cancel(live[0])  # ends before the next read (cancel_delay 0)
            del stack.vertex.jobs[live[1]]  # deleted while running
            calls.clear()
            await listing.tick(state, clients.vertex)
            assert calls == {"ListCustomJobs": 2, "GetCustomJob": 2}
            assert state.vertex_jobs[live[0]].state is JobState.CANCELLED
            assert (state.vertex_jobs[live[1]].state, state.vertex_jobs[live[1]].error) == (
                JobState.CANCELLED,
                "the CustomJob no longer exists (deleted?)",
            )
            assert sorted(state.vertex_in_flight()) == sorted(live[2:])
        finally:
            await clients.aclose()


async def test_a_job_that_ends_between_two_live_listings_is_seen_ended() -> None:
    """Created and ended between two ticks, it is never listed live: the listing of jobs created
    since the previous tick shows it, ended, with no GetCustomJob."""
    calls: Counter[str] = Counter()
    async with stand_ins(["q"]) as stack:
        clients = build_clients(stack.config(), lambda api, method, code, seconds: calls.update([method]))
        state, listing = State(), VertexListing(lookback=86400.0, full_every=600.0)
        try:
            await listing.tick(state, clients.vertex)
            stack.vertex.schedule.done = 0.0
            brief = stack.vertex.create(custom_job("q", "item-b", "run-b", entity=ENTITY)).name
            stack.vertex.advance()
            calls.clear()
            await listing.tick(state, clients.vertex)
            assert calls == {"ListCustomJobs": 2}
            assert state.vertex_jobs[brief].state is JobState.SUCCEEDED
        finally:
            await clients.aclose()


async def test_the_full_listing_comes_back_on_its_cadence() -> None:
    calls: Counter[str] = Counter()
    async with stand_ins(["q"]) as stack:
        clients = build_clients(stack.config(), lambda api, method, code, seconds: calls.update([method]))
        state, listing = State(), VertexListing(lookback=86400.0, full_every=600.0)
        try:
            await listing.tick(state, clients.vertex)
            assert listing.full_at is not None
            listing.full_at -= 601.0
            calls.clear()
            await listing.tick(state, clients.vertex)
            assert calls == {"ListCustomJobs": 1}  # the whole lookback, in one page
        finally:
            await clients.aclose()
