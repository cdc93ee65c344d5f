"""A launcher behaviour that runs a real process per execution, as Cloud Run runs the container.

The process gets the environment Cloud Run sets (CLOUD_RUN_JOB, CLOUD_RUN_EXECUTION,
CLOUD_RUN_TASK_INDEX, …) plus the execution's env overrides; the execution finishes with the
process's exit status. A timeout or a cancel stops it the way Cloud Run does: SIGTERM, then SIGKILL
after a grace, to its whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from supervisor.sandbox.cloudrun_server import ExecutionHandle

STOP_GRACE = 10.0


@dataclass
class ProcessLauncher:
    argv: Callable[[ExecutionHandle], list[str]]
    """The container's command line for one execution (entrypoint plus the overridden args)."""
    env: Mapping[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    """Where each execution's output goes (stdout.log / stderr.log per execution); None discards it."""

    def environment(self, handle: ExecutionHandle) -> dict[str, str]:
        short = handle.name.rsplit("/", 1)[-1]
        return {
            **os.environ,
            **self.env,
            **handle.env,
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
                    await _stop_group(process.pid)
                    await process.aclose()
        finally:
            for stream in (out, err):
                if stream is not None:
                    stream.close()
        handle.finish("succeeded" if code == 0 else "failed", f"Container exited with code {code}")


async def _stop_group(pid: int) -> None:
    """SIGTERM the process group, SIGKILL what is left after the grace; ESRCH means it is gone."""
    for signum, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            return
        with anyio.move_on_after(wait):
            while True:
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    return
                await anyio.sleep(0.05)
