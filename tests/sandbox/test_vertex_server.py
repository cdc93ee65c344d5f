"""The Vertex stand-in's CancelCustomJob, reached with the production client class over gRPC: CANCELLING
then CANCELLED with error code 1, never driven on to its planned end; FAILED_PRECONDITION for a job
that has ended, NOT_FOUND for an unknown one. And the sandbox's training code: the run a job starts
in W&B and ends with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import aiplatform_v1
from google.cloud.aiplatform_v1.services.job_service.transports.grpc_asyncio import JobServiceGrpcAsyncIOTransport
from google.rpc import code_pb2

from launch_supervisor.clients import build_clients
from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher, custom_job, training_code
from launch_supervisor.sandbox.stack import ENTITY, launcher_job, stand_ins
from launch_supervisor.sandbox.vertex_server import Schedule, VertexStandIn
from launch_supervisor.sandbox.wandb_server import WandbStandIn

pytestmark = pytest.mark.anyio
S: Any = aiplatform_v1.JobState
LONG = Schedule(pending=0.0, running=0.0, done=3600.0)
"""Jobs that run at once and for an hour: only a cancel ends them within a test."""


@asynccontextmanager
async def served(vertex: VertexStandIn) -> AsyncIterator[aiplatform_v1.JobServiceAsyncClient]:
    """The stand-in on a loopback port, reached as the daemon reaches a loopback endpoint."""
    async with anyio.create_task_group() as tg:
        address = await tg.start(vertex.serve)
        channel = grpc.aio.insecure_channel(address)
        try:
            yield aiplatform_v1.JobServiceAsyncClient(transport=JobServiceGrpcAsyncIOTransport(channel=channel))
        finally:
            await channel.close()
            tg.cancel_scope.cancel()


def job(vertex: VertexStandIn, run_id: str = "r1", *args: str) -> str:
    return str(vertex.create(custom_job("q", f"item-{run_id}", run_id, entity="team", args=args)).name)


async def test_a_cancelled_job_is_cancelling_then_cancelled_with_code_1() -> None:
    vertex = VertexStandIn(schedule=LONG, cancel_delay=3600.0)
    async with served(vertex) as client:
        name = job(vertex)
        assert (await client.get_custom_job(name=name)).state == S.JOB_STATE_RUNNING
        await client.cancel_custom_job(name=name)  # Empty: nothing to read
        cancelling = await client.get_custom_job(name=name)
        assert cancelling.state == S.JOB_STATE_CANCELLING
        assert not cancelling.end_time
        assert vertex.cancels == [name]
    vertex.advance(datetime.now(UTC) + timedelta(seconds=3601))
    cancelled = vertex.jobs[name].job
    assert cancelled.state == S.JOB_STATE_CANCELLED
    assert cancelled.error.code == code_pb2.CANCELLED == 1
    assert cancelled.end_time


async def test_with_no_delay_a_cancelled_job_is_cancelled_at_the_next_read() -> None:
    vertex = VertexStandIn(schedule=LONG, cancel_delay=0.0)
    async with served(vertex) as client:
        name = job(vertex)
        await client.cancel_custom_job(name=name)
        [listed] = (await client.list_custom_jobs(parent="projects/123456/locations/us-central1")).custom_jobs
    assert listed.state == S.JOB_STATE_CANCELLED
    assert listed.error.code == code_pb2.CANCELLED


async def test_a_cancelled_job_never_reaches_its_planned_end() -> None:
    """Past its schedule's end it stays CANCELLING, then CANCELLED: not SUCCEEDED, not FAILED."""
    vertex = VertexStandIn(schedule=Schedule(pending=0.0, running=0.0, done=0.5), cancel_delay=3600.0)
    vertex.fail_runs["r2"] = "it would have failed"
    names = [job(vertex, "r1"), job(vertex, "r2")]
    vertex.advance()
    for name in names:
        assert vertex.cancel(name) is None
    later = datetime.now(UTC) + timedelta(seconds=60)
    vertex.advance(later)
    assert {vertex.jobs[n].job.state for n in names} == {S.JOB_STATE_CANCELLING}
    vertex.advance(later + timedelta(seconds=3600))
    assert {vertex.jobs[n].job.state for n in names} == {S.JOB_STATE_CANCELLED}


async def test_a_job_that_has_ended_cannot_be_cancelled_an_unknown_one_is_not_found() -> None:
    vertex = VertexStandIn(schedule=Schedule(pending=0.0, running=0.0, done=0.0))
    async with served(vertex) as client:
        name = job(vertex)
        assert (await client.get_custom_job(name=name)).state == S.JOB_STATE_SUCCEEDED
        with pytest.raises(gexc.FailedPrecondition, match="JOB_STATE_SUCCEEDED"):
            await client.cancel_custom_job(name=name)
        with pytest.raises(gexc.NotFound):
            await client.cancel_custom_job(name="projects/123456/locations/us-central1/customJobs/1")
    assert vertex.cancels == []
    assert vertex.jobs[name].job.state == S.JOB_STATE_SUCCEEDED


async def test_a_cancelled_job_cancelled_again_is_accepted_and_counted() -> None:
    """A second cancel while CANCELLING changes nothing, but is recorded (to assert `cancelled once`)."""
    vertex = VertexStandIn(schedule=LONG, cancel_delay=3600.0)
    async with served(vertex) as client:
        name = job(vertex)
        await client.cancel_custom_job(name=name)
        first = vertex.jobs[name].cancelled_at
        await client.cancel_custom_job(name=name)
    assert vertex.cancels == [name, name]
    assert vertex.jobs[name].cancelled_at == first
    assert vertex.jobs[name].job.state == S.JOB_STATE_CANCELLING


async def test_a_late_fault_on_cancel_loses_the_answer_not_the_cancel() -> None:
    vertex = VertexStandIn(schedule=LONG, cancel_delay=3600.0)
    vertex.faults.add("CancelCustomJob", Fault(status="UNAVAILABLE", late=True))
    async with served(vertex) as client:
        name = job(vertex)
        with pytest.raises(gexc.ServiceUnavailable):
            await client.cancel_custom_job(name=name, retry=None)
    assert vertex.faults.calls["CancelCustomJob"] == 1
    assert vertex.jobs[name].job.state == S.JOB_STATE_CANCELLING


async def test_a_container_may_run_longer_than_the_schedule() -> None:
    vertex = VertexStandIn(schedule=Schedule(pending=0.0, running=0.0, done=0.1))
    short, long = job(vertex, "r1"), job(vertex, "r2", "--sandbox-run-for=30")
    vertex.advance(datetime.now(UTC) + timedelta(seconds=10))
    assert vertex.jobs[short].job.state == S.JOB_STATE_SUCCEEDED
    assert vertex.jobs[long].job.state == S.JOB_STATE_RUNNING
    vertex.advance(datetime.now(UTC) + timedelta(seconds=31))
    assert vertex.jobs[long].job.state == S.JOB_STATE_SUCCEEDED


def watched(schedule: Schedule) -> tuple[WandbStandIn, VertexStandIn]:
    wandb = WandbStandIn("key")
    vertex = VertexStandIn(schedule=schedule, cancel_delay=0.0)
    vertex.watch = training_code(wandb, vertex)
    return wandb, vertex


async def test_the_training_code_starts_its_run_when_the_job_runs_and_ends_it_with_the_job() -> None:
    wandb, vertex = watched(Schedule(pending=0.0, running=1.0, done=2.0))
    now = datetime.now(UTC)
    ok, stopped = job(vertex, "r1"), job(vertex, "r2")
    assert wandb.runs == {}
    vertex.advance(now + timedelta(seconds=1.5))
    key = ("team", "uncategorized", "r1")
    assert wandb.runs[key].state == "running"
    assert ("team", "uncategorized") in wandb.projects
    assert wandb.stop_run("r2")
    vertex.advance(now + timedelta(seconds=1.6))
    assert vertex.jobs[stopped].job.state == S.JOB_STATE_RUNNING  # the code ignores the stop
    assert vertex.cancel(stopped) is None
    vertex.advance(now + timedelta(seconds=3))
    assert vertex.jobs[ok].job.state == S.JOB_STATE_SUCCEEDED
    assert vertex.jobs[stopped].job.state == S.JOB_STATE_CANCELLED
    assert [(r.state, r.stopped) for r in wandb.runs_named("r1")] == [("finished", False)]
    assert [(r.state, r.stopped) for r in wandb.runs_named("r2")] == [("killed", True)]


async def test_a_container_that_fails_before_wandb_init_starts_no_run() -> None:
    wandb, vertex = watched(Schedule(pending=0.0, running=0.0, done=1.0))
    name = job(vertex, "r1", "--sandbox-exit=1")
    vertex.advance()
    assert vertex.jobs[name].job.state == S.JOB_STATE_RUNNING
    vertex.advance(datetime.now(UTC) + timedelta(seconds=2))
    assert vertex.jobs[name].job.state == S.JOB_STATE_FAILED
    assert wandb.runs == {}


async def test_a_simulated_launcher_s_job_carries_the_run_s_whereabouts_and_may_run_long() -> None:
    """The simulated agent's CustomJob has the run's entity and project in its env, as the real
    agent's has; a plan's `runs_for` keeps it running past the schedule, its run in W&B with it."""
    async with stand_ins(
        ["q"], behaviour=lambda w, v: SimulatedLauncher(w, v, plan=lambda n: Plan(runs_for=30), idle_timeout=0.3)
    ) as stack:
        stack.vertex.schedule = Schedule(pending=0.0, running=0.0, done=0.1)
        item_id = stack.wandb.enqueue(ENTITY, "q", {"project": "train"})
        clients = build_clients(stack.config())
        try:
            await clients.dispatcher.run(launcher_job("q"), "q", ENTITY, "d0", 60)
            with anyio.fail_after(10):
                while not stack.wandb.runs:
                    await anyio.sleep(0.05)
            await anyio.sleep(0.3)
        finally:
            await clients.aclose()
        [tracked] = stack.vertex.jobs.values()
        env = {e.name: e.value for e in tracked.job.job_spec.worker_pool_specs[0].container_spec.env}
        run_id = stack.wandb.run_of(item_id)
        assert run_id is not None
        assert env["WANDB_ENTITY"] == ENTITY
        assert env["WANDB_PROJECT"] == "train"
        assert tracked.job.state == S.JOB_STATE_RUNNING
        assert stack.wandb.runs[(ENTITY, "train", run_id)].state == "running"


async def test_list_takes_the_documented_filter_grammar_and_refuses_the_rest() -> None:
    """ListCustomJobsRequest.filter (aiplatform_v1/types/job_service.py): display_name, state (= and
    !=), create_time and labels, with AND, OR (tighter than AND) and NOT; update_time, end_time and
    parentheses are refused with INVALID_ARGUMENT, as are unknown states and bad read masks."""
    vertex = VertexStandIn(schedule=Schedule(pending=0.0, running=0.0, done=0.0))
    parent = "projects/123456/locations/us-central1"
    async with served(vertex) as client:
        first, second = job(vertex, "r1"), job(vertex, "r2")
        vertex.cancel_delay = 3600.0
        running = job(vertex, "r3", "--sandbox-run-for=3600")

        async def names(query: str) -> list[str]:
            request = aiplatform_v1.ListCustomJobsRequest(parent=parent, filter=query)
            return [j.name for j in (await client.list_custom_jobs(request=request)).custom_jobs]

        assert await names('state!="JOB_STATE_SUCCEEDED"') == [running]
        assert await names('state="JOB_STATE_SUCCEEDED" AND labels.wandb-run-id="r1"') == [first]
        assert await names('labels.wandb-run-id="r1" OR labels.wandb-run-id="r2"') == [first, second]
        assert await names('NOT labels.wandb-run-id="r1" AND display_name:"q-*"') == [second, running]
        assert await names('create_time>"2000-01-01T00:00:00Z" AND display_name="q-r3"') == [running]
        for refused in (
            'update_time>"2000-01-01T00:00:00Z"',
            'end_time<"2030-01-01T00:00:00Z"',
            'state>"JOB_STATE_RUNNING"',
            'state="JOB_STATE_DONE"',
            '(state="JOB_STATE_RUNNING")',
            'create_time>"yesterday"',
        ):
            with pytest.raises(gexc.InvalidArgument):
                await names(refused)
        with pytest.raises(gexc.InvalidArgument):
            await client.list_custom_jobs(
                request=aiplatform_v1.ListCustomJobsRequest(parent=parent, read_mask={"paths": ["no_such_field"]})
            )
