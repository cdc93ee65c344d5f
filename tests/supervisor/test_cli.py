"""`launch-supervisor` as operators run it: a real process, real signals, a real config file."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process

from supervisor.sandbox.stack import ENTITY, Stack, stand_ins

pytestmark = pytest.mark.anyio


def env(stack: Stack | None, home: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCH_SUPERVISOR_", "GOOGLE_"))}
    base.update(
        HOME=str(home),
        CLOUDSDK_CONFIG=str(home / "gcloud"),
        NO_GCE_CHECK="true",  # never probe the metadata server: tests reach loopback only
        GCE_METADATA_HOST="127.0.0.1:9",
        GCE_METADATA_IP="127.0.0.1:9",
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    if stack is not None:
        base["WANDB_API_KEY"] = stack.api_key
    return base


class Daemon:
    def __init__(self, process: Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.url = ""

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
        config.write_text(stack.config_toml())
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
        config.write_text(only_q.config_toml())
        async with daemon_process(config, env(stack, tmp_path)) as daemon:
            await daemon.read_until("supervisor.started")
            config.write_text(only_q.config_toml().replace("[http]", "[htp]"))
            daemon.process.send_signal(signal.SIGHUP)
            rejected = await daemon.read_until("config.reload_rejected")
            assert any("unknown key `htp`" in p for p in rejected["problems"])
            config.write_text(stack.config_toml())
            daemon.process.send_signal(signal.SIGHUP)
            await daemon.read_until("queue.added")
            stack.wandb.enqueue(ENTITY, "r")
            started = await daemon.read_until("dispatch.started")
            assert started["queue"] == "r"
            daemon.process.send_signal(signal.SIGINT)
            with anyio.fail_after(15):
                assert await daemon.process.wait() == 0


async def test_missing_google_credentials_is_one_clear_error(tmp_path: Path) -> None:
    """Without Application Default Credentials the daemon says so and exits non-zero."""
    async with stand_ins(["q"]) as stack:
        text = stack.config_toml()
        text = "\n".join(line for line in text.splitlines() if not line.startswith(("run_endpoint", "vertex_endpoint")))
        config = tmp_path / "config.toml"
        config.write_text(text)
        result = await anyio.run_process(
            ["launch-supervisor", "run", "--config", str(config)], env=env(stack, tmp_path), check=False
        )
        assert result.returncode == 1
        assert "no Google credentials" in result.stderr.decode()
        assert "GOOGLE_APPLICATION_CREDENTIALS" in result.stderr.decode()


async def test_missing_wandb_key_is_one_clear_error(tmp_path: Path) -> None:
    """Without a W&B key the daemon names the three ways to provide one and exits 2."""
    async with stand_ins(["q"]) as stack:
        config = tmp_path / "config.toml"
        config.write_text(stack.config_toml())
        result = await anyio.run_process(
            ["launch-supervisor", "run", "--config", str(config)], env=env(None, tmp_path), check=False
        )
        assert result.returncode == 2
        assert "no W&B API key: set WANDB_API_KEY, or wandb.api_key_file, or a ~/.netrc entry" in result.stderr.decode()


async def test_status_and_resume_commands(tmp_path: Path) -> None:
    """`status` prints a table of a running daemon; `resume` closes a breaker."""
    async with stand_ins(["q"]) as stack:
        config = tmp_path / "config.toml"
        config.write_text(stack.config_toml())
        async with daemon_process(config, env(stack, tmp_path)) as daemon:
            listening = await daemon.read_until("http.listening")
            url = f"http://{listening['address']}"
            await daemon.read_until("supervisor.started")
            status = await anyio.run_process(["launch-supervisor", "status", "--url", url], check=False)
            assert status.returncode == 0
            assert "QUEUE" in status.stdout.decode()
            assert "closed" in status.stdout.decode()
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
    from supervisor.sandbox.faults import Fault

    async with stand_ins(["q"]) as stack:
        config = tmp_path / "config.toml"
        config.write_text(stack.config_toml())
        async with daemon_process(config, env(stack, tmp_path)) as daemon:
            await daemon.read_until("supervisor.started")
            stack.wandb.faults.add("runQueueItems", Fault(delay=30.0), times=100)
            await anyio.sleep(0.6)  # the queue loop is now inside a slow request
            daemon.process.send_signal(signal.SIGTERM)
            await daemon.read_until("supervisor.stopping")
            daemon.process.send_signal(signal.SIGTERM)
            with anyio.fail_after(5):
                assert await daemon.process.wait() == 128 + signal.SIGTERM
