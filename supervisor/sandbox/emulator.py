"""Google's Pub/Sub emulator, started on a free loopback port and stopped by its process id."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

INSTALL_HINT = (
    "the Pub/Sub emulator is not installed: install the Google Cloud CLI with its emulator "
    "(Debian package google-cloud-cli-pubsub-emulator, or `gcloud components install pubsub-emulator`)"
)
PROJECT = "launch-supervisor-test"
START_SECONDS = 90.0


class EmulatorError(Exception):
    """The emulator did not start."""


def emulator_available() -> bool:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return False
    root = Path(gcloud).resolve().parent.parent
    return any((base / "platform" / "pubsub-emulator").is_dir() for base in (root, Path("/usr/lib/google-cloud-sdk")))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepting(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Emulator:
    """One running emulator process group."""

    def __init__(self, data_dir: Path, port: int | None = None, project: str = PROJECT) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.project = project
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise EmulatorError("gcloud is not on PATH: " + INSTALL_HINT)
        self._log = (data_dir / "emulator.log").open("w")
        self.proc = subprocess.Popen(  # noqa: S603 - a fixed command line of our own
            [
                gcloud,
                "beta",
                "emulators",
                "pubsub",
                "start",
                f"--host-port={self.host}",
                f"--project={project}",
                f"--data-dir={data_dir}",
                "--quiet",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_SECONDS
        while not _accepting(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EmulatorError(f"the Pub/Sub emulator did not start; see {data_dir / 'emulator.log'}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to its process group (gcloud and its Java child), then SIGKILL if needed."""
        for signum, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


@contextlib.contextmanager
def running_emulator(data_dir: Path, port: int | None = None, project: str = PROJECT) -> Iterator[Emulator]:
    emulator = Emulator(data_dir, port, project)
    try:
        yield emulator
    finally:
        emulator.stop()
