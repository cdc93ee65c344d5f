"""Cloud Run faults: RunJob answers lost or refused, listings failing or paged oddly, executions that
time out, are cancelled, or vanish."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher
from launch_supervisor.sandbox.stack import ENTITY, stand_ins
from tests.faults.harness import Record, record_figures, settle, wait
from tests.supervisor.daemon.test_shell import running

pytestmark = pytest.mark.anyio
AREA = "Cloud Run"


def planned(*outcomes: str) -> Callable[[Any, Any], SimulatedLauncher]:
    """A launcher whose n-th claiming execution follows outcomes[n] (then `submit`)."""

    def make(w: Any, v: Any) -> SimulatedLauncher:
        return SimulatedLauncher(w, v, plan=lambda n: Plan(outcome=outcomes[n] if n < len(outcomes) else "submit"))

    return make


async def test_runjob_answers_lost_after_the_execution_was_created(record: Record) -> None:
    """RunJob creates the execution, then its answer is lost: 429, 503, or past the deadline. Each
    item still gets one execution and one CustomJob; an unknown result is never retried blindly."""
    async with stand_ins(["q"]) as stack:
        for status in ("RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED"):
            stack.cloudrun.faults.add("RunJob", Fault(status=status, late=True))
        stack.cloudrun.faults.add("RunJob", Fault(delay=3.0, late=True))  # past the 2 s deadline
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(6)]
        async with running(stack.config("max_inflight = 2")):
            recover = await settle(stack, ids, timeout=60)
    fig = record_figures(
        record, stack, ids, recover, area=AREA, scenario="RunJob 429/503/deadline after creating the execution"
    )
    assert fig.max_executions_per_item == 1


async def test_runjob_refused_for_good_then_fixed(record: Record) -> None:
    """PERMISSION_DENIED on every RunJob: nothing runs and nothing is lost (the items wait, the
    breaker opens); once the permission is granted and the queue resumed, every item runs once."""
    async with stand_ins(["q"]) as stack:
        stack.cloudrun.faults.add("RunJob", Fault(status="PERMISSION_DENIED"), times=10_000)
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(4)]
        async with running(stack.config()) as (daemon, _):
            await wait(lambda: daemon.state.queues["q"].breaker.state.value == "open", timeout=30)
            waiting = [i for i in ids if stack.wandb.items[i].state == "PENDING"]
            stack.cloudrun.faults.planned["RunJob"].clear()
            daemon.resume("q")
            recover = await settle(stack, ids)
    record_figures(
        record, stack, ids, recover, area=AREA, scenario="RunJob refused for good (PERMISSION_DENIED), then fixed"
    )
    assert waiting == ids  # while refused, every item waited, none was lost


async def test_listings_failing_and_paged_one_by_one(record: Record) -> None:
    """ListExecutions fails ten times in a row, and answers one execution per page throughout."""
    async with stand_ins(["q"]) as stack:
        stack.cloudrun.page_cap = 1
        stack.cloudrun.faults.add("ListExecutions", Fault(status="UNAVAILABLE"), times=10)
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(8)]
        async with running(stack.config("max_inflight = 3")):
            await wait(lambda: not stack.cloudrun.faults.planned["ListExecutions"], timeout=30)
            recover = await settle(stack, ids, timeout=60)
    record_figures(
        record, stack, ids, recover, area=AREA, scenario="ListExecutions failing, then one execution per page"
    )


async def test_executions_that_time_out_are_cancelled_or_vanish(record: Record) -> None:
    """Three executions take their item and never submit: one runs into its task timeout, one is
    cancelled by someone else, one is deleted. None keeps its slot, and their items, left CLAIMED,
    are failed as stranded; the other items run once each."""
    async with stand_ins(["q"], behaviour=planned("hang", "hang", "hang")) as stack:
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(6)]
        settings = "max_inflight = 3\nexecution_timeout = 3\nstranded_after = 4"
        async with running(stack.config(settings)) as (daemon, _):
            await wait(lambda: sum(1 for i in ids if stack.wandb.items[i].state == "CLAIMED") >= 3)
            hung = sorted(stack.cloudrun.handles)[:3]
            cancelled, deleted = hung[1], hung[2]
            stack.cloudrun.mark_cancelling(cancelled)
            stack.cloudrun.handles[cancelled].cancel_scope.cancel()
            stack.cloudrun.handles[deleted].cancel_scope.cancel()
            stack.cloudrun.handles[deleted].finished = True
            del stack.cloudrun.executions[deleted]
            recover = await settle(stack, ids, timeout=60)
            stranded = daemon.metrics.items_failed.labels("q", "stranded")._value.get()  # noqa: SLF001
    record_figures(record, stack, ids, recover, area=AREA, scenario="executions time out, are cancelled, vanish")
    assert stranded == 3
