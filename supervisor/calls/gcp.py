"""Shared handling of Google calls: explicit deadline, bounded retry for reads, metrics, and what a
refused cancel means.

run_v2 and aiplatform_v1 methods have no default retry or deadline, and anyio cancel scopes do not
bound an in-flight grpc.aio call, so every call passes `timeout=` (it raises DeadlineExceeded) and
reads retry transient errors with `AsyncRetry` within a small overall budget.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import AsyncRetry, if_exception_type

from launch_supervisor.calls.observe import ObserveCall

T = TypeVar("T")

TRANSIENT = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError, gexc.TooManyRequests)
NOTHING_TO_CANCEL = (gexc.NotFound, gexc.FailedPrecondition)
"""How Cloud Run and Vertex AI refuse a cancel when the resource is gone or has ended."""


def read_retry(timeout: float) -> AsyncRetry:
    return AsyncRetry(
        predicate=if_exception_type(*TRANSIENT), initial=0.2, maximum=2.0, multiplier=2.0, timeout=timeout * 3
    )


async def observed(observe: ObserveCall, api: str, method: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run one call, reporting its status code and duration."""
    started = time.monotonic()
    try:
        result = await call()
    except Exception as exc:
        observe(api, method, exc.__class__.__name__, time.monotonic() - started)
        raise
    observe(api, method, "OK", time.monotonic() - started)
    return result


async def cancel_call(observe: ObserveCall, api: str, method: str, call: Callable[[], Awaitable[Any]]) -> bool:
    """One observed cancel call: True when accepted, False when there is nothing to cancel; any other
    error raises GoogleAPICallError. Not retried here: the caller asks again at its next tick."""
    try:
        await observed(observe, api, method, call)
    except NOTHING_TO_CANCEL:
        return False
    return True


async def pages(
    observe: ObserveCall, api: str, method: str, call: Callable[[str], Awaitable[Any]]
) -> AsyncGenerator[Any, None]:
    """A list call's pages, one observed call each (`call` takes the page token). The pager's own
    iteration would fetch the next pages itself, unobserved and unbounded, so each page is asked
    for here; the caller may stop early."""
    token = ""
    while True:
        pager = await observed(observe, api, method, functools.partial(call, token))
        page = pager._response  # noqa: SLF001 - the page just fetched, without fetching the next
        yield page
        token = page.next_page_token
        if not token:
            return


def seconds(value: Any) -> float | None:
    """A proto-plus timestamp (datetime or None) as epoch seconds."""
    return None if value is None else float(value.timestamp())
