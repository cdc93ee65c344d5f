"""A launcher behaviour that runs a real process per execution, as Cloud Run runs the container.

The process gets the environment Cloud Run sets (CLOUD_RUN_JOB, CLOUD_RUN_EXECUTION,
CLOUD_RUN_TASK_INDEX, …) plus the execution's env overrides; the execution finishes with the
process's exit status. A timeout or a cancel stops it the way Cloud Run does: SIGTERM, then SIGKILL
after a grace, to its whole process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import Process

from launch_supervisor.sandbox.cloudrun_server import ExecutionHandle

STOP_GRACE = 10.0
"""Cloud Run's: seconds between SIGTERM and SIGKILL when a task is stopped."""


@dataclass
class ProcessLauncher:
    argv: Callable[[ExecutionHandle], list[str]]
    """The container's command line for one execution (entrypoint plus the overridden args)."""
    env: Mapping[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    """Where each execution's output goes (stdout.log / stderr.log per execution); None discards it."""
    grace: float = STOP_GRACE
    """Seconds from SIGTERM to SIGKILL on a timeout or cancel (shorter in tests)."""
    homes: Path | None = None
    """Where each execution gets a home directory of its own, as each container does; None: keep $HOME."""
    home_files: Mapping[str, Path] = field(default_factory=dict)
    """Files copied into every such home, by path relative to it (the image's files)."""

    def _home(self, short: str) -> dict[str, str]:
        if self.homes is None:
            return {}
        home = self.homes / short
        for relative, source in self.home_files.items():
            target = home / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        home.mkdir(parents=True, exist_ok=True)
        return {"HOME": str(home)}

    def environment(self, handle: ExecutionHandle) -> dict[str, str]:
        short = handle.name.rsplit("/", 1)[-1]
        return {
            **os.environ,
            **self.env,
            **handle.env,
            **self._home(short),
            "CLOUD_RUN_JOB": handle.job.rsplit("/", 1)[-1],
            "CLOUD_RUN_EXECUTION": short,
            "CLOUD_RUN_TASK_INDEX": "0",
            "CLOUD_RUN_TASK_COUNT": "1",
            "CLOUD_RUN_TASK_ATTEMPT": "0",
        }

    async def run(self, handle: ExecutionHandle) -> None:
        short = handle.name.rsplit("/", 1)[-1]
        out = err = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{short}.stdout.log").open("wb")
            err = (self.log_dir / f"{short}.stderr.log").open("wb")
        try:
            process = await anyio.open_process(
                self.argv(handle),
                env=self.environment(handle),
                stdin=None,
                stdout=out or subprocess.DEVNULL,
                stderr=err or subprocess.DEVNULL,
                start_new_session=True,
            )
            handle.running()
            try:
                code = await process.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    await _stop_group(process, self.grace)
                    await process.aclose()
        finally:
            for stream in (out, err):
                if stream is not None:
                    stream.close()
        handle.finish("succeeded" if code == 0 else "failed", f"Container exited with code {code}")


async def _stop_group(process: Process, grace: float) -> None:
    """SIGTERM the process group; once its leader (the container's entrypoint) has exited, or after
    the grace, SIGKILL what is left of it, as Cloud Run ends a container. ESRCH: nothing left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
