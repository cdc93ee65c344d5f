"""Shared handling of Google calls: reads retried within the call, every call reported to metrics."""

from __future__ import annotations

import pytest

from launch_supervisor.clients import build_clients
from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.stack import launcher_job, stand_ins

pytestmark = pytest.mark.anyio


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


async def test_every_failed_google_call_is_reported_by_its_class_then_raised() -> None:
    """A Google API error and any other exception alike reach the metrics hook with their class name."""
    from google.api_core.exceptions import PermissionDenied

    from launch_supervisor.calls.gcp import observed

    reported: list[tuple[str, str, str]] = []

    def observe(api: str, method: str, code: str, seconds: float) -> None:
        reported.append((api, method, code))

    async def denied() -> int:
        raise PermissionDenied("no")

    async def broken() -> int:
        raise ValueError("bad answer")

    async def fine() -> int:
        return 1

    with pytest.raises(PermissionDenied):
        await observed(observe, "cloudrun", "CancelExecution", denied)
    with pytest.raises(ValueError, match="bad answer"):
        await observed(observe, "vertex", "ListCustomJobs", broken)
    assert await observed(observe, "vertex", "ListCustomJobs", fine) == 1
    assert reported == [
        ("cloudrun", "CancelExecution", "PermissionDenied"),
        ("vertex", "ListCustomJobs", "ValueError"),
        ("vertex", "ListCustomJobs", "OK"),
    ]
