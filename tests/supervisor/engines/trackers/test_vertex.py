"""Tracking launcher executions and the Vertex AI CustomJobs they create, against the stand-ins."""

from __future__ import annotations

import time

import pytest

from supervisor.clients import build_clients
from supervisor.sandbox.simulated import Plan, SimulatedLauncher
from supervisor.sandbox.stack import ENTITY, launcher_job, stand_ins

pytestmark = pytest.mark.anyio


async def test_executions_and_vertex_jobs_are_tracked() -> None:
    """Listed executions are classified; the CustomJob the launcher created is listed with its run id."""
    plans = iter([Plan(), Plan(outcome="bailout")])
    async with stand_ins(
        ["q"], behaviour=lambda w, v: SimulatedLauncher(w, v, plan=lambda n: next(plans), idle_timeout=0.3)
    ) as stack:
        stack.wandb.enqueue(ENTITY, "q")
        stack.wandb.enqueue(ENTITY, "q")
        clients = build_clients(stack.config())
        try:
            names = [await clients.dispatcher.run(launcher_job("q"), "q", ENTITY, f"d{n}", 60) for n in range(3)]
            import anyio

            await anyio.sleep(1.0)
            seen = {e.name: e.status for e in await clients.executions.list(launcher_job("q"), horizon=0)}
            assert sorted(seen.values()) == ["failed", "succeeded", "succeeded"]
            assert set(seen) == set(names)
            jobs = await clients.vertex.list(since=time.time() - 60)
            claimed = [i for i in stack.wandb.items.values() if i.state == "CLAIMED"]
            assert [j.run_id for j in jobs] == [claimed[0].run_id]
            assert await clients.vertex.list(since=time.time() + 60) == []
        finally:
            await clients.aclose()
