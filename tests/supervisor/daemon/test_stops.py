"""The daemon over the stand-ins: a run stopped in W&B has its CustomJob cancelled, once, after the
grace; the job's end fails the item; W&B failing to answer changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher
from launch_supervisor.sandbox.stack import ENTITY, Stack, stand_ins
from launch_supervisor.sandbox.vertex_server import VertexStandIn
from launch_supervisor.sandbox.wandb_server import WandbStandIn
from tests.supervisor.daemon.test_shell import metric, running, scrape, until

pytestmark = pytest.mark.anyio

LONG = Plan(runs_for=60.0)
"""A job that runs a minute unless cancelled: its training code ignores a stop."""


def launcher(plan: Plan = LONG) -> Callable[[WandbStandIn, VertexStandIn], SimulatedLauncher]:
    return lambda w, v: SimulatedLauncher(w, v, plan=lambda n: plan)


async def running_run(stack: Stack, item: str) -> str:
    """The item's run, once its CustomJob runs and its code started the run in W&B."""
    await until(lambda: any(r.state == "running" for r in stack.wandb.runs.values()), what="the run started")
    run_id = stack.wandb.run_of(item)
    assert run_id is not None
    return run_id


def job_of(stack: Stack, run_id: str) -> str:
    [name] = [n for n, t in stack.vertex.jobs.items() if t.job.labels.get("wandb-run-id") == run_id]
    return name


async def test_a_stopped_run_has_its_job_cancelled_once_and_its_item_failed_once() -> None:
    async with stand_ins(["q"], behaviour=launcher()) as stack:
        item = stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config("stop_grace = 1")) as (_daemon, url):
            run_id = await running_run(stack, item)
            assert stack.wandb.stop_run(run_id)
            await until(lambda: stack.wandb.items[item].state == "FAILED", what="the item failed", timeout=20)
            await anyio.sleep(1.0)  # several more Vertex ticks
            name = job_of(stack, run_id)
            assert stack.vertex.cancels == [name]
            assert stack.vertex.jobs[name].job.state.name == "JOB_STATE_CANCELLED"
            assert stack.wandb.items[item].failures == [("stopped in W&B; CustomJob cancelled", "run")]
            assert stack.wandb.faults.calls["failRunQueueItem"] == 1
            text = await scrape(url)
            assert metric(text, "launch_supervisor_vertex_cancels_total", queue="q", reason="run_stopped") == 1
            labels = {"queue": "q", "reason": "run_stopped"}
            assert metric(text, "launch_supervisor_items_failed_by_supervisor_total", **labels) == 1


async def test_a_stopped_run_whose_job_ends_inside_the_grace_is_never_cancelled() -> None:
    """The training code's own client ends the run and the job ends by itself: nothing to cancel."""
    async with stand_ins(["q"], behaviour=launcher(Plan(runs_for=5.0))) as stack:
        item = stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config("stop_grace = 30")) as (_daemon, url):
            run_id = await running_run(stack, item)
            assert stack.wandb.stop_run(run_id)
            name = job_of(stack, run_id)
            await until(lambda: stack.vertex.jobs[name].job.state.name == "JOB_STATE_SUCCEEDED", timeout=20)
            calls = stack.wandb.faults.calls["RunStopStatus"]
            await anyio.sleep(1.5)  # several more Vertex ticks
            assert calls >= 1  # the run was asked about while its job ran
            assert stack.wandb.faults.calls["RunStopStatus"] == calls  # and no more once it ended
            assert stack.vertex.cancels == []
            assert stack.wandb.items[item].state == "CLAIMED"
            text = await scrape(url)
            assert metric(text, "launch_supervisor_vertex_cancels_total", queue="q", reason="run_stopped") == 0


async def test_w_and_b_errors_while_reading_stop_status_change_nothing() -> None:
    """W&B answers 500s, then garbage, while the run is stopped: no cancel, no item failed, the daemon
    carries on; once W&B answers again, the job is cancelled."""
    async with stand_ins(["q"], behaviour=launcher()) as stack:
        item = stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config("stop_grace = 0.5")) as (daemon, url):
            run_id = await running_run(stack, item)
            stack.wandb.faults.add("RunStopStatus", Fault(status=500), times=9)  # three calls of 3 attempts
            stack.wandb.faults.add("RunStopStatus", Fault(body='{"data": {"project": {"runs": 7}}}'), times=3)
            assert stack.wandb.stop_run(run_id)
            await until(lambda: not stack.wandb.faults.planned["RunStopStatus"], what="the faults used", timeout=30)
            assert stack.vertex.cancels == []
            assert stack.wandb.items[item].state == "CLAIMED"
            assert all(job.stopped_since is None for job in daemon.state.vertex_jobs.values())
            await until(lambda: bool(stack.vertex.cancels), what="the cancel once W&B answers", timeout=20)
            await until(lambda: stack.wandb.items[item].state == "FAILED", what="the item failed", timeout=20)
            text = await scrape(url)
            assert metric(text, "launch_supervisor_vertex_cancels_total", queue="q", reason="run_stopped") == 1
            assert metric(text, "launch_supervisor_loop_failures_total", loop="vertex") == 0


async def test_a_queue_with_the_switch_off_is_left_alone() -> None:
    async with stand_ins(["q"], behaviour=launcher(Plan(runs_for=6.0))) as stack:
        item = stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config("stop_grace = 0.2\ncancel_stopped_runs = false")):
            run_id = await running_run(stack, item)
            assert stack.wandb.stop_run(run_id)
            await anyio.sleep(1.5)
            assert stack.wandb.faults.calls["RunStopStatus"] == 0
            assert stack.vertex.cancels == []


async def test_a_job_cancelled_elsewhere_fails_its_item_with_vertex_s_message() -> None:
    """Cancelled in the Google console or with gcloud: the item is failed too, once."""
    async with stand_ins(["q"], behaviour=launcher()) as stack:
        item = stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config()) as (_daemon, url):
            run_id = await running_run(stack, item)
            assert stack.vertex.cancel(job_of(stack, run_id)) is None
            await until(lambda: stack.wandb.items[item].state == "FAILED", what="the item failed", timeout=20)
            await anyio.sleep(1.0)
            assert stack.wandb.items[item].failures == [("CustomJob was cancelled.", "run")]
            assert stack.wandb.faults.calls["failRunQueueItem"] == 1
            text = await scrape(url)
            labels = {"queue": "q", "reason": "vertex_job_ended"}
            assert metric(text, "launch_supervisor_items_failed_by_supervisor_total", **labels) == 1
            assert metric(text, "launch_supervisor_vertex_cancels_total", queue="q", reason="run_stopped") == 0


async def test_a_job_whose_item_the_queue_listing_does_not_show_is_cancelled_all_the_same() -> None:
    """A CustomJob whose item is not in the queue's listing (past its first page) is never linked to
    an item; its env names the queue, so its stopped run still gets it cancelled, under that queue."""
    from launch_supervisor.sandbox.simulated import custom_job
    from launch_supervisor.sandbox.vertex_server import RUN_FOR_ARG

    async with stand_ins(["q"]) as stack:
        stack.wandb.start_run(ENTITY, "sandbox", "run-unlisted")
        job = stack.vertex.create(
            custom_job("q", "unlisted", "run-unlisted", entity=ENTITY, project="sandbox", args=[f"{RUN_FOR_ARG}60"])
        )
        async with running(stack.config("stop_grace = 0.5")) as (daemon, url):
            await until(lambda: job.name in daemon.state.vertex_jobs, what="the job listed")
            assert daemon.state.vertex_jobs[job.name].queue is None
            assert stack.wandb.stop_run("run-unlisted")
            await until(lambda: stack.vertex.cancels == [job.name], what="the job cancelled")
            text = await scrape(url)
            assert metric(text, "launch_supervisor_vertex_cancels_total", queue="q", reason="run_stopped") == 1
