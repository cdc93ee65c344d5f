"""The daemon's HTTP surface: /metrics, /healthz, /readyz, /status, and POST /resume/QUEUE.

/healthz says the loops are ticking; /readyz that the clients exist and every queue has been polled
and its executions listed once. /status is JSON for people and `launch-supervisor status`. Resume
changes state, so it answers only to loopback clients.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class Surface(Protocol):
    registry: CollectorRegistry

    def healthy(self) -> tuple[bool, str]: ...

    def is_ready(self) -> bool: ...

    def status(self) -> dict[str, Any]: ...

    def resume(self, queue: str) -> str | None:
        """Close the queue's breaker; the previous state, or None for an unknown queue."""


def _loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def make_app(surface: Surface) -> Starlette:
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(surface.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        ok, detail = surface.healthy()
        return JSONResponse({"ok": ok, "detail": detail}, status_code=200 if ok else 503)

    async def readyz(request: Request) -> Response:
        ready = surface.is_ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def status(request: Request) -> Response:
        return JSONResponse(surface.status())

    async def resume(request: Request) -> Response:
        if not _loopback(request):
            return JSONResponse({"error": "resume is accepted from loopback only"}, status_code=403)
        queue = request.path_params["queue"]
        previous = surface.resume(queue)
        if previous is None:
            return JSONResponse({"error": f"no queue named {queue!r}"}, status_code=404)
        return JSONResponse({"queue": queue, "breaker": "closed", "was": previous})

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/status", status),
            Route("/resume/{queue}", resume, methods=["POST"]),
        ]
    )
