"""`launch-supervisor`: the daemon's command line."""

from __future__ import annotations

import sys
from importlib import metadata


def _version() -> str:
    try:
        return metadata.version("launch-supervisor")
    except metadata.PackageNotFoundError:
        return "unknown"


def main() -> None:
    try:
        import click  # noqa: PLC0415 - the daemon's stack is an optional extra
    except ImportError:
        sys.exit(
            "launch-supervisor: the daemon's dependencies are not installed; "
            "run: pip install 'launch-supervisor[daemon]'"
        )

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(_version(), prog_name="launch-supervisor")
    def cli() -> None:
        """Turn W&B Launch queue items into Vertex AI CustomJobs through Cloud Run executions."""

    cli()
