"""The systemd notify protocol (sd_notify(3)) in a few lines of stdlib: `READY=1` once the daemon is
ready (as /readyz), `WATCHDOG=1` while its loops tick (as /healthz), `RELOADING=1` … `READY=1`
around a reload, `STOPPING=1` at shutdown.

Each message is one datagram to the Unix socket `$NOTIFY_SOCKET` names (a path, or `@name` in the
abstract namespace). Without `$NOTIFY_SOCKET` everything is a no-op. Sending never blocks and never
raises: a failure is logged once and ignored (systemd then restarts a service whose watchdog
starves, which is the right outcome).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

import anyio
import structlog

log = structlog.get_logger("launch_supervisor")

READY_CHECK = 0.05
"""Until the daemon is ready, how often (seconds) the notifier looks."""


def socket_address(value: str | None) -> str | bytes | None:
    """Where `$NOTIFY_SOCKET` points: a filesystem path, an abstract address (`@name` → b"\\0name"),
    or None when it is unset or not a Unix socket address (systemd also allows `vsock:`, unused here)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between `WATCHDOG=1` pings: half of `$WATCHDOG_USEC`; None when the watchdog is off or
    meant for another process (`$WATCHDOG_PID`, as sd_watchdog_enabled(3))."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid is not None and pid != str(os.getpid())):
        return None
    return usec / 2_000_000


class Notifier:
    """Tells systemd how the daemon is doing; every method is a no-op when systemd does not listen."""

    def __init__(self, address: str | bytes | None = None, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog = watchdog if address is not None else None
        """Seconds between pings, or None."""
        self.ready_sent = False
        self.stopping_sent = False
        self._failed = False
        self._withheld: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        return cls(socket_address(environ.get("NOTIFY_SOCKET")), watchdog_interval(environ))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram of `KEY=VALUE` lines; True when it was sent."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("systemd.notify_failed", error=f"{type(exc).__name__}: {exc}", message=fields[0])
            return False
        return True

    def ready(self) -> None:
        self.ready_sent = True  # even when the send fails: it is not retried (the failure is logged)
        self.send("READY=1", "STATUS=ready")

    def reloading(self) -> None:
        """Before a reload; systemd ≥ 253 needs the monotonic time for Type=notify-reload."""
        if self.ready_sent and not self.stopping_sent:
            self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def reloaded(self) -> None:
        """After a reload, applied or rejected: ready again (unless it was not ready before)."""
        if self.ready_sent and not self.stopping_sent:
            self.send("READY=1", "STATUS=ready")

    def stopping(self) -> None:
        self.stopping_sent = True
        self.send("STOPPING=1", "STATUS=stopping")

    def ping(self, health: tuple[bool, str]) -> None:
        """`WATCHDOG=1` when healthy; otherwise none (systemd restarts the service after WatchdogSec)."""
        healthy, why = health
        if healthy:
            if self._withheld is not None:
                log.info("systemd.watchdog_resumed")
                self._withheld = None
            self.send("WATCHDOG=1")
        elif self._withheld is None:  # once per spell: the reason's age changes at every ping
            log.error("systemd.watchdog_withheld", reason=why)
            self._withheld = why

    async def watch(self, ready: Callable[[], bool], healthy: Callable[[], tuple[bool, str]]) -> None:
        """Run until cancelled: `READY=1` as soon as `ready()`, and a ping every watchdog interval
        while `healthy()`. Returns at once when there is nothing to do."""
        if not self.enabled:
            return
        next_ping = time.monotonic()
        while True:
            if not self.ready_sent and not self.stopping_sent and ready():
                self.ready()
            if self.watchdog is not None and time.monotonic() >= next_ping:
                self.ping(healthy())
                next_ping = time.monotonic() + self.watchdog
            if self.ready_sent and self.watchdog is None:
                return
            wait = READY_CHECK if not self.ready_sent else next_ping - time.monotonic()
            if self.watchdog is not None:
                wait = min(wait, next_ping - time.monotonic())
            await anyio.sleep(max(0.0, wait))
