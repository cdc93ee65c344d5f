"""The daemon as its systemd unit runs it: `launch-supervisor run` as a child process, started again
when it fails, within the unit's start limit.

A process of its own rather than the daemon's code in the sandbox's process, so a kill or a crash is a
real one, and what a restarted daemon recovers (adopting the executions in flight) is what it recovers
in production.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
from anyio.abc import Process, TaskStatus

from launch_supervisor.sandbox.errors import SandboxError

RESTART_DELAY = 1.0
"""Seconds before a daemon that died is started again (systemd's RestartSec)."""
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL = 10.0
"""At most START_LIMIT_BURST starts within START_LIMIT_INTERVAL seconds: the start limit systemd
applies to the unit (deploy/systemd/launch-supervisor.service keeps systemd's defaults,
StartLimitBurst=5 and StartLimitIntervalSec=10s). A daemon that keeps dying is not started forever."""
CLEAN_EXITS = frozenset({0, -signal.SIGHUP, -signal.SIGINT, -signal.SIGTERM, -signal.SIGPIPE})
"""Exits systemd's Restart=on-failure counts as clean, and so does not restart."""
READY_SECONDS = 30.0
"""How long the first daemon has to answer /readyz."""


@dataclass
class DaemonUnit:
    """One daemon at a time, kept running until the sandbox stops or the start limit is reached."""

    argv: list[str]
    env: dict[str, str]
    log: Path
    """Where every daemon's output goes, appended across restarts."""
    url: str
    """Where the daemon serves its HTTP surface (/readyz)."""
    stopping: anyio.Event
    """Set when the sandbox stops: a daemon that ends then is not started again."""
    say: Callable[[str], None]
    """How a restart, or a clean stop, is told to the operator."""
    process: Process | None = None
    """The daemon running now, or the last one started."""
    restarts: int = 0

    async def keep(self, *, task_status: TaskStatus[None]) -> None:
        """Run the daemon and start it again whenever it dies, during a start or later, as the systemd
        unit does (Restart=on-failure, RestartSec, the start limit). Only a first start that fails, or
        a daemon past the start limit, ends the sandbox: starting it again would not help."""
        starts: list[float] = []
        """When the daemon was started, within the start limit's interval."""
        first = True
        with self.log.open("ab") as log_file:
            try:
                while True:
                    starts.append(time.monotonic())
                    # Its own session: Ctrl+C reaches the sandbox, which stops the daemon in order.
                    self.process = await anyio.open_process(
                        self.argv, env=self.env, stdout=log_file, stderr=log_file, start_new_session=True
                    )
                    if first:
                        await self._wait_ready(self.process)
                        task_status.started()
                        first = False
                    code = await self.process.wait()
                    if self.stopping.is_set():
                        return
                    if code in CLEAN_EXITS:
                        self.say(f"the daemon {ended(code)}, a clean stop: it is not started again")
                        return
                    restart_at = time.monotonic() + RESTART_DELAY
                    starts = [at for at in starts if restart_at - at < START_LIMIT_INTERVAL]
                    if len(starts) >= START_LIMIT_BURST:
                        raise SandboxError(
                            f"the daemon {ended(code)} after {len(starts)} starts within {START_LIMIT_INTERVAL:g} s, "
                            f"the systemd unit's start limit, so it is not started again; {self._log_tail()}"
                        )
                    self.say(f"the daemon {ended(code)}; starting it again in {RESTART_DELAY:g} s (see {self.log})")
                    await anyio.sleep(RESTART_DELAY)
                    if self.stopping.is_set():
                        return
                    self.restarts += 1
            finally:
                with anyio.CancelScope(shield=True):
                    await self.stop()

    async def stop(self) -> None:
        """SIGTERM, as systemd stops the unit, then SIGKILL if the daemon is still there 15 s later."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(15):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()

    async def _wait_ready(self, process: Process) -> None:
        """Until the first daemon answers /readyz; one that cannot start at all is a SandboxError."""
        async with httpx.AsyncClient(timeout=1.0) as client:
            deadline = time.monotonic() + READY_SECONDS
            while time.monotonic() < deadline:
                if process.returncode is not None:
                    tail = self._log_tail()
                    hint = "\n(is the address already in use? choose another with --http)" if "in use" in tail else ""
                    raise SandboxError(f"the daemon {ended(process.returncode)} on start; {tail}{hint}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                await anyio.sleep(0.1)
        raise SandboxError(f"the daemon did not become ready within {READY_SECONDS:g} s; see {self.log}")

    def _log_tail(self) -> str:
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-3:])
        return f"{self.log} ends:\n{tail}"


def ended(code: int) -> str:
    """How a process ended, as an operator reads it: `exited with 1`, `was killed by SIGKILL`."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with {code}"
