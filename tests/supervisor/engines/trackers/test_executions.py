"""Listing a launcher job's executions against the Cloud Run stand-in, at the size of a job with a
long history."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import run_v2

from launch_supervisor.clients import build_clients
from launch_supervisor.sandbox.stack import launcher_job, stand_ins

pytestmark = pytest.mark.anyio
C = run_v2.Condition


def execution(job: str, n: int, finished_ago: float | None) -> run_v2.Execution:
    """An execution of `job` created `finished_ago + 30` seconds ago: finished `finished_ago` seconds
    ago (SUCCEEDED), or still running (None)."""
    now = datetime.now(UTC)
    created = now - timedelta(seconds=(finished_ago or 0.0) + 30)
    found = run_v2.Execution(
        name=f"{job}/executions/launcher-q-{n:06d}",
        uid=str(uuid.uuid4()),
        create_time=created,
        start_time=created + timedelta(seconds=5),
        task_count=1,
    )
    if finished_ago is None:
        found.running_count = 1
    else:
        done = now - timedelta(seconds=finished_ago)
        found.completion_time = done
        found.succeeded_count = 1
        found.conditions = [C(type_="Completed", state=C.State.CONDITION_SUCCEEDED, last_transition_time=done)]
    return found


async def test_a_long_history_costs_two_small_pages() -> None:
    """3,000 finished executions, one every 2 s, and 3 running: a listing with a 60 s horizon reads two
    pages of 100 (the second all history) and returns the 3 running and the 29 recent ones."""
    async with stand_ins(["q"]) as stack:
        job = launcher_job("q")
        history = [execution(job, n, finished_ago=2.0 * (3000 - n)) for n in range(3000)]
        running = [execution(job, 3000 + n, finished_ago=None) for n in range(3)]
        stack.cloudrun.executions.update((e.name, e) for e in [*history, *running])
        calls: Counter[str] = Counter()
        clients = build_clients(stack.config(), lambda api, method, code, seconds: calls.update([method]))
        try:
            now = datetime.now(UTC).timestamp()
            seen = await clients.executions.list(job, now - 60.0)
        finally:
            await clients.aclose()
    assert calls == {"ListExecutions": 2}
    assert sorted(s.status for s in seen) == ["running"] * 3 + ["succeeded"] * 29
