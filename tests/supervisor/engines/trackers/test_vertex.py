"""Tracking launcher executions and the Vertex AI CustomJobs they create, against the stand-ins."""

from __future__ import annotations

import time

import pytest

from launch_supervisor.clients import build_clients
from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher
from launch_supervisor.sandbox.stack import ENTITY, launcher_job, stand_ins

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
    from launch_supervisor.sandbox.simulated import custom_job

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


async def test_the_live_listing_leaves_ended_jobs_out_and_get_reads_one() -> None:
    """`live` lists every labelled job not in an end state, however old, and none of the thousands
    that ended; `get` reads one job, and answers None for one Vertex AI no longer has."""
    from launch_supervisor.sandbox.simulated import agent_job, custom_job

    async with stand_ins(["q"]) as stack:
        stack.vertex.schedule.done = 3600.0
        stack.vertex.preload(agent_job("q", f"old-{n}", f"old-{n}", ENTITY) for n in range(1500))
        running = stack.vertex.create(custom_job("q", "item-1", "run-1", entity=ENTITY))
        clients = build_clients(stack.config())
        try:
            [live] = await clients.vertex.live()
            assert (live.name, live.item_id) == (running.name, "item-1")
            everything = await clients.vertex.list(since=time.time() - 86400)
            assert len(everything) == 1501  # two pages of 1,000
            failed = [j for j in everything if j.state.value == "FAILED"]
            assert len(failed) == 150
            assert all(j.error and j.ended for j in failed)
            old = await clients.vertex.get(failed[0].name)
            assert old == failed[0]
            assert await clients.vertex.get(running.name.rsplit("/", 1)[0] + "/404") is None
        finally:
            await clients.aclose()


async def test_a_listing_asks_only_for_the_fields_it_reads() -> None:
    """The read mask keeps what the model and cost need (env, machines, times, scheduling) and drops
    the rest of the job (its display name, its image's command)."""
    from google.cloud import aiplatform_v1

    from launch_supervisor.engines.trackers.vertex import READ_MASK
    from launch_supervisor.sandbox.simulated import custom_job

    async with stand_ins(["q"]) as stack:
        stack.vertex.create(custom_job("q", "item-1", "run-1", entity=ENTITY))
        clients = build_clients(stack.config())
        try:
            request = aiplatform_v1.ListCustomJobsRequest(
                parent=f"projects/{stack.vertex.project_number}/locations/{stack.vertex.region}", read_mask=READ_MASK
            )
            [job] = (await clients.vertex._client.list_custom_jobs(request=request)).custom_jobs  # noqa: SLF001
            assert job.display_name == ""
            pool = job.job_spec.worker_pool_specs[0]
            assert pool.machine_spec.machine_type == "n1-standard-4"
            assert pool.replica_count == 1
            assert {e.name for e in pool.container_spec.env} >= {"WANDB_RUN_ID", "WANDB_LAUNCH_TRACE_ID"}
            assert job.create_time
            assert job.labels["wandb-run-id"] == "run-1"
        finally:
            await clients.aclose()


def test_the_parse_reads_start_time_and_what_a_job_costs_by() -> None:
    """start_time and, per worker pool, machine type, replicas and accelerators; SPOT scheduling; an
    empty pool kept in its position; an accelerator type newer than the client named by its number
    (so it is unpriced, never guessed). The raw message, as the tracker parses it."""
    from datetime import UTC, datetime

    from google.cloud import aiplatform_v1

    from launch_supervisor.engines.trackers.vertex import parse_job
    from launch_supervisor.model.vertex import Hardware, Pool

    started = datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)
    chief = aiplatform_v1.WorkerPoolSpec(
        machine_spec=aiplatform_v1.MachineSpec(
            machine_type="n1-standard-8", accelerator_type="NVIDIA_L4", accelerator_count=2
        ),
        replica_count=1,
    )
    workers = aiplatform_v1.WorkerPoolSpec(
        machine_spec=aiplatform_v1.MachineSpec(
            machine_type="n1-standard-8", accelerator_type="NVIDIA_L4", accelerator_count=2
        ),
        replica_count=3,
    )
    job = aiplatform_v1.CustomJob(
        name="projects/1/locations/us-central1/customJobs/7",
        state=aiplatform_v1.JobState.JOB_STATE_RUNNING,
        create_time=datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC),
        start_time=started,
        job_spec=aiplatform_v1.CustomJobSpec(
            worker_pool_specs=[chief, aiplatform_v1.WorkerPoolSpec(), workers],
            scheduling=aiplatform_v1.Scheduling(strategy=aiplatform_v1.Scheduling.Strategy.SPOT),
        ),
    )
    seen = parse_job(aiplatform_v1.CustomJob.pb(job))
    assert seen.started == started.timestamp()
    l4 = ("NVIDIA_L4", 2)
    assert seen.hardware == Hardware(
        (Pool("n1-standard-8", 1, *l4), Pool("", 0), Pool("n1-standard-8", 3, *l4)), spot=True
    )
    raw = aiplatform_v1.CustomJob.pb(job)
    raw.job_spec.worker_pool_specs[0].machine_spec.accelerator_type = 9999  # a type the pinned client lacks
    raw.job_spec.scheduling.strategy = 0
    seen = parse_job(raw)
    assert seen.hardware is not None
    assert seen.hardware.pools[0].accelerator_type == "accelerator type 9999"
    assert not seen.hardware.spot
    queued = aiplatform_v1.CustomJob(name="x", create_time=datetime(2026, 12, 7, tzinfo=UTC))
    assert parse_job(aiplatform_v1.CustomJob.pb(queued)).started is None
