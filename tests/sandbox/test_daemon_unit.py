"""The daemon kept running as its systemd unit keeps it, over a stand-in daemon: a small Python server
that answers /readyz (or fails to start), so restarts take a fraction of a second."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from launch_supervisor.sandbox import daemon_unit
from launch_supervisor.sandbox.daemon_unit import DaemonUnit, ended
from launch_supervisor.sandbox.emulator import free_port
from launch_supervisor.sandbox.errors import SandboxError

pytestmark = pytest.mark.anyio

LIMIT = 20.0
"""Seconds any test here may take: a unit that never gives up fails the test rather than hanging it."""

DAEMON = """
import http.server, sys
if sys.argv[2] == "fail":
    sys.exit("listen: [Errno 98] address already in use")
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
print("listening", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ready).serve_forever()
"""


@pytest.fixture(autouse=True)
def _restart_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon_unit, "RESTART_DELAY", 0.05)


def unit(tmp_path: Path, mode: str = "serve") -> tuple[DaemonUnit, list[str]]:
    """A unit over the stand-in daemon, and what it says."""
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON)
    port = free_port()
    said: list[str] = []
    argv = [sys.executable, str(script), str(port), mode]
    env = dict(os.environ)
    return DaemonUnit(argv, env, tmp_path / "daemon.log", f"http://127.0.0.1:{port}", anyio.Event(), said.append), said


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


async def alongside(keeper: DaemonUnit, act: Callable[[], Awaitable[None]]) -> None:
    """Keep the daemon, once started and ready, while `act` acts on it; then stop it."""
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            await tg.start(keeper.keep)
            await act()
            keeper.stopping.set()
            await keeper.stop()


async def failure(keeper: DaemonUnit, act: Callable[[], Awaitable[None]] | None = None) -> str:
    """Keep the daemon, with `act` acting on it, until the unit gives up: the SandboxError's message."""
    messages: list[str] = []
    try:
        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tg:
                await tg.start(keeper.keep)
                if act is not None:
                    tg.start_soon(act)
    except* SandboxError as group:
        messages = [str(exc) for exc in group.exceptions]
    assert len(messages) == 1, "the unit did not give up"
    return messages[0]


async def kill(keeper: DaemonUnit, signum: signal.Signals = signal.SIGKILL) -> None:
    """Kill the daemon running now and wait until it is gone (or started again)."""
    process = keeper.process
    assert process is not None
    os.kill(process.pid, signum)
    await until(lambda: process.returncode is not None)


async def test_a_daemon_that_dies_is_started_again(tmp_path: Path) -> None:
    keeper, said = unit(tmp_path)
    log = tmp_path / "daemon.log"

    async def kill_twice() -> None:
        for restart in (1, 2):
            killed = keeper.process
            await kill(keeper)
            await until(lambda killed=killed: keeper.process is not killed)
            assert keeper.restarts == restart
            # Every start's output goes to the one log, appended.
            await until(lambda restart=restart: log.read_text().count("listening") == restart + 1)

    await alongside(keeper, kill_twice)
    assert said == [f"the daemon was killed by SIGKILL; starting it again in 0.05 s (see {log})"] * 2


async def test_a_clean_stop_is_not_started_again(tmp_path: Path) -> None:
    """SIGTERM from outside the sandbox: a clean exit for Restart=on-failure; the unit is done."""
    keeper, said = unit(tmp_path)
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            await tg.start(keeper.keep)
            process = keeper.process
            await kill(keeper, signal.SIGTERM)
    assert keeper.process is process
    assert keeper.restarts == 0
    assert said == ["the daemon was killed by SIGTERM, a clean stop: it is not started again"]


async def test_a_daemon_that_ends_while_the_sandbox_stops_is_not_started_again(tmp_path: Path) -> None:
    keeper, said = unit(tmp_path)
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            await tg.start(keeper.keep)
            keeper.stopping.set()
            await kill(keeper)
    assert keeper.restarts == 0
    assert said == []


async def test_a_daemon_that_keeps_dying_is_given_up_at_the_start_limit(tmp_path: Path) -> None:
    """The fifth start within 10 s is the last: a SandboxError that says why and shows the log."""
    keeper, said = unit(tmp_path)

    async def kill_every_start() -> None:
        while True:
            killed = keeper.process
            await kill(keeper)
            await until(lambda killed=killed: keeper.process is not killed)

    message = await failure(keeper, kill_every_start)
    assert message.startswith(
        "the daemon was killed by SIGKILL after 5 starts within 10 s, the systemd unit's start limit, "
        f"so it is not started again; {tmp_path / 'daemon.log'} ends:\nlistening"
    )
    assert keeper.restarts == 4
    assert len(said) == 4


async def test_a_daemon_that_cannot_start_ends_the_sandbox_with_its_log(tmp_path: Path) -> None:
    """The first start is not retried: the error shows the end of its log and, for a busy address, --http."""
    keeper, _ = unit(tmp_path, mode="fail")
    message = await failure(keeper)
    assert message == (
        f"the daemon exited with 1 on start; {tmp_path / 'daemon.log'} ends:\n"
        "listen: [Errno 98] address already in use\n"
        "(is the address already in use? choose another with --http)"
    )
    assert keeper.restarts == 0


@pytest.mark.parametrize(
    ("code", "said"),
    [(0, "exited with 0"), (1, "exited with 1"), (-9, "was killed by SIGKILL"), (-999, "exited with -999")],
)
def test_how_a_process_ended(code: int, said: str) -> None:
    assert ended(code) == said
