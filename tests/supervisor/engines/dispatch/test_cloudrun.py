"""Cloud Run RunJob and CancelExecution against the Cloud Run stand-in, over gRPC."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from launch_supervisor.clients import build_clients
from launch_supervisor.engines.dispatch.cloudrun import DispatchRefusedError, DispatchUnknownError
from launch_supervisor.sandbox.cloudrun_server import ExecutionHandle
from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.process_launcher import ProcessLauncher
from launch_supervisor.sandbox.stack import ENTITY, launcher_job, stand_ins

pytestmark = pytest.mark.anyio


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


LINGER = """
import os, pathlib, signal, subprocess, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
pathlib.Path(sys.argv[2]).write_text(f"{os.getpid()} {child.pid}")
while True:
    time.sleep(0.05)
"""


def run_channel_client(address: str) -> Any:
    import grpc
    from google.cloud import run_v2
    from google.cloud.run_v2.services.executions.transports import ExecutionsGrpcAsyncIOTransport

    channel = grpc.aio.insecure_channel(address)
    return run_v2.ExecutionsAsyncClient(transport=ExecutionsGrpcAsyncIOTransport(channel=channel)), channel


@pytest.mark.parametrize("mode", ["exit", "ignore"])
async def test_cancel_execution_stops_the_process_group_as_cloud_run_does(mode: str, tmp_path: Path) -> None:
    """CancelExecution answers at once with an operation whose metadata is the execution; the process
    group gets SIGTERM (and SIGKILL after the grace if that did not end it); the execution then ends
    CANCELLED. A second cancel, or one of an unknown execution, has nothing to cancel."""
    import anyio

    from tests.conftest import pid_alive

    pids = tmp_path / "pids"
    launcher = ProcessLauncher(lambda h: [sys.executable, "-c", LINGER, mode, str(pids)], grace=1.0)
    async with stand_ins(["q"], behaviour=lambda w, v: launcher) as stack:
        clients = build_clients(stack.config())
        raw, channel = run_channel_client(stack.run_address)
        try:
            name = await clients.dispatcher.run(launcher_job("q"), "q", ENTITY, "d", task_timeout=60)
            with anyio.fail_after(10):
                while not pids.exists() or len(pids.read_text().split()) < 2:
                    await anyio.sleep(0.05)
            leader, child = (int(p) for p in pids.read_text().split())
            started = time.monotonic()
            operation = await raw.cancel_execution(name=name, timeout=2, retry=None)
            assert time.monotonic() - started < 0.5
            assert operation.metadata.name == name
            assert stack.cloudrun.cancels == [name]
            if mode == "ignore":  # still within the grace: listed as running, and cancelling
                [seen] = await clients.executions.list(launcher_job("q"), horizon=0)
                assert (seen.status, seen.cancelling) == ("running", True)
            with anyio.fail_after(10):
                while stack.cloudrun.status(name) != "cancelled":
                    await anyio.sleep(0.02)
            took = time.monotonic() - started
            execution = await operation.result(timeout=10)  # a test may wait; the daemon never does
            assert execution.name == name
            assert took >= 0.9 if mode == "ignore" else took < 0.9, took
            assert not pid_alive(leader)
            assert not pid_alive(child)
            [seen] = await clients.executions.list(launcher_job("q"), horizon=0)
            assert (seen.status, seen.cancelling) == ("cancelled", False)
            assert await clients.canceller.cancel(name) is False  # FAILED_PRECONDITION: it has ended
            assert await clients.canceller.cancel(launcher_job("q") + "/executions/nope") is False
            assert stack.cloudrun.cancels == [name]
        finally:
            await channel.close()
            await clients.aclose()


async def test_cancel_errors_are_raised_and_not_retried_by_the_client() -> None:
    """UNAVAILABLE on CancelExecution: one call, the error to the caller (the daemon tries next tick)."""
    from google.api_core.exceptions import ServiceUnavailable

    async with stand_ins(["q"], behaviour=lambda w, v: Hold()) as stack:
        clients = build_clients(stack.config())
        try:
            name = await clients.dispatcher.run(launcher_job("q"), "q", ENTITY, "d", task_timeout=60)
            stack.cloudrun.faults.add("CancelExecution", Fault(status="UNAVAILABLE"))
            with pytest.raises(ServiceUnavailable):
                await clients.canceller.cancel(name)
            assert stack.cloudrun.faults.calls["CancelExecution"] == 1
            assert stack.cloudrun.cancels == []
            assert await clients.canceller.cancel(name) is True
            assert stack.cloudrun.cancels == [name]
        finally:
            await clients.aclose()


class Hold:
    """Executions that stay running until cancelled."""

    async def run(self, handle: ExecutionHandle) -> None:
        import anyio

        handle.running()
        await anyio.sleep_forever()
