"""The Pub/Sub emulator for tests: the sandbox's own launcher, and a skip (or, under CI, a failure)
where it is not installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from launch_supervisor.sandbox import emulator as _emulator
from launch_supervisor.sandbox.emulator import INSTALL_HINT, PROJECT, Emulator, EmulatorError, emulator_available

__all__ = ["PROJECT", "Emulator", "require_emulator", "running_emulator"]


def require_emulator() -> None:
    """Skip without the emulator, except under CI, where its absence is a failure."""
    if emulator_available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(INSTALL_HINT)
    pytest.skip(INSTALL_HINT)


@contextmanager
def running_emulator(data_dir: Path, port: int | None = None) -> Iterator[Emulator]:
    try:
        with _emulator.running_emulator(data_dir, port) as emulator:
            yield emulator
    except EmulatorError as exc:
        pytest.fail(str(exc))
