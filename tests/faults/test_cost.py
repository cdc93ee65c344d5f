"""Faults against the cost figures and the budget gate: the daemon killed (SIGKILL) in the middle of a
costed run and restarted by its unit. The counter must count no second twice, the 24 h spend must come
back whole from the jobs' own times, and the gate must hold dispatch across the restart. Prints the
error of the cost figure against the cost the stand-in's own start_time and end_time give."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import anyio
import httpx
import pytest

from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher
from launch_supervisor.sandbox.stack import ENTITY, stand_ins
from tests.faults.daemon_support import supervised
from tests.faults.harness import Record, record_figures, wait
from tests.supervisor.daemon.test_shell import metric

pytestmark = pytest.mark.anyio
AREA = "Cost"

RATE = 0.21849885 / 3600
"""Dollars per second of the simulated launcher's n1-standard-4 CustomJob, by the shipped example."""
BUDGET = 0.0003
"""Reached after about 5 s of the job's running."""
JOB_SECONDS = 14.0
TICK = 0.3
"""The stand-ins' vertex_interval (FAST_POLL)."""


async def sample(url: str, name: str) -> float | None:
    """One sample of the daemon's, or None while it does not answer."""
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            text = (await client.get(url + "/metrics")).text
    except httpx.HTTPError:
        return None
    return metric(text, name, queue="q")


async def test_a_restart_mid_run_neither_doubles_the_cost_nor_resets_the_budget(record: Record, tmp_path: Path) -> None:
    """SIGKILL while a costed job runs over budget: the gate holds, the spend comes back, no second counts twice."""
    async with stand_ins(
        ["q"], behaviour=lambda w, v: SimulatedLauncher(w, v, plan=lambda n: Plan(runs_for=JOB_SECONDS))
    ) as stack:
        stack.wandb.known_queues.add("q")
        first = stack.wandb.enqueue(ENTITY, "q")
        async with supervised(stack, tmp_path, f"daily_budget = {BUDGET}") as daemon:
            await wait(lambda: len(stack.vertex.jobs) == 1, timeout=30)
            [tracked] = stack.vertex.jobs.values()
            over = "launch_supervisor_queue_over_budget"
            with anyio.fail_after(30):
                while await sample(daemon.url, over) != 1:
                    await anyio.sleep(0.1)
            held = stack.wandb.enqueue(ENTITY, "q")
            await anyio.sleep(3 * TICK)
            before = await sample(daemon.url, "launch_supervisor_vertex_cost_dollars_total")
            assert before is not None
            killed = daemon.process
            killed.send_signal(signal.SIGKILL)
            at = time.monotonic()
            await daemon.restarted(killed)
            gap = time.monotonic() - at
            # The restarted daemon holds the queue from its first listing on (before it: spend_unknown).
            with anyio.fail_after(10):
                while await sample(daemon.url, over) != 1:
                    await anyio.sleep(0.05)
            await wait(lambda: tracked.job.state.name == "JOB_STATE_SUCCEEDED", timeout=60)
            await anyio.sleep(5 * TICK)  # the end seen, and several ticks more
            after = await sample(daemon.url, "launch_supervisor_vertex_cost_dollars_total")
            spend = await sample(daemon.url, "launch_supervisor_queue_spend_last_day_dollars")
            still_over = await sample(daemon.url, over)
            assert after is not None
            assert spend is not None
            assert stack.wandb.items[held].state == "PENDING"
            executions = len(stack.cloudrun.executions)
    true_cost = RATE * (tracked.job.end_time.timestamp() - tracked.job.start_time.timestamp())
    counted = before + after
    error = counted - true_cost
    lost_allowance = RATE * (gap + 4 * TICK)  # from the last scrape before the kill to the new start
    note = (
        f"true {true_cost:.6f} $, counted {counted:.6f} $ (error {error:+.6f} $, {error / true_cost:+.1%});"
        f" 24 h spend {spend:.6f} $ ({(spend - true_cost) / true_cost:+.2%}); restart took {gap:.1f} s"
    )
    print(f"\ncost figure: {note}")
    fig = record_figures(
        record,
        stack,
        [first],
        gap,
        area=AREA,
        scenario="SIGKILL mid-run of a costed job, restart",
        note=note,
    )
    assert fig.duplicates == 0
    assert executions == 1  # the held item never got an execution, before or after the restart
    assert still_over == 1
    assert counted <= true_cost + RATE * TICK  # no second counted twice (one tick of rounding)
    assert counted >= true_cost - lost_allowance  # what a restart loses, and no more
    assert abs(spend - true_cost) <= RATE * TICK  # the gate's spend came back whole
