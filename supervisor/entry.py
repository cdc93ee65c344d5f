"""The `launch-supervisor` console script: a clear error when the daemon's extra is missing."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from launch_supervisor.cli import cli  # noqa: PLC0415 - the import itself is what may fail
    except ImportError as exc:
        sys.exit(
            f"launch-supervisor: the daemon's dependencies are not installed ({exc.name} is missing); "
            "run: pip install 'launch-supervisor[daemon]'"
        )
    cli()
