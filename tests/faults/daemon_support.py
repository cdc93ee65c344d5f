"""The daemon as a real process for the fault suite: `launch-supervisor run --config FILE` against the
stand-ins, kept by a `DaemonUnit` (restarted as its systemd unit restarts it), and what it logged.

A process of its own, so that a signal, a kill or a failing write is a real one, and what a restarted
daemon recovers is what it recovers in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import Process

from launch_supervisor.sandbox.daemon_unit import DaemonUnit
from launch_supervisor.sandbox.emulator import free_port
from launch_supervisor.sandbox.stack import FAST_POLL, Stack
from launch_supervisor.sandbox.summary import settled
from tests.faults.harness import wait

READY_TIMEOUT = 60.0
"""How long a daemon has to answer /readyz: generous, for a loaded machine."""


def program() -> str:
    """The installed `launch-supervisor`, beside this Python first (a pyenv shim adds a shell hop)."""
    beside = Path(sys.executable).with_name("launch-supervisor")
    found = str(beside) if beside.exists() else shutil.which("launch-supervisor")
    assert found is not None, "launch-supervisor is not installed; run: pip install -e '.[dev]'"
    return found


def daemon_env(stack: Stack, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the daemon needs to run against the stand-ins: the key, and no GCE metadata probe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCH_SUPERVISOR_")}
    env.pop("PUBSUB_EMULATOR_HOST", None)
    return {**env, "WANDB_API_KEY": stack.api_key, "NO_GCE_CHECK": "true", "PYTHONUNBUFFERED": "1", **(extra or {})}


def write_config(stack: Stack, path: Path, settings: str = "", level: str = "info") -> str:
    """Write the daemon's config (JSON logs, a free port, readable by its owner only) to `path`;
    returns the URL it serves at."""
    port = free_port()
    logs = f'\n[log]\nformat = "json"\nlevel = "{level}"\n'
    path.write_text(stack.config_toml(settings, logs, poll=FAST_POLL, listen=f"127.0.0.1:{port}"))
    path.chmod(0o600)
    return f"http://127.0.0.1:{port}"


def log_lines(log: Path) -> list[dict[str, Any]]:
    """The JSON lines the daemon wrote, in order; other lines (a traceback) are skipped."""
    found = []
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
    return found


def logged(log: Path, event: str) -> list[dict[str, Any]]:
    return [line for line in log_lines(log) if line.get("event") == event]


def after(log: Path, first: str, then: str) -> list[dict[str, Any]]:
    """The `then` lines logged after the last `first` line."""
    lines = log_lines(log)
    last = max((i for i, line in enumerate(lines) if line.get("event") == first), default=len(lines))
    return [line for line in lines[last + 1 :] if line.get("event") == then]


async def settle_within(
    stack: Stack, item_ids: Sequence[str], timeout: float, give_up: Callable[[], bool] = lambda: False
) -> float | None:
    """Like `harness.settle`, but None when the items do not settle within `timeout` (or once
    `give_up()` holds): for a scenario that must record its figures even when it fails."""
    started = time.monotonic()
    with anyio.move_on_after(timeout):
        while not settled(stack, item_ids):
            if give_up():
                return None
            await anyio.sleep(0.05)
        return time.monotonic() - started
    return None


async def answers_ready(url: str, process: Process, timeout: float = READY_TIMEOUT) -> bool:
    """Until the daemon answers /readyz (True), or it has exited (False)."""
    async with httpx.AsyncClient(timeout=1.0) as client:
        with anyio.fail_after(timeout):
            while process.returncode is None:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        return True
                await anyio.sleep(0.05)
    return False


@dataclass
class Supervised:
    """One daemon kept running by its unit, as a test sees it."""

    unit: DaemonUnit
    config: Path
    log: Path
    url: str
    said: list[str] = field(default_factory=list)
    """What the unit told the operator (restarts, clean stops)."""

    @property
    def process(self) -> Process:
        assert self.unit.process is not None
        return self.unit.process

    async def reload(self, text: str, answer: str) -> None:
        """Write `text` over the config file and send SIGHUP; until the daemon logs `answer` once more."""
        before = len(logged(self.log, answer))
        self.config.write_text(text)
        self.process.send_signal(signal.SIGHUP)
        await wait(lambda: len(logged(self.log, answer)) > before)

    async def restarted(self, killed: Process, timeout: float = READY_TIMEOUT) -> None:
        """Until the unit has started a new daemon after `killed`, and it answers /readyz."""
        with anyio.fail_after(timeout):
            while self.unit.process is killed:
                await anyio.sleep(0.02)
        assert await answers_ready(self.url, self.process, timeout), f"the restarted daemon exited: {self.said}"


@asynccontextmanager
async def supervised(
    stack: Stack, work: Path, settings: str = "", env: Mapping[str, str] | None = None, level: str = "info"
) -> AsyncIterator[Supervised]:
    """The daemon started by its unit, and ready, until the block ends; then stopped as systemd
    stops it (SIGTERM, SIGKILL 15 s later)."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "config.toml"
    url = write_config(stack, config, settings, level)
    log = work / "daemon.log"
    said: list[str] = []
    stopping = anyio.Event()
    argv = [program(), "run", "--config", str(config)]
    unit = DaemonUnit(argv, daemon_env(stack, env), log=log, url=url, stopping=stopping, say=said.append)
    async with anyio.create_task_group() as tg:
        await tg.start(unit.keep)
        try:
            yield Supervised(unit, config, log, url, said)
        finally:
            stopping.set()
            with anyio.CancelScope(shield=True):
                await unit.stop()


@asynccontextmanager
async def bare_daemon(stack: Stack, config: Path, stderr: Path) -> AsyncIterator[Process]:
    """The daemon alone, its stdout and stderr on `stderr`, and no unit to start it again: a crash
    stays a crash. Stopped with SIGTERM (then SIGKILL) when the block ends."""
    with stderr.open("wb") as out:
        process = await anyio.open_process(
            [program(), "run", "--config", str(config)], env=daemon_env(stack), stdout=out, stderr=out
        )
    try:
        yield process
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
                with anyio.move_on_after(15):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()


def faketime_library() -> Path | None:
    """libfaketime's multi-threaded preload library (Debian package `faketime`), if installed."""
    for pattern in ("/usr/lib/*/faketime/libfaketimeMT.so.1", "/usr/lib/faketime/libfaketimeMT.so.1"):
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found:
            return found[0]
    return None


def faketime_env(library: Path, offsets: Path) -> dict[str, str]:
    """Run under libfaketime with the wall clock offset by what `offsets` says (`+0`, `+2h`), re-read
    at every call; the monotonic clock stays real, as in a wall-clock step (NTP, a VM resumed)."""
    return {
        "LD_PRELOAD": str(library),
        "FAKETIME_TIMESTAMP_FILE": str(offsets),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
    }


def remove_faketime_shm(pid: int) -> None:
    """libfaketime's shared memory and semaphore of process `pid` (left when it does not exit cleanly)."""
    for name in (f"faketime_shm_{pid}", f"sem.faketime_sem_{pid}"):
        with contextlib.suppress(OSError):
            (Path("/dev/shm") / name).unlink()
