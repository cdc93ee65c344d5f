"""W&B faults: errors, a revoked key, malformed answers, a queue that disappears, a lease that returns."""

from __future__ import annotations

import json
import time

import anyio
import pytest

from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher
from launch_supervisor.sandbox.stack import ENTITY, stand_ins
from tests.faults.harness import Record, record_figures, settle, wait
from tests.supervisor.daemon.test_shell import running

pytestmark = pytest.mark.anyio
AREA = "W&B"


async def test_bursts_of_5xx_and_timeouts(record: Record) -> None:
    """Polls answered 502/503 and slower than the 2 s deadline, during a burst: every item runs once."""
    async with stand_ins(["q"]) as stack:
        for status in (502, 503, 500):
            stack.wandb.faults.add("GetRunQueueItems", Fault(status=status), times=3)
        stack.wandb.faults.add("GetRunQueueItems", Fault(delay=3.0), times=2)
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(10)]
        async with running(stack.config()):
            await wait(lambda: not stack.wandb.faults.planned["GetRunQueueItems"], timeout=30)
            recover = await settle(stack, ids)
    fig = record_figures(record, stack, ids, recover, area=AREA, scenario="bursts of 5xx and timeouts on the poll")
    assert fig.max_executions_per_item == 1


async def test_a_401_in_the_middle_of_a_run(record: Record) -> None:
    """The key is revoked mid-burst: polling that queue stops, loudly; once the key works again and
    the config is reloaded, polling resumes and the rest of the burst runs, each item once."""
    async with stand_ins(["q"]) as stack:
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(4)]
        config = stack.config("max_inflight = 2")
        async with running(config) as (daemon, _):
            await wait(lambda: len(stack.vertex.jobs) >= 1)
            stack.wandb.api_key = "revoked"
            await wait(lambda: daemon.state.stopped.get("q") == "auth")
            ids += [stack.wandb.enqueue(ENTITY, "q") for _ in range(4)]
            stack.wandb.api_key = stack.api_key
            fixed = time.monotonic()
            daemon.reload(config)  # what SIGHUP does, after the operator fixed the key
            await settle(stack, ids)
            recover = time.monotonic() - fixed
    record_figures(record, stack, ids, recover, area=AREA, scenario="a 401 mid-run, then the key fixed and reloaded")


MALFORMED = (
    '{"data": {"project": ',  # not JSON
    "[]",  # JSON, not an object
    '{"data": {"project": {"runQueue": {"runQueueItems": {"edges": [{"node": {"id": 7}}]}}}}}',  # wrong types
    '{"data": {"project": {"runQueue": {}}}}',  # missing fields
    json.dumps({"data": {"project": {"runQueue": {"runQueueItems": {"edges": [{"node": None}]}}}}}),
    '{"errors": [{"message": "internal"}]}',
)


async def test_malformed_answers(record: Record) -> None:
    """Bodies that are not JSON, not objects, of the wrong types or missing fields: each poll that
    gets one fails, is counted, and the next one works; nothing is dispatched on a bad answer."""
    async with stand_ins(["q"]) as stack:
        for body in MALFORMED:
            stack.wandb.faults.add("GetRunQueueItems", Fault(body=body))
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(5)]
        async with running(stack.config()) as (daemon, _):
            await wait(lambda: not stack.wandb.faults.planned["GetRunQueueItems"])
            recover = await settle(stack, ids)
            failures = daemon.metrics.loop_failures.labels("queue")._value.get()  # noqa: SLF001
    record_figures(record, stack, ids, recover, area=AREA, scenario="malformed JSON, missing fields, wrong types")
    assert failures >= len(MALFORMED) - 1  # a node of the wrong type may only drop that node


async def test_a_queue_that_disappears(record: Record) -> None:
    """The queue is deleted (W&B answers runQueue: null) and later recreated with new items: the
    daemon logs and counts, carries on, and runs the new items once each."""
    async with stand_ins(["q"]) as stack:
        first = [stack.wandb.enqueue(ENTITY, "q") for _ in range(3)]
        async with running(stack.config()) as (daemon, _):
            await settle(stack, first)
            hidden = {i: stack.wandb.items.pop(i) for i in first}
            stack.wandb.known_queues.discard("q")
            missing = daemon.metrics.listings_incomplete.labels("q", "queue_missing")
            await wait(lambda: missing._value.get() > 0)  # noqa: SLF001
            stack.wandb.items.update(hidden)
            back = time.monotonic()
            second = [stack.wandb.enqueue(ENTITY, "q") for _ in range(3)]
            await settle(stack, first + second)
            recover = time.monotonic() - back
    record_figures(record, stack, first + second, recover, area=AREA, scenario="the queue disappears, then comes back")


async def test_an_item_stuck_in_leased_returns_and_runs(record: Record) -> None:
    """An agent pops an item and dies before acking it: the lease runs out, the item is PENDING again
    and the next execution takes it; nothing waits for the dead one beyond its claim timeout."""

    def launcher(w: object, v: object) -> SimulatedLauncher:
        return SimulatedLauncher(w, v, plan=lambda n: Plan(outcome="vanish" if n == 0 else "submit"))  # type: ignore[arg-type]

    async with stand_ins(["q"], behaviour=launcher, lease_timeout=1.0) as stack:
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(3)]
        async with running(stack.config("claim_timeout = 2")):
            started = time.monotonic()
            await settle(stack, ids)
            recover = time.monotonic() - started
    fig = record_figures(
        record, stack, ids, recover, area=AREA, scenario="an item stuck LEASED (the lease returns after 1 s)"
    )
    assert fig.max_executions_per_item == 2  # the vanished one, then the one that ran it
    await anyio.sleep(0)
