"""The production clients against the stand-ins, over the real wire protocols."""

from __future__ import annotations

import time

import pytest

from supervisor.clients import build_clients
from supervisor.dispatch.cloudrun import DispatchRefusedError, DispatchUnknownError
from supervisor.model.items import ItemState
from supervisor.sandbox.faults import Fault
from supervisor.sandbox.simulated import Plan, SimulatedLauncher
from supervisor.sandbox.stack import ENTITY, launcher_job, stand_ins
from supervisor.sources.wandb import WandbAuthError, WandbClient, WandbProtocolError, WandbUnavailableError

pytestmark = pytest.mark.anyio


async def test_wandb_lists_a_queue_in_one_request_and_fails_items() -> None:
    """One GraphQL request lists every item with its state; failRunQueueItem marks one FAILED."""
    async with stand_ins(["q"]) as stack:
        ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(5)]
        stack.wandb.pop(ENTITY, "q")
        clients = build_clients(stack.config())
        try:
            items = await clients.wandb.list_items(ENTITY, "q")
            assert stack.wandb.faults.calls["runQueueItems"] == 1
            assert sorted(i.id for i in items) == sorted(ids)
            assert sorted(i.state.value for i in items) == ["LEASED", "PENDING", "PENDING", "PENDING", "PENDING"]
            assert await clients.wandb.fail_item(ids[1], "Vertex said no", "run")
            assert stack.wandb.items[ids[1]].failures == [("Vertex said no", "run")]
            with pytest.raises(WandbProtocolError, match="does not exist"):
                await clients.wandb.list_items(ENTITY, "no-such-queue")
        finally:
            await clients.aclose()


async def test_wandb_auth_errors_are_not_retried() -> None:
    """A wrong key gives WandbAuthError after a single request."""
    async with stand_ins(["q"]) as stack:
        client = WandbClient(stack.wandb_url, "wrong-key", timeout=2)
        try:
            with pytest.raises(WandbAuthError, match="401"):
                await client.list_items(ENTITY, "q")
            assert stack.wandb.faults.calls["runQueueItems"] == 1
        finally:
            await client.aclose()


async def test_wandb_5xx_and_timeouts_are_retried_then_reported() -> None:
    """A 503 then success is one successful call; persistent 5xx or delays raise WandbUnavailableError."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.enqueue(ENTITY, "q")
        client = WandbClient(stack.wandb_url, stack.api_key, timeout=0.5, attempts=3)
        try:
            stack.wandb.faults.add("runQueueItems", Fault(status=503))
            assert len(await client.list_items(ENTITY, "q")) == 1
            stack.wandb.faults.add("runQueueItems", Fault(status=502), times=3)
            with pytest.raises(WandbUnavailableError, match="502"):
                await client.list_items(ENTITY, "q")
            stack.wandb.faults.add("runQueueItems", Fault(delay=1.0), times=3)
            with pytest.raises(WandbUnavailableError, match="timed out"):
                await client.list_items(ENTITY, "q")
        finally:
            await client.aclose()


async def test_run_job_returns_the_execution_name_at_once() -> None:
    """RunJob's operation metadata names the execution; the overrides reach it."""
    async with stand_ins(["q"]) as stack:
        clients = build_clients(stack.config())
        try:
            started = time.monotonic()
            name = await clients.dispatcher.run(launcher_job("q"), "q", ENTITY, "dispatch-1", task_timeout=60)
            assert time.monotonic() - started < 5
            assert name.startswith(launcher_job("q") + "/executions/launcher-q-")
            handle = stack.cloudrun.handles[name]
            assert handle.args == ["-q", "q", "-e", ENTITY, "--max-jobs", "1"]
            assert handle.env == {"LAUNCH_SUPERVISOR_DISPATCH_ID": "dispatch-1"}
            assert handle.timeout == 60
        finally:
            await clients.aclose()


async def test_run_job_errors_say_whether_an_execution_may_exist() -> None:
    """UNAVAILABLE or a deadline: unknown (never retried); NOT_FOUND: refused."""
    async with stand_ins(["q"]) as stack:
        clients = build_clients(stack.config())
        try:
            stack.cloudrun.faults.add("RunJob", Fault(status="UNAVAILABLE"))
            with pytest.raises(DispatchUnknownError):
                await clients.dispatcher.run(launcher_job("q"), "q", ENTITY, "d", 60)
            assert stack.cloudrun.faults.calls["RunJob"] == 1
            stack.cloudrun.faults.add("RunJob", Fault(delay=3.0))
            with pytest.raises(DispatchUnknownError, match="DeadlineExceeded"):
                await clients.dispatcher.run(launcher_job("q"), "q", ENTITY, "d", 60)
            with pytest.raises(DispatchRefusedError, match="NotFound"):
                await clients.dispatcher.run(launcher_job("nope"), "q", ENTITY, "d", 60)
        finally:
            await clients.aclose()


async def test_executions_and_vertex_jobs_are_tracked() -> None:
    """Listed executions are classified; the CustomJob the launcher created is listed with its run id."""
    plans = iter([Plan(), Plan(outcome="bailout")])
    async with stand_ins(
        ["q"], behaviour=lambda w, v: SimulatedLauncher(w, v, plan=lambda n: next(plans), idle_timeout=0.3)
    ) as stack:
        stack.wandb.enqueue(ENTITY, "q")
        stack.wandb.enqueue(ENTITY, "q")
        clients = build_clients(stack.config())
        try:
            names = [await clients.dispatcher.run(launcher_job("q"), "q", ENTITY, f"d{n}", 60) for n in range(3)]
            import anyio

            await anyio.sleep(1.0)
            seen = {e.name: e.status for e in await clients.executions.list(launcher_job("q"), horizon=0)}
            assert sorted(seen.values()) == ["failed", "succeeded", "succeeded"]
            assert set(seen) == set(names)
            jobs = await clients.vertex.list(since=time.time() - 60)
            claimed = [i for i in stack.wandb.items.values() if i.state == "CLAIMED"]
            assert [j.run_id for j in jobs] == [claimed[0].run_id]
            assert await clients.vertex.list(since=time.time() + 60) == []
        finally:
            await clients.aclose()


async def test_google_read_errors_are_retried_within_the_call() -> None:
    """A transient UNAVAILABLE on a read is retried by the client, invisibly to the caller."""
    async with stand_ins(["q"]) as stack:
        clients = build_clients(stack.config())
        try:
            stack.cloudrun.faults.add("ListExecutions", Fault(status="UNAVAILABLE"))
            assert await clients.executions.list(launcher_job("q"), horizon=0) == []
            assert stack.cloudrun.faults.calls["ListExecutions"] == 2
        finally:
            await clients.aclose()


def test_item_state_parsing() -> None:
    """Unknown item states are skipped rather than crashing the poll."""
    assert ItemState.parse("claimed") is ItemState.CLAIMED
    assert ItemState.parse("FINISHED") is None
