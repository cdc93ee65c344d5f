"""The real `launch-supervisor run` speaking systemd's notify protocol to a socket standing in for
systemd's: READY=1 when /readyz turns 200, WATCHDOG=1 only while the loops tick, RELOADING=1 then
READY=1 on SIGHUP, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import UNIXDatagramSocket

from launch_supervisor.sandbox.emulator import free_port
from launch_supervisor.sandbox.stack import Stack, stand_ins
from launch_supervisor.surface.asgi import serve_asgi
from tests.supervisor.test_cli import env

pytestmark = pytest.mark.anyio

WATCHDOG_USEC = 600_000
"""The daemon pings every 0.3 s."""
REQUEST_TIMEOUT = 1
"""W&B and Google request timeouts in the test config: healthy()'s slack is 3 x 1 s, so a queue loop
(interval 0.2 s) that has not ticked for 3 x 0.2 + 3 = 3.6 s fails /healthz."""


class Stalling:
    """In front of the W&B stand-in: while `stalled`, an answer starts and then trickles one space
    every 0.25 s without ending. Every read arrives within the client's 1-s timeout, so the poll
    hangs for real, as behind a stuck proxy; once un-stalled the answer ends (malformed: the poll
    fails, and the loop ticks again)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.stalled = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.stalled:
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        while self.stalled:
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await anyio.sleep(0.25)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class Notes:
    """What the daemon sent to the notify socket, in order: one string per datagram."""

    def __init__(self, sock: UNIXDatagramSocket) -> None:
        self.sock = sock
        self.messages: list[str] = []
        self.scope = anyio.CancelScope()

    async def collect(self) -> None:
        """Until `scope` is cancelled (not the test's task group: that would hide a failure)."""
        with self.scope:
            while True:
                data, _ = await self.sock.receive()
                self.messages.append(data.decode())

    def since(self, start: int, watchdog: bool = False) -> list[str]:
        """First lines of the messages from index `start` on; WATCHDOG=1 left out unless `watchdog`."""
        firsts = [m.splitlines()[0] for m in self.messages[start:]]
        return [f for f in firsts if watchdog or f != "WATCHDOG=1"]

    async def wait_for(self, first_line: str, start: int, timeout: float = 15) -> None:
        with anyio.fail_after(timeout):
            while first_line not in self.since(start, watchdog=True):
                await anyio.sleep(0.02)


async def status_of(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(url)).status_code


async def wait_status(url: str, status: int, timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while await status_of(url) != status:
            await anyio.sleep(0.05)


@pytest.mark.slow
async def test_ready_watchdog_reload_and_stop_reach_systemd(tmp_path: Path) -> None:
    """READY=1 at /readyz 200; pings only while healthy; RELOADING=1, READY=1 on SIGHUP; STOPPING=1 on SIGTERM."""
    async with stand_ins(["q"]) as stack, anyio.create_task_group() as tg:
        stack.wandb.known_queues.add("q")  # an empty queue
        stalling = Stalling(stack.wandb.app)
        host, port = await tg.start(serve_asgi, stalling, "127.0.0.1", 0)
        fronted = Stack(**{**stack.__dict__, "wandb_url": f"http://{host}:{port}"})
        listen = f"127.0.0.1:{free_port()}"
        url = f"http://{listen}"
        config = tmp_path / "config.toml"
        text = fronted.config_toml(listen=listen).replace("request_timeout = 2", f"request_timeout = {REQUEST_TIMEOUT}")
        assert text.count(f"request_timeout = {REQUEST_TIMEOUT}\n") == 2
        config.write_text(text)
        socket_path = tmp_path / "notify"
        environ = {k: v for k, v in env(stack, tmp_path).items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        environ.update(NOTIFY_SOCKET=str(socket_path), WATCHDOG_USEC=str(WATCHDOG_USEC))
        stderr = tmp_path / "stderr"  # a file, not a pipe: a full pipe would stall the daemon (and its pings)
        async with await anyio.create_unix_datagram_socket(local_path=socket_path) as sock:
            notes = Notes(sock)
            tg.start_soon(notes.collect)
            with stderr.open("wb") as err:
                process = await anyio.open_process(
                    ["launch-supervisor", "run", "--config", str(config)],
                    env=environ,
                    stderr=err,
                    start_new_session=True,
                )
            try:
                await notes.wait_for("READY=1", 0, timeout=30)
                assert await status_of(url + "/readyz") == 200
                assert notes.since(0) == ["READY=1"], "only watchdog pings before READY=1"

                # Healthy: a ping every 0.3 s.
                ready_at = len(notes.messages)
                await anyio.sleep(1.0)
                assert notes.since(ready_at, watchdog=True).count("WATCHDOG=1") >= 2

                # The queue loop's poll hangs: once /healthz fails, no more pings.
                stalling.stalled = True
                await wait_status(url + "/healthz", 503, timeout=3 * 0.2 + 3 * REQUEST_TIMEOUT + 5)
                stuck_at = len(notes.messages)
                await anyio.sleep(4 * WATCHDOG_USEC / 2e6)
                assert notes.since(stuck_at, watchdog=True) == [], "no ping while a loop is stuck"
                assert await status_of(url + "/healthz") == 503

                # Un-stuck: the pings come back.
                stalling.stalled = False
                await notes.wait_for("WATCHDOG=1", stuck_at, timeout=10)

                # SIGHUP: RELOADING=1 (with the monotonic time), then READY=1.
                before_reload = len(notes.messages)
                reload_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
                process.send_signal(signal.SIGHUP)
                await notes.wait_for("READY=1", before_reload)
                assert notes.since(before_reload) == ["RELOADING=1", "READY=1"]
                reloading = next(m for m in notes.messages[before_reload:] if m.startswith("RELOADING=1"))
                fields = dict(line.split("=", 1) for line in reloading.splitlines())
                assert int(fields["MONOTONIC_USEC"]) >= reload_usec

                # SIGTERM: STOPPING=1, then exit 0.
                before_stop = len(notes.messages)
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(15):
                    assert await process.wait() == 0
                assert notes.since(before_stop) == ["STOPPING=1"]
            except BaseException:
                print(stderr.read_text(errors="replace")[-20000:])  # shown when the test fails
                raise
            finally:
                stalling.stalled = False
                notes.scope.cancel()
                if process.returncode is None:
                    process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()
                    await process.aclose()
        tg.cancel_scope.cancel()  # the W&B front
