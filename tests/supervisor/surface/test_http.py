"""The HTTP surface: resume answers only on loopback, and says so when it refuses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from launch_supervisor.surface.http import make_app

pytestmark = pytest.mark.anyio


class Surface:
    """The four questions the app asks, answered plainly; `resumed` records what resume did."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.resumed: list[str] = []

    def healthy(self) -> tuple[bool, str]:
        return True, "ticking"

    def is_ready(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"queues": {}}

    def resume(self, queue: str) -> str | None:
        self.resumed.append(queue)
        return "open" if queue == "q" else None


async def post(surface: Surface, client: tuple[str, int], path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=make_app(surface), client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://supervisor") as http:
        return await http.post(path)


async def test_resume_from_another_host_is_refused_with_the_reason() -> None:
    """A POST from outside this machine changes nothing and says resume is loopback only."""
    surface = Surface()
    for client in (("203.0.113.5", 40000), ("2001:db8::1", 40000), ("not-an-address", 1)):
        response = await post(surface, client, "/resume/q")
        assert response.status_code == 403
        assert response.json() == {"error": "resume is accepted from loopback only"}
    assert surface.resumed == []


async def test_resume_from_loopback_closes_the_breaker_or_names_the_unknown_queue() -> None:
    """IPv4 and IPv6 loopback are accepted; an unknown queue is a 404 that names it."""
    surface = Surface()
    assert (await post(surface, ("127.0.0.1", 1), "/resume/q")).json() == {
        "queue": "q",
        "breaker": "closed",
        "was": "open",
    }
    missing = await post(surface, ("::1", 1), "/resume/nope")
    assert (missing.status_code, missing.json()) == (404, {"error": "no queue named 'nope'"})
    assert surface.resumed == ["q", "nope"]
