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


async def test_a_listed_job_says_where_its_run_lives_and_cancel_says_whether_it_took() -> None:
    """The listing carries the run's entity and project from the container env; CancelCustomJob is
    accepted for a running job, and answered False (nothing to cancel) once it ended or for no job."""
    from supervisor.sandbox.simulated import custom_job

    async with stand_ins(["q"]) as stack:
        stack.vertex.cancel_delay = 0.0
        job = stack.vertex.create(custom_job("q", "item-1", "run-1", entity=ENTITY, project="proj"))
        clients = build_clients(stack.config())
        try:
            [seen] = await clients.vertex.list(since=time.time() - 60)
            assert (seen.run_id, seen.item_id, seen.entity, seen.project) == ("run-1", "item-1", ENTITY, "proj")
            assert seen.launch_queue == (ENTITY, "q")
            assert await clients.vertex.cancel(job.name) is True
            [seen] = await clients.vertex.list(since=time.time() - 60)
            assert (seen.state.value, seen.error) == ("CANCELLED", "CustomJob was cancelled.")
            assert await clients.vertex.cancel(job.name) is False  # ended: FAILED_PRECONDITION
            assert await clients.vertex.cancel(job.name.replace(job.name.rsplit("/", 1)[1], "404")) is False
            assert stack.vertex.cancels == [job.name]
        finally:
            await clients.aclose()
