"""The systemd notify protocol: addresses, the watchdog interval, the messages and when they are sent."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from launch_supervisor.daemon.notify import Notifier, socket_address, watchdog_interval

pytestmark = pytest.mark.anyio


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A Unix datagram socket standing in for systemd's notify socket, and its address."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield sock, str(path)


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on `sock`, without waiting for more."""
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        sock.settimeout(5)


def test_addresses_paths_and_the_abstract_namespace() -> None:
    """A path is used as it is, `@name` is the abstract `\\0name`, anything else is no socket."""
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@sd-notify") == b"\0sd-notify"
    assert socket_address(None) is None
    assert socket_address("") is None
    assert socket_address("vsock:2:1234") is None


def test_the_watchdog_interval_is_half_of_watchdog_usec_and_for_this_process_only() -> None:
    """WATCHDOG_USEC=30 s pings every 15 s; another process's WATCHDOG_PID, 0 or garbage: no watchdog."""
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None


def test_without_notify_socket_everything_is_a_no_op() -> None:
    """No $NOTIFY_SOCKET: nothing is sent, not even the watchdog interval is kept."""
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog is None
    assert not notifier.send("READY=1")
    notifier.ready()
    notifier.stopping()


def test_messages_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    """READY, RELOADING with the monotonic time then READY, STOPPING: one datagram each."""
    sock, path = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    notifier.reloading()  # not ready yet: nothing to reload from
    notifier.ready()
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    notifier.reloaded()
    notifier.stopping()
    notifier.reloading()  # stopping: no more reloads
    messages = received(sock)
    assert [m.splitlines()[0] for m in messages] == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    usec = dict(line.split("=", 1) for line in messages[1].splitlines())["MONOTONIC_USEC"]
    assert before <= int(usec) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_the_abstract_namespace_is_reached() -> None:
    """`@name` reaches a socket bound in the abstract namespace."""
    name = f"launch-supervisor-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        Notifier.from_environ({"NOTIFY_SOCKET": f"@{name}"}).ready()
        sock.settimeout(5)
        assert sock.recv(4096).decode().splitlines()[0] == "READY=1"


def test_a_send_error_is_logged_once_and_ignored(tmp_path: Path) -> None:
    """Nobody listens: the sends fail without raising, and one warning says so."""
    notifier = Notifier(str(tmp_path / "nobody"), watchdog=0.01)
    with capture_logs() as logs:
        assert not notifier.send("WATCHDOG=1")
        notifier.ping((True, "ticking"))
        notifier.stopping()
    assert [entry["event"] for entry in logs] == ["systemd.notify_failed"]


def test_pings_only_while_healthy(listener: tuple[socket.socket, str]) -> None:
    """WATCHDOG=1 when healthy; none when not, with one error naming why; one line when it is back."""
    sock, path = listener
    notifier = Notifier(path, watchdog=1.0)
    with capture_logs() as logs:
        notifier.ping((True, "ticking"))
        notifier.ping((False, "queue:q has not ticked for 9s"))
        notifier.ping((False, "queue:q has not ticked for 24s"))
        notifier.ping((True, "ticking"))
    assert received(sock) == ["WATCHDOG=1", "WATCHDOG=1"]
    assert [(e["event"], e.get("reason")) for e in logs] == [
        ("systemd.watchdog_withheld", "queue:q has not ticked for 9s"),
        ("systemd.watchdog_resumed", None),
    ]


async def test_watch_says_ready_once_and_pings_at_the_interval(listener: tuple[socket.socket, str]) -> None:
    """`watch` sends READY=1 once `ready()` holds, never before, and pings every interval while healthy."""
    sock, path = listener
    notifier = Notifier(path, watchdog=0.05)
    ready = False
    healthy = (True, "ticking")
    async with anyio.create_task_group() as tg:
        tg.start_soon(notifier.watch, lambda: ready, lambda: healthy)
        await anyio.sleep(0.3)
        before = received(sock)
        assert before
        assert set(before) == {"WATCHDOG=1"}
        ready = True
        await anyio.sleep(0.3)
        after = received(sock)
        assert [m for m in after if m != "WATCHDOG=1"] == ["READY=1\nSTATUS=ready"]
        healthy = (False, "vertex has not ticked for 60s")
        await anyio.sleep(0.1)
        received(sock)
        await anyio.sleep(0.3)
        assert received(sock) == []
        tg.cancel_scope.cancel()


async def test_watch_returns_when_there_is_nothing_to_do(listener: tuple[socket.socket, str]) -> None:
    """No socket: it returns at once; a socket without a watchdog: once READY=1 is sent."""
    sock, path = listener
    with anyio.fail_after(2):
        await Notifier().watch(lambda: True, lambda: (True, "ticking"))
        await Notifier(path).watch(lambda: True, lambda: (True, "ticking"))
    assert received(sock) == ["READY=1\nSTATUS=ready"]
