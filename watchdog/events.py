"""Lifecycle events: one JSON object per line on stdout, optionally also on Pub/Sub.

The line form carries `severity` and `message`, so Cloud Logging stores it as a structured
`jsonPayload` that a log sink can route to the supervisor's topic without the container holding
publish rights. Every string in an event is redacted before it is serialised. Every event names
its run (the Cloud Run execution, the agent's queue and entity), so a consumer needs no other context.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from launch_watchdog.console import Console
from launch_watchdog.publish import Publisher
from launch_watchdog.redact import Redactor

SCHEMA = "launch-supervisor/1"


def agent_target(command: Sequence[str], environ: Mapping[str, str]) -> dict[str, str | None]:
    """The queue and entity named on the agent's command line (`-q Q -e E`)."""
    found: dict[str, str | None] = {"queue": None, "entity": environ.get("WANDB_ENTITY")}
    names = {"-q": "queue", "--queue": "queue", "-e": "entity", "--entity": "entity"}
    args = list(command)
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag in names and flag.startswith("--") and eq:
            found[names[flag]] = value
        elif arg in names and i + 1 < len(args):
            key = names[arg]
            if key == "entity" or found[key] is None:
                found[key] = args[i + 1]
    return found


def run_fields(command: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """The fields every event of a run carries: its Cloud Run execution, the agent's queue and entity."""
    return {"execution": environ.get("CLOUD_RUN_EXECUTION"), **agent_target(command, environ)}


def _redacted(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item, redactor) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item, redactor) for item in value]
    return value


class Events:
    """Emits the watchdog's events with the fields every event shares."""

    def __init__(
        self,
        console: Console,
        redactor: Redactor,
        common: dict[str, Any],
        publisher: Publisher | None = None,
    ) -> None:
        self._console = console
        self._redactor = redactor
        self._common = common
        self._publisher = publisher

    def emit(self, event: str, severity: str, message: str, **data: Any) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event": event,
            "severity": severity,
            "message": message,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "schema": SCHEMA,
            **self._common,
            **data,
        }
        record = _redacted(record, self._redactor)
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        self._console.out(line + "\n")
        if self._publisher is not None:
            self._publisher.publish(event, line.encode("utf-8"))
        return record
