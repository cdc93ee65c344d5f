"""A loop's record: wake-ups are never lost, failing steps are logged when they change."""

from __future__ import annotations

import itertools

import anyio
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from launch_supervisor.daemon.loops import Loop
from launch_supervisor.engines.sources.wandb import WandbUnavailableError
from launch_supervisor.surface.metrics import Metrics

pytestmark = pytest.mark.anyio


async def test_a_poke_while_busy_ends_the_next_nap_at_once() -> None:
    """A wake-up that came during a step is not lost: the following nap returns immediately."""
    loop, stopping = Loop("vertex", interval=60.0), anyio.Event()
    loop.poke()
    with anyio.fail_after(1):
        await loop.nap(60.0, stopping)
    with anyio.move_on_after(0.05) as waited:
        await loop.nap(60.0, stopping)
    assert waited.cancelled_caught  # the wake-up was used up


async def test_a_persisting_error_is_logged_once_counted_each_time_then_its_recovery() -> None:
    """The same error at every tick: one line, every failure counted, one line when it ends."""
    metrics = Metrics("test", CollectorRegistry())
    loop = Loop("queue", "q", interval=1.0)

    async def fails() -> None:
        raise WandbUnavailableError("503 after retries")

    async def works() -> None:
        pass

    with capture_logs() as logs:
        for _ in range(3):
            await loop.step(metrics, fails, step="reconcile")
        await loop.step(metrics, works, step="reconcile")
    assert [(e["event"], e["loop"]) for e in logs] == [
        ("loop.failed", "reconcile:q"),
        ("loop.recovered", "reconcile:q"),
    ]
    assert metrics.registry.get_sample_value("launch_supervisor_loop_failures_total", {"loop": "reconcile"}) == 3


async def test_a_loop_is_late_after_three_intervals_unless_it_is_inactive() -> None:
    """/healthz fails for a loop that stopped ticking; one that was stopped on purpose is not late."""
    loop = Loop("executions", "q", interval=1.0)
    assert loop.late(100.0, slack=0.0) is None  # never ticked: starting
    await loop.step(Metrics("test", CollectorRegistry()), _nothing)
    assert loop.last_tick is not None
    assert loop.late(loop.last_tick + 2.9, slack=0.0) is None
    assert loop.late(loop.last_tick + 10.0, slack=0.0) == "executions:q has not ticked for 10s"
    loop.active = False
    assert loop.late(loop.last_tick + 10.0, slack=0.0) is None


async def _nothing() -> None:
    pass


def test_hints_inside_the_gap_share_one_listing() -> None:
    """The first hint makes a listing due once `min_gap` has passed since the latest one; those that
    come while it is due coalesce into it; a hint during the listing asks for the next."""
    loop = Loop("vertex", interval=15.0, min_gap=1.0)
    loop.listing(100.0)
    next_tick = 115.0
    assert not loop.due(next_tick, 100.5)
    assert loop.hint() is False  # the first asks
    assert [loop.hint() for _ in range(99)] == [True] * 99  # the rest share it
    assert not loop.due(next_tick, 100.5)
    assert loop.until(next_tick) == 101.0
    assert loop.due(next_tick, 101.0)
    loop.listing(101.0)
    assert loop.until(next_tick) == next_tick
    assert loop.hint() is False  # came during the listing: the next one is due a gap later
    assert loop.until(next_tick) == 102.0
    assert loop.due(next_tick, 115.0)  # the interval still holds without hints


async def test_a_flood_of_hints_lists_at_most_once_per_gap() -> None:
    """100 hints a second reach a running loop: over the flood, at most (its length / min_gap) + 1
    listings after the one at start, never two within the gap, and every hint that found one
    already due is counted."""
    metrics = Metrics("test", CollectorRegistry())
    loop, stopping = Loop("executions", "q", interval=60.0, min_gap=0.5), anyio.Event()
    listings: list[float] = []

    async def step() -> None:
        listings.append(anyio.current_time())

    asked = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(loop.run, metrics, step, lambda: not stopping.is_set(), stopping)
        await anyio.sleep(0.1)  # its listing at start
        started = anyio.current_time()
        for _ in range(200):
            if loop.hint():
                metrics.hints_coalesced.labels("executions").inc()
            else:
                asked += 1
            await anyio.sleep(0.01)
        flood = anyio.current_time() - started
        stopping.set()
        loop.poke()
    hinted = listings[1:]
    assert 1 <= len(hinted) <= flood / 0.5 + 1
    assert all(b - a >= 0.5 for a, b in itertools.pairwise(listings))
    assert asked - (1 if loop.hinted else 0) == len(hinted)
    coalesced = metrics.registry.get_sample_value("launch_supervisor_hints_coalesced_total", {"loop": "executions"})
    assert coalesced == 200 - asked
