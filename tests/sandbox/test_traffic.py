"""The sandbox's traffic: which items a scenario enqueues, in what order and at what pace, against the
W&B stand-in's state (nothing is served)."""

from __future__ import annotations

import time

import anyio
import pytest

from supervisor.sandbox import traffic
from supervisor.sandbox.wandb_server import WandbStandIn

ENTITY = "team"
QUEUE = "q"


def test_mixed_alternates_good_items_and_each_failure_in_turn() -> None:
    names = [kind.name for kind in traffic.kinds("mixed", 13)]
    failures = [kind.name for kind in traffic.FAILURES]
    assert names[0::2] == ["ok"] * 7
    assert names[1::2] == failures + failures[:1]


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
