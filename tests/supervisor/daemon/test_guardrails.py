"""The daemon over the stand-ins: a CustomJob held for lack of capacity past max_queued, or running past
max_runtime, is cancelled once and its item failed once; a queue whose day's spend reached its
daily_budget starts nothing new, says why in /status, and its costs are counted."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
import pytest

from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher
from launch_supervisor.sandbox.stack import ENTITY, Stack, stand_ins
from launch_supervisor.sandbox.vertex_server import VertexStandIn
from launch_supervisor.sandbox.wandb_server import WandbStandIn
from tests.supervisor.daemon.test_shell import metric, running, scrape, until

pytestmark = pytest.mark.anyio

MACHINE = "n1-standard-4"
"""The simulated launcher's machine: priced in the shipped example ($0.21849885 per hour)."""


def launcher(plan: Plan) -> Callable[[WandbStandIn, VertexStandIn], SimulatedLauncher]:
    return lambda w, v: SimulatedLauncher(w, v, plan=lambda n: plan)


def only_job(stack: Stack) -> str:
    [name] = stack.vertex.jobs
    return name


async def test_a_job_held_for_capacity_past_max_queued_is_cancelled_and_its_item_failed_once() -> None:
    """The stand-in has no capacity for the job's machine: cancelled at max_queued, its item failed once."""
    async with stand_ins(["q"], behaviour=launcher(Plan(runs_for=60.0))) as stack:
        stack.vertex.no_capacity.add(MACHINE)
        item = stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config("max_queued = 1.5")) as (_daemon, url):
            await until(lambda: stack.wandb.items[item].state == "FAILED", what="the item failed", timeout=20)
            await anyio.sleep(1.0)  # several more Vertex ticks
            name = only_job(stack)
            assert stack.vertex.cancels == [name]
            assert stack.vertex.jobs[name].job.state.name == "JOB_STATE_CANCELLED"
            assert not stack.vertex.jobs[name].job.start_time  # it never ran
            [(message, stage)] = stack.wandb.items[item].failures
            assert message.startswith("waited ")
            assert message.endswith(" s for capacity; CustomJob cancelled")
            assert 1.5 <= float(message.split()[1]) <= 5
            assert stage == "run"
            text = await scrape(url)
            assert metric(text, "launch_supervisor_vertex_cancels_total", queue="q", reason="max_queued") == 1
            assert (
                metric(text, "launch_supervisor_items_failed_by_supervisor_total", queue="q", reason="max_queued") == 1
            )
            assert metric(text, "launch_supervisor_vertex_admission_wait_seconds_count", queue="q") == 0


async def test_a_job_running_past_max_runtime_is_cancelled_and_its_item_failed_once() -> None:
    """A job that would run a minute is cancelled a second into its run; its cost and admission counted."""
    async with stand_ins(["q"], behaviour=launcher(Plan(runs_for=60.0))) as stack:
        item = stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config("max_runtime = 1")) as (_daemon, url):
            await until(lambda: stack.wandb.items[item].state == "FAILED", what="the item failed", timeout=20)
            await anyio.sleep(1.0)
            name = only_job(stack)
            assert stack.vertex.cancels == [name]
            [(message, _stage)] = stack.wandb.items[item].failures
            assert message.endswith("past the queue's max_runtime of 1 s; CustomJob cancelled"), message
            text = await scrape(url)
            assert metric(text, "launch_supervisor_vertex_cancels_total", queue="q", reason="max_runtime") == 1
            assert metric(text, "launch_supervisor_vertex_cancels_total", queue="q", reason="max_queued") == 0
            assert metric(text, "launch_supervisor_vertex_admission_wait_seconds_count", queue="q") == 1
            assert metric(text, "launch_supervisor_vertex_cost_dollars_total", queue="q") > 0


async def test_a_queue_over_its_daily_budget_starts_nothing_and_says_why() -> None:
    """One job costs about 0.00006 $ a second: a budget of 0.0001 $ is spent within two seconds of
    its running. The second item then waits, /status says why, the gauge says so; the running job is
    left alone."""
    async with stand_ins(["q"], behaviour=launcher(Plan(runs_for=8.0))) as stack:
        first = stack.wandb.enqueue(ENTITY, "q")
        async with running(stack.config("daily_budget = 0.0001")) as (daemon, url):
            queue = daemon.state.queues["q"]
            await until(lambda: queue.spending.over(0.0001), what="the budget spent", timeout=20)
            second = stack.wandb.enqueue(ENTITY, "q")
            await anyio.sleep(2.0)  # several queue polls and reconciles
            assert stack.wandb.items[second].state == "PENDING"
            assert len(stack.cloudrun.executions) == 1
            async with httpx.AsyncClient() as client:
                cost = (await client.get(url + "/status")).json()["queues"]["q"]["cost"]
            assert cost["over_budget"] is True
            assert cost["held"].startswith("over budget: $0.00")
            assert cost["daily_budget"] == 0.0001
            assert stack.vertex.cancels == []  # the running job is not touched
            assert stack.wandb.items[first].state == "CLAIMED"
            text = await scrape(url)
            assert metric(text, "launch_supervisor_queue_over_budget", queue="q") == 1
            assert metric(text, "launch_supervisor_queue_spend_last_day_dollars", queue="q") >= 0.0001
            # the launcher's execution ended at submission: 2 vCPU (the stand-in's limits) at 0.000018 $/s
            assert 0 < metric(text, "launch_supervisor_launcher_cost_dollars_total", queue="q") < 0.001
            assert metric(text, "launch_supervisor_vertex_cost_dollars_total", queue="q") > 0
