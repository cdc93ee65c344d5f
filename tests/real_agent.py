"""The real `wandb launch-agent`, unmodified, under the real launch-watchdog, against the stand-ins.

The launcher image's entrypoint is run as Cloud Run runs it: `launch-watchdog -- wandb launch-agent
-q Q -e E --max-jobs 1`, with a home of its own that holds the image's launch config, and the
environment that points the agent at the W&B stand-in and its Google libraries at the Vertex
stand-in (`launch_supervisor.sandbox.google_front`). Used by the end-to-end tests and by
`tests/watchdog/transcripts/record.py`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from launch_supervisor.sandbox.session import LAUNCH_CONFIG
from launch_supervisor.sandbox.stack import ENTITY, Stack
from tests.conftest import Run

QUEUE = "sandbox"


def program(name: str) -> str:
    """A console script installed beside this Python (the dev install), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run: pip install -e '.[dev]'")
    return found


@dataclass
class RealRun(Run):
    """A finished launch-watchdog run over the real agent, with where it left its files."""

    home: Path = field(default_factory=Path)
    wandb_dir: Path = field(default_factory=Path)
    seconds: float = 0.0

    def log(self, pattern: str) -> str:
        """The text of the agent's log files matching `pattern` under $WANDB_DIR/wandb."""
        return "".join(p.read_text(errors="replace") for p in sorted((self.wandb_dir / "wandb").glob(pattern)))


@dataclass
class RealAgent:
    """Starts the image's entrypoint against a running stack."""

    stack: Stack
    tmp: Path
    runs: int = 0

    def environment(self, home: Path, wandb_dir: Path, extra: Mapping[str, str | None]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCH_WATCHDOG_", "WANDB_"))}
        env.pop("PUBSUB_EMULATOR_HOST", None)
        env.update(self.stack.agent_env())
        env.update({"HOME": str(home), "WANDB_DIR": str(wandb_dir), "CLOUD_RUN_EXECUTION": f"real-{self.runs}"})
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    async def run(
        self,
        *,
        queue: str = QUEUE,
        options: Sequence[str] = ("--grace", "5", "--idle-timeout", "60"),
        env: Mapping[str, str | None] | None = None,
        timeout: float = 120.0,
    ) -> RealRun:
        """One launch-watchdog run to its end; fails the test when it outlasts `timeout`."""
        self.runs += 1
        home = self.tmp / f"home-{self.runs}"
        (home / ".config" / "wandb").mkdir(parents=True)
        shutil.copyfile(LAUNCH_CONFIG, home / ".config" / "wandb" / "launch-config.yaml")
        wandb_dir = self.tmp / f"wandb-dir-{self.runs}"
        wandb_dir.mkdir()
        argv = [program("launch-watchdog"), *options, "--", program("wandb"), "launch-agent"]
        argv += ["-q", queue, "-e", ENTITY, "--max-jobs", "1"]
        started = time.monotonic()
        with anyio.fail_after(timeout):
            done = await anyio.run_process(
                argv, env=self.environment(home, wandb_dir, env or {}), check=False, start_new_session=True
            )
        return RealRun(
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
            [],
            home=home,
            wandb_dir=wandb_dir,
            seconds=time.monotonic() - started,
        )
