"""The sandbox's traffic: which items a scenario enqueues, in what order and at what pace, against the
W&B stand-in's state (nothing is served)."""

from __future__ import annotations

import time

import anyio
import pytest

from launch_supervisor.sandbox import traffic
from launch_supervisor.sandbox.wandb_server import WandbStandIn

ENTITY = "team"
QUEUE = "q"


def test_mixed_alternates_good_items_and_each_failure_in_turn_the_first_stopped_in_wandb() -> None:
    names = [kind.name for kind in traffic.kinds("mixed", 13)]
    failures = [kind.name for kind in traffic.FAILURES]
    assert names[0::2] == ["stopped_in_wandb"] + ["ok"] * 6
    assert names[1::2] == failures + failures[:1]
    assert traffic.kinds("mixed", 1) == [traffic.STOPPED]
    assert [k for k in traffic.kinds("mixed", 13) if k.stopped_in_wandb] == [traffic.STOPPED]


def test_happy_and_burst_are_all_good_items() -> None:
    assert traffic.kinds("happy", 3) == [traffic.OK] * 3
    assert traffic.kinds("burst", 2) == [traffic.OK] * 2


def test_an_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="happy, mixed, burst"):
        traffic.kinds("sad", 1)


def test_each_run_spec_is_a_copy_naming_its_entity_and_index() -> None:
    spec = traffic.run_spec(traffic.OK, ENTITY, 7)
    assert spec["entity"] == ENTITY
    assert spec["overrides"]["run_config"]["sandbox_item"] == 7
    assert "sandbox_item" not in traffic.OK.spec["overrides"]["run_config"]
    assert "entity" not in traffic.OK.spec


async def enqueue(
    wandb: WandbStandIn, scenario: str, items: int, every: float, stopping: anyio.Event | None = None
) -> tuple[dict[str, traffic.Kind], list[str]]:
    enqueued: dict[str, traffic.Kind] = {}
    hinted: list[str] = []
    await traffic.enqueue(
        wandb,
        ENTITY,
        QUEUE,
        scenario,
        items,
        every=every,
        enqueued=enqueued,
        stopping=stopping or anyio.Event(),
        publish=hinted.append,
    )
    return enqueued, hinted


@pytest.mark.anyio
async def test_items_are_enqueued_in_order_each_recorded_and_hinted() -> None:
    wandb = WandbStandIn("key")
    started = time.monotonic()
    enqueued, hinted = await enqueue(wandb, "mixed", 4, every=0.05)
    assert time.monotonic() - started >= 0.2  # `every` after each item
    assert list(enqueued.values()) == traffic.kinds("mixed", 4)
    assert hinted == list(enqueued)
    items = [wandb.items[item_id] for item_id in enqueued]
    assert [(i.entity, i.queue, i.state) for i in items] == [(ENTITY, QUEUE, "PENDING")] * 4
    assert [i.run_spec["overrides"]["run_config"]["sandbox_item"] for i in items] == [0, 1, 2, 3]
    assert items[1].run_spec["resource_args"] == traffic.FAILURES[0].spec["resource_args"]


@pytest.mark.anyio
async def test_a_burst_enqueues_every_item_at_once() -> None:
    wandb = WandbStandIn("key")
    with anyio.fail_after(5):
        enqueued, _ = await enqueue(wandb, "burst", 5, every=60.0)
    assert len(enqueued) == len(wandb.items) == 5


@pytest.mark.anyio
async def test_a_stopped_run_enqueues_no_more_items() -> None:
    wandb = WandbStandIn("key")
    stopping = anyio.Event()
    found: tuple[dict[str, traffic.Kind], list[str]] = ({}, [])

    async def run() -> None:
        nonlocal found
        found = await enqueue(wandb, "happy", 10, every=0.2, stopping=stopping)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(5):
            while len(wandb.items) < 2:
                await anyio.sleep(0.01)
        stopping.set()
    assert len(wandb.items) == 2
    assert len(found[0]) == 2


@pytest.mark.anyio
async def test_the_run_of_a_stopped_kind_is_stopped_once_it_exists() -> None:
    """Only the stopped kind's run, only once its job's code has started it, once; and said."""
    wandb = WandbStandIn("key")
    enqueued, _ = await enqueue(wandb, "mixed", 3, every=0.0)
    stopped_item, good_item, _ = enqueued
    for item_id, run_id in ((stopped_item, "r-stop"), (good_item, "r-good")):
        assert wandb.pop(ENTITY, QUEUE) is not None
        wandb.ack(item_id, run_id)
    stopped: dict[str, str] = {}
    said: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: traffic.stop_runs(wandb, enqueued, stopped=stopped, say=said.append, every=0.01))
        await anyio.sleep(0.05)
        assert stopped == {}  # acknowledged, but no run yet: its CustomJob has not run
        wandb.start_run(ENTITY, "sandbox", "r-good")
        wandb.start_run(ENTITY, "sandbox", "r-stop")
        with anyio.fail_after(5):
            while not stopped:
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert stopped == {stopped_item: "r-stop"}
    assert [run.stopped for run in wandb.runs_named("r-stop")] == [True]
    assert [run.stopped for run in wandb.runs_named("r-good")] == [False]
    assert said == ["stopped run r-stop in W&B; its training code ignores the stop"]


def test_the_stopped_kind_runs_well_past_the_grace() -> None:
    """Its container runs long (the Vertex stand-in's --sandbox-run-for), or the job would end first."""
    [pool] = traffic.STOPPED.spec["resource_args"]["vertex"]["spec"]["worker_pool_specs"]
    assert f"--sandbox-run-for={traffic.STOPPED_RUN_SECONDS}" in pool["container_spec"]["args"]
    assert traffic.STOPPED_RUN_SECONDS >= 30
