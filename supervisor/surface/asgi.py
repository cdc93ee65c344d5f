"""Serving an ASGI app with hypercorn inside an anyio task group.

The socket is bound here, before hypercorn starts, so port 0 works and the real port is known at
once (the W&B stand-in and tests rely on it). Hypercorn gets a shutdown trigger instead of signal
handlers: the daemon owns signals. Cancelling `serve_asgi` pulls that trigger and waits (bounded) for
open connections to finish.
"""

from __future__ import annotations

import logging
import os
import socket

import anyio
from anyio.abc import TaskStatus
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import ASGIFramework

SHUTDOWN_SECONDS = 5.0


async def serve_asgi(
    app: ASGIFramework,
    host: str,
    port: int,
    *,
    task_status: TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until cancelled; reports (host, port) once listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
        config = Config()
        # Hypercorn adopts the descriptor (socket(fileno=…)) and closes it; it gets its own copy.
        config.bind = [f"fd://{os.dup(sock.fileno())}"]
        config.graceful_timeout = 1.0
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        stop, done = anyio.Event(), anyio.Event()

        async def run() -> None:
            # Shielded: hypercorn stops through its trigger, never by cancellation, which its
            # asyncio worker does not survive cleanly.
            with anyio.CancelScope(shield=True):
                try:
                    await serve(app, config, shutdown_trigger=stop.wait)
                finally:
                    done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, name=f"http {host}:{port}")
            bound = sock.getsockname()
            task_status.started((str(bound[0]), int(bound[1])))
            try:
                await anyio.sleep_forever()
            finally:
                stop.set()
                with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_SECONDS):
                    await done.wait()
    finally:
        sock.close()
