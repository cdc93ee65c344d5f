"""`launch-supervisor` as operators run it: a real process, real signals, a real config file."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process

from launch_supervisor.cli import _startup_error
from launch_supervisor.clients import CredentialsError
from launch_supervisor.daemon.shell import ListenError
from launch_supervisor.sandbox.emulator import free_port
from launch_supervisor.sandbox.stack import ENTITY, Stack, stand_ins

pytestmark = pytest.mark.anyio


def write_private(path: Path, text: str) -> None:
    """The config as an operator keeps it: not readable by others (else the daemon warns, on stderr)."""
    path.write_text(text)
    path.chmod(0o640)


def env(stack: Stack | None, home: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCH_SUPERVISOR_", "GOOGLE_"))}
    metadata = f"127.0.0.1:{free_port()}"  # closed: a metadata lookup fails at once, and on loopback
    base.update(
        HOME=str(home),
        CLOUDSDK_CONFIG=str(home / "gcloud"),
        NO_GCE_CHECK="true",  # never probe the metadata server: tests reach loopback only
        GCE_METADATA_HOST=metadata,
        GCE_METADATA_IP=metadata,
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    if stack is not None:
        base["WANDB_API_KEY"] = stack.api_key
    return base


async def run_daemon(config: Path, environ: dict[str, str]) -> tuple[int, str]:
    """`launch-supervisor run` to its end: its exit code and stderr."""
    with anyio.fail_after(60):
        result = await anyio.run_process(
            ["launch-supervisor", "run", "--config", str(config)], env=environ, check=False
        )
    return result.returncode, result.stderr.decode(errors="replace")


def assert_one_clear_line(stderr: str, *parts: str) -> None:
    """What an operator sees when the daemon cannot start: one line, no traceback."""
    assert "Traceback" not in stderr, stderr
    assert "ExceptionGroup" not in stderr, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("launch-supervisor: "), stderr
    for part in parts:
        assert part in stderr, stderr


class Daemon:
    def __init__(self, process: Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.url = ""
        self.stderr = b""
        """Everything read from its stderr so far."""

    async def read_to_end(self) -> str:
        """All of its stderr, once it has exited."""
        assert self.process.stderr is not None
        with anyio.fail_after(10), contextlib.suppress(anyio.EndOfStream):
            while True:
                self.stderr += await self.process.stderr.receive()
        return self.stderr.decode(errors="replace")

    async def read_until(self, event: str, timeout: float = 20) -> dict[str, Any]:
        assert self.process.stderr is not None
        with anyio.fail_after(timeout):
            buffer = b""
            while True:
                for line in self.lines:
                    if line.get("event") == event:
                        self.lines.remove(line)
                        return line
                chunk = await self.process.stderr.receive()
                self.stderr += chunk
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    try:
                        self.lines.append(json.loads(raw))
                    except ValueError:
                        self.lines.append({"event": "text", "text": raw.decode(errors="replace")})


@asynccontextmanager
async def daemon_process(config: Path, environ: dict[str, str]) -> AsyncIterator[Daemon]:
    process = await anyio.open_process(
        ["launch-supervisor", "run", "--config", str(config)], env=environ, start_new_session=True
    )
    try:
        yield Daemon(process)
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()


async def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    """A running daemon dispatches, then SIGTERM makes it stop and exit 0; a second signal is not needed."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.enqueue(ENTITY, "q")
        config = tmp_path / "config.toml"
        write_private(config, stack.config_toml())
        async with daemon_process(config, env(stack, tmp_path)) as daemon:
            listening = await daemon.read_until("http.listening")
            url = f"http://{listening['address']}"
            await daemon.read_until("dispatch.started")
            async with httpx.AsyncClient() as client:
                with anyio.fail_after(10):
                    while (await client.get(url + "/readyz")).status_code != 200:
                        await anyio.sleep(0.05)
            daemon.process.send_signal(signal.SIGTERM)
            await daemon.read_until("supervisor.stopped")
            with anyio.fail_after(15):
                assert await daemon.process.wait() == 0


async def test_sighup_reloads_a_valid_config_and_keeps_the_old_one_otherwise(tmp_path: Path) -> None:
    """SIGHUP applies a valid file (a new queue starts); an invalid one is rejected with reasons."""
    async with stand_ins(["q", "r"]) as stack:
        config = tmp_path / "config.toml"
        only_q = Stack(**{**stack.__dict__, "queues": ["q"]})
        write_private(config, only_q.config_toml())
        async with daemon_process(config, env(stack, tmp_path)) as daemon:
            await daemon.read_until("supervisor.started")
            write_private(config, only_q.config_toml().replace("[http]", "[htp]"))
            daemon.process.send_signal(signal.SIGHUP)
            rejected = await daemon.read_until("config.reload_rejected")
            assert any("unknown key `htp`" in p for p in rejected["problems"])
            write_private(config, stack.config_toml())
            daemon.process.send_signal(signal.SIGHUP)
            await daemon.read_until("queue.added")
            stack.wandb.enqueue(ENTITY, "r")
            started = await daemon.read_until("dispatch.started")
            assert started["queue"] == "r"
            daemon.process.send_signal(signal.SIGINT)
            with anyio.fail_after(15):
                assert await daemon.process.wait() == 0


async def test_missing_google_credentials_is_one_clear_error(tmp_path: Path) -> None:
    """Without Application Default Credentials (an empty home, no GOOGLE_APPLICATION_CREDENTIALS, the
    metadata server a closed loopback port) the daemon says so in one line and exits 1."""
    async with stand_ins(["q"]) as stack:
        text = stack.config_toml()
        text = "\n".join(line for line in text.splitlines() if not line.startswith(("run_endpoint", "vertex_endpoint")))
        config = tmp_path / "config.toml"
        write_private(config, text)
        code, stderr = await run_daemon(config, env(stack, tmp_path))
        assert code == 1
        assert_one_clear_line(stderr, "no Google credentials", "GOOGLE_APPLICATION_CREDENTIALS")


async def test_a_busy_http_address_is_one_clear_error(tmp_path: Path) -> None:
    """`[http] listen` already taken: one line naming the address and the setting, exit 1."""
    async with stand_ins(["q"]) as stack:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            address = f"127.0.0.1:{taken.getsockname()[1]}"
            config = tmp_path / "config.toml"
            write_private(config, stack.config_toml(listen=address))
            code, stderr = await run_daemon(config, env(stack, tmp_path))
        assert code == 1
        assert_one_clear_line(stderr, f"cannot listen on {address}", "already in use", "[http] listen")


async def test_a_rejected_wandb_key_stops_polling_not_the_daemon(tmp_path: Path) -> None:
    """W&B answers 401 at start: as documented, polling of that queue stops with one error naming the
    key, the daemon keeps running and stays healthy, and SIGTERM still exits 0; no traceback."""
    async with stand_ins(["q"]) as stack:
        config = tmp_path / "config.toml"
        write_private(config, stack.config_toml())
        async with daemon_process(config, {**env(None, tmp_path), "WANDB_API_KEY": "0" * 40}) as daemon:
            listening = await daemon.read_until("http.listening")
            stopped = await daemon.read_until("queue.polling_stopped")
            assert stopped["queue"] == "q"
            assert stopped["reason"] == "auth"
            assert "W&B answered 401" in stopped["error"]
            assert "API key" in stopped["error"]
            async with httpx.AsyncClient(base_url=f"http://{listening['address']}") as client:
                assert (await client.get("/healthz")).status_code == 200
            assert daemon.process.returncode is None
            daemon.process.send_signal(signal.SIGTERM)
            await daemon.read_until("supervisor.stopped")
            with anyio.fail_after(15):
                assert await daemon.process.wait() == 0
            stderr = await daemon.read_to_end()
            assert "Traceback" not in stderr, stderr
            assert "ExceptionGroup" not in stderr, stderr


def test_only_startup_errors_are_unwrapped() -> None:
    """A group holding only startup errors gives the first; anything else in it is a bug and keeps
    its traceback (None: the CLI re-raises it)."""
    credentials, listen = CredentialsError("no Google credentials"), ListenError("cannot listen")
    assert _startup_error(credentials) is credentials
    assert _startup_error(BaseExceptionGroup("", [BaseExceptionGroup("", [listen]), credentials])) is listen
    assert _startup_error(ExceptionGroup("", [credentials, ValueError("a bug")])) is None
    assert _startup_error(ExceptionGroup("", [ExceptionGroup("", [KeyError("a bug")])])) is None
    assert _startup_error(ValueError("a bug")) is None


async def test_missing_wandb_key_is_one_clear_error(tmp_path: Path) -> None:
    """Without a W&B key the daemon names the three ways to provide one and exits 2."""
    async with stand_ins(["q"]) as stack:
        config = tmp_path / "config.toml"
        write_private(config, stack.config_toml())
        result = await anyio.run_process(
            ["launch-supervisor", "run", "--config", str(config)], env=env(None, tmp_path), check=False
        )
        assert result.returncode == 2
        assert "no W&B API key: set WANDB_API_KEY, or wandb.api_key_file, or a ~/.netrc entry" in result.stderr.decode()


async def test_status_and_resume_commands(tmp_path: Path) -> None:
    """`status` prints a table of a running daemon, with each queue's spend against its budget;
    `resume` closes a breaker."""
    async with stand_ins(["q"]) as stack:
        config = tmp_path / "config.toml"
        write_private(config, stack.config_toml("daily_budget = 20"))
        async with daemon_process(config, env(stack, tmp_path)) as daemon:
            listening = await daemon.read_until("http.listening")
            url = f"http://{listening['address']}"
            await daemon.read_until("supervisor.started")
            status = await anyio.run_process(["launch-supervisor", "status", "--url", url], check=False)
            assert status.returncode == 0
            assert "QUEUE" in status.stdout.decode()
            assert "closed" in status.stdout.decode()
            assert "SPEND 24H" in status.stdout.decode()
            assert "/ $20.00" in status.stdout.decode()
            resumed = await anyio.run_process(["launch-supervisor", "resume", "q", "--url", url], check=False)
            assert resumed.stdout.decode().strip() == "q: breaker closed (was closed)"
            unknown = await anyio.run_process(["launch-supervisor", "resume", "nope", "--url", url], check=False)
            assert unknown.returncode == 1
            assert "no queue named 'nope'" in unknown.stderr.decode()
            daemon.process.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                assert await daemon.process.wait() == 0
        down = await anyio.run_process(["launch-supervisor", "status", "--url", url], check=False)
        assert down.returncode == 1
        assert "cannot reach the daemon" in down.stderr.decode()


async def test_version_and_help() -> None:
    """--version and --help answer without a config."""
    version = await anyio.run_process(["launch-supervisor", "--version"])
    assert version.stdout.decode().startswith("launch-supervisor, version ")
    helped = await anyio.run_process(["launch-supervisor", "--help"])
    for command in ("run", "check-config", "status", "resume"):
        assert command in helped.stdout.decode()


async def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    """While the drain waits on a slow call, a second SIGTERM ends the process immediately (143)."""
    from launch_supervisor.sandbox.faults import Fault

    async with stand_ins(["q"]) as stack:
        config = tmp_path / "config.toml"
        write_private(config, stack.config_toml())
        async with daemon_process(config, env(stack, tmp_path)) as daemon:
            await daemon.read_until("supervisor.started")
            stack.wandb.faults.add("GetRunQueueItems", Fault(delay=30.0), times=100)
            await anyio.sleep(0.6)  # the queue loop is now inside a slow request
            daemon.process.send_signal(signal.SIGTERM)
            await daemon.read_until("supervisor.stopping")
            daemon.process.send_signal(signal.SIGTERM)
            with anyio.fail_after(5):
                assert await daemon.process.wait() == 128 + signal.SIGTERM


def test_the_sandbox_without_its_extra_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon-only install asked for the sandbox: one error naming the module and the install."""
    import importlib.util

    from click.testing import CliRunner

    from launch_supervisor.cli import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "graphql" else real(name, *a))
    result = CliRunner().invoke(cli, ["sandbox"])
    assert result.exit_code == 1
    assert "graphql is not installed: pip install 'launch-supervisor[sandbox]'" in result.output
