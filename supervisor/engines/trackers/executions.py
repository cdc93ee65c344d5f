"""Tracking launcher executions: one paged ListExecutions per launcher job per tick.

ListExecutions has no filter (docs/architecture.md, Google clients), so everything is filtered
here. The listing comes newest first, so paging stops at the first page whose executions are all
finished and older than the horizon: the number of calls follows the number of executions in
flight or recently finished, and only grows past a page of them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from google.cloud import run_v2

from launch_supervisor.calls.gcp import pages, read_retry, seconds
from launch_supervisor.calls.observe import ObserveCall, ignore_call
from launch_supervisor.model.observations import ExecutionSeen

PAGE_SIZE = 100
"""Executions per page. A tick reads the pages up to the first with nothing in flight or recent, so
the last page read is all history. Cloud Run keeps a job's latest 1,000 executions and any of the
last seven days (its "Execute jobs" page), so with pages of 1,000 every tick of a busy launcher
parsed 2,000 executions to find a few dozen; with pages of 100 it parses about 200, in the same two
calls, until more than 100 are in flight or recent."""
C = run_v2.Condition


def classify(execution: Any) -> str:
    """pending | running | succeeded | failed | cancelled, from the Completed condition
    (docs/architecture.md, Google clients)."""
    for condition in execution.conditions:
        if condition.type_ != "Completed":
            continue
        if condition.state == C.State.CONDITION_SUCCEEDED:
            return "succeeded"
        if condition.state == C.State.CONDITION_FAILED:
            if condition.execution_reason == C.ExecutionReason.CANCELLED:
                return "cancelled"
            return "failed"
    if execution.start_time is not None or execution.running_count > 0:
        return "running"
    return "pending"


def cancelling(execution: Any) -> bool:
    """A cancel is under way: some condition has the reason CANCELLING until the execution ends."""
    return any(c.execution_reason == C.ExecutionReason.CANCELLING for c in execution.conditions)


def _message(execution: Any) -> str:
    return next((c.message for c in execution.conditions if c.type_ == "Completed"), "")


class ExecutionsTracker:
    def __init__(
        self, executions: run_v2.ExecutionsAsyncClient, timeout: float, observe: ObserveCall = ignore_call
    ) -> None:
        self._client = executions
        self._timeout = timeout
        self._observe = observe

    async def list(self, job: str, horizon: float) -> list[ExecutionSeen]:
        """Executions of `job` that are unfinished, or finished after `horizon` (epoch seconds)."""
        seen: list[ExecutionSeen] = []

        def call(token: str) -> Awaitable[Any]:
            request = run_v2.ListExecutionsRequest(parent=job, page_size=PAGE_SIZE, page_token=token)
            return self._client.list_executions(request=request, timeout=self._timeout, retry=read_retry(self._timeout))

        async for page in pages(self._observe, "cloudrun", "ListExecutions", call):
            recent = False
            for execution in page.executions:
                status = classify(execution)
                finished = seconds(execution.completion_time)
                if status in ("pending", "running") or (finished or 0) >= horizon:
                    recent = True
                    seen.append(
                        ExecutionSeen(
                            name=execution.name,
                            status=status,
                            created=seconds(execution.create_time) or 0.0,
                            started=seconds(execution.start_time),
                            finished=finished,
                            message=_message(execution),
                            cancelling=status in ("pending", "running") and cancelling(execution),
                        )
                    )
            if not recent:
                break  # newest first: nothing older is in flight or recent
        return seen
