"""Runs stopped in W&B: stop status unreadable for a while, CancelCustomJob failing or losing its
answer. Each stopped run's CustomJob is cancelled, each item failed once, none twice."""

from __future__ import annotations

import pytest

from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher
from launch_supervisor.sandbox.stack import ENTITY, Stack, stand_ins
from launch_supervisor.sandbox.summary import jobs_by_item
from launch_supervisor.sandbox.vertex_server import VertexStandIn
from launch_supervisor.sandbox.wandb_server import WandbStandIn
from tests.faults.harness import Record, record_figures, settle, wait
from tests.supervisor.daemon.test_shell import running

pytestmark = pytest.mark.anyio
AREA = "Runs stopped in W&B"
STOPPED = "stopped in W&B; CustomJob cancelled"


def long_jobs(w: WandbStandIn, v: VertexStandIn) -> SimulatedLauncher:
    """Every job runs ten minutes unless cancelled: its training code ignores a stop."""
    return SimulatedLauncher(w, v, plan=lambda n: Plan(runs_for=600.0))


async def stop_every_run(stack: Stack, ids: list[str]) -> None:
    """Once each item's job runs and its code started its run: stop the run, as from the W&B UI."""
    await wait(
        lambda: all(stack.wandb.run_of(i) and stack.wandb.runs_named(stack.wandb.run_of(i) or "") for i in ids), 60
    )
    for item in ids:
        assert stack.wandb.stop_run(stack.wandb.run_of(item) or "")


def assert_each_item_failed_once_with_the_stop(stack: Stack, ids: list[str]) -> None:
    jobs = jobs_by_item(stack)
    for item in ids:
        assert stack.wandb.items[item].failures == [(STOPPED, "run")], item
        [job] = jobs[item]
        assert job.state.name == "JOB_STATE_CANCELLED", item


async def test_stop_status_unreadable_for_a_while(record: Record) -> None:
    """Six runs stopped while RunStopStatus answers 500 (three calls of three attempts), then
    malformed answers (three): nothing is cancelled on no answer; once W&B answers, each job is
    cancelled once and each item failed once."""
    async with stand_ins(["q"], behaviour=long_jobs) as stack:
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(6)]
        async with running(stack.config("stop_grace = 1\nmax_inflight = 6")) as (daemon, _):
            await stop_every_run(stack, ids)
            stack.wandb.faults.add("RunStopStatus", Fault(status=500), times=9)
            stack.wandb.faults.add("RunStopStatus", Fault(body='{"data": {"project": {"runs": 7}}}'), times=3)
            await wait(lambda: not stack.wandb.faults.planned["RunStopStatus"], timeout=30)
            recover = await settle(stack, ids)
            cancels = daemon.metrics.vertex_cancels.labels("q", "run_stopped")._value.get()  # noqa: SLF001
    record_figures(record, stack, ids, recover, area=AREA, scenario="stop status failing, then malformed")
    assert_each_item_failed_once_with_the_stop(stack, ids)
    assert sorted(stack.vertex.cancels) == sorted(set(stack.vertex.cancels))
    assert cancels == 6


async def test_cancel_failing_then_its_answer_lost(record: Record) -> None:
    """Four runs stopped; CancelCustomJob answers UNAVAILABLE three times, then twice takes effect
    but loses its answer (DEADLINE_EXCEEDED): every job ends CANCELLED, every item is failed once
    with the stop's message, and every cancel is counted once."""
    async with stand_ins(["q"], behaviour=long_jobs) as stack:
        stack.vertex.faults.add("CancelCustomJob", Fault(status="UNAVAILABLE"), times=3)
        stack.vertex.faults.add("CancelCustomJob", Fault(status="DEADLINE_EXCEEDED", late=True), times=2)
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(4)]
        async with running(stack.config("stop_grace = 1")) as (daemon, _):
            await stop_every_run(stack, ids)
            await wait(lambda: not stack.vertex.faults.planned["CancelCustomJob"], timeout=30)
            recover = await settle(stack, ids)
            cancels = daemon.metrics.vertex_cancels.labels("q", "run_stopped")._value.get()  # noqa: SLF001
    record_figures(record, stack, ids, recover, area=AREA, scenario="CancelCustomJob failing, then answers lost")
    assert_each_item_failed_once_with_the_stop(stack, ids)
    assert cancels == 4
    assert stack.wandb.faults.calls["failRunQueueItem"] == 4
