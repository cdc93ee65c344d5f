"""Vertex AI faults: listings failing, jobs that vanish, EXPIRED and CANCELLED jobs, a job that
names no known item."""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.cloud import aiplatform_v1

from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.simulated import custom_job
from launch_supervisor.sandbox.stack import ENTITY, stand_ins
from launch_supervisor.sandbox.vertex_server import Schedule
from tests.faults.harness import Record, record_figures, settle, wait
from tests.supervisor.daemon.test_shell import running

pytestmark = pytest.mark.anyio
AREA = "Vertex AI"
S = aiplatform_v1.JobState


async def test_listings_failing(record: Record) -> None:
    """ListCustomJobs fails ten times in a row during a burst: dispatch goes on; jobs are linked
    once the listing answers again."""
    async with stand_ins(["q"]) as stack:
        stack.vertex.faults.add("ListCustomJobs", Fault(status="INTERNAL"), times=10)
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(8)]
        async with running(stack.config()) as (daemon, _):
            await wait(lambda: not stack.vertex.faults.planned["ListCustomJobs"], timeout=30)
            back = time.monotonic()
            await settle(stack, ids)
            await wait(lambda: len(daemon.state.vertex_jobs) == len(ids))
            recover = time.monotonic() - back
    record_figures(record, stack, ids, recover, area=AREA, scenario="ListCustomJobs failing")


async def test_jobs_ending_expired_cancelled_or_vanishing(record: Record) -> None:
    """Of six jobs, one ends EXPIRED, one CANCELLED, one is deleted while running: their three items
    are failed, once each, with the reason; the other three succeed."""
    async with stand_ins(["q"]) as stack:
        stack.vertex.schedule = Schedule(done=3.0)
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(6)]
        async with running(stack.config()) as (daemon, _):
            await wait(lambda: len(stack.vertex.jobs) == 6 and len(daemon.state.vertex_jobs) == 6)
            expired, cancelled, deleted = sorted(stack.vertex.jobs)[:3]
            for name, state in ((expired, S.JOB_STATE_EXPIRED), (cancelled, S.JOB_STATE_CANCELLED)):
                job = stack.vertex.jobs[name].job
                job.state = state
                job.end_time = job.create_time
            del stack.vertex.jobs[deleted]
            recover = await settle(stack, ids)
            failed = daemon.metrics.items_failed.labels("q", "vertex_job_ended")._value.get()  # noqa: SLF001
    record_figures(record, stack, ids, recover, area=AREA, scenario="jobs EXPIRED, CANCELLED, or deleted while running")
    assert failed == 3
    assert sum(1 for i in ids if stack.wandb.items[i].state == "FAILED") == 3


async def test_a_job_that_names_no_known_item(record: Record) -> None:
    """A CustomJob labelled with a run and trace id nobody queued, FAILED: ignored (no item to fail,
    nothing counted against the queue), while the burst beside it runs."""
    async with stand_ins(["q"]) as stack:
        stranger = custom_job("q", "no-such-item", "no-such-run")
        stack.vertex.fail_runs["no-such-run"] = "someone else's job failed"
        stack.vertex.create(stranger)
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(4)]
        async with running(stack.config()) as (daemon, _):
            recover = await settle(stack, ids)
            unlinked = [j for j in daemon.state.vertex_jobs.values() if j.queue is None]
    record_figures(record, stack, ids, recover, area=AREA, scenario="a job whose labels name no known item")
    assert len(unlinked) == 1
    assert stack.wandb.faults.calls["failRunQueueItem"] == 0


async def test_jobs_that_end_between_two_live_listings(record: Record) -> None:
    """Every CustomJob has ended by the time any listing shows it (the stand-in ends a job at its
    first read), so no live listing ever shows one: the listing of jobs created since the previous
    tick finds them ended, with no GetCustomJob. The items of the half that FAILED are failed once
    each; the others succeed."""
    from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher

    error = "The replica workerpool0-0 exited with a non-zero status of 1."

    def launcher(w: Any, v: Any) -> SimulatedLauncher:
        return SimulatedLauncher(w, v, plan=lambda n: Plan(vertex_error=error if n % 2 else None), idle_timeout=0.3)

    async with stand_ins(["q"], behaviour=launcher) as stack:
        stack.vertex.schedule = Schedule(pending=0.0, running=0.0, done=0.0)
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(8)]
        async with running(stack.config()) as (daemon, _):
            recover = await settle(stack, ids)
            await wait(lambda: len(daemon.state.vertex_jobs) == len(ids))
            counter = daemon.metrics.items_failed.labels("q", "vertex_job_ended")
            # W&B may answer failRunQueueItem (the item is terminal) before the daemon counts it
            await wait(lambda: counter._value.get() >= 4)  # noqa: SLF001
            failed = counter._value.get()  # noqa: SLF001
    record_figures(record, stack, ids, recover, area=AREA, scenario="jobs that end between two live listings")
    assert failed == 4
    assert sum(1 for i in ids if stack.wandb.items[i].state == "FAILED") == 4
    assert stack.vertex.faults.calls["GetCustomJob"] == 0
