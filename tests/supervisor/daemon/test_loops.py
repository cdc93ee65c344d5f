"""A loop's record: wake-ups are never lost, failing steps are logged when they change."""

from __future__ import annotations

import anyio
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from supervisor.daemon.loops import Loop
from supervisor.engines.sources.wandb import WandbUnavailableError
from supervisor.surface.metrics import Metrics

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
