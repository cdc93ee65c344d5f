"""The events' line form, and the fields that name the run in every event."""

from __future__ import annotations

import json
import os
from pathlib import Path

from launch_watchdog.console import Console
from launch_watchdog.events import SCHEMA, Events, agent_target, run_fields
from launch_watchdog.redact import Redactor

AGENT = ["wandb", "launch-agent", "--max-jobs", "1"]


def test_queue_and_entity_come_from_the_agent_command_line() -> None:
    assert agent_target([*AGENT, "-q", "q1", "-e", "team"], {}) == {"queue": "q1", "entity": "team"}
    assert agent_target([*AGENT, "--queue=q1", "--entity=team"], {}) == {"queue": "q1", "entity": "team"}
    assert agent_target([*AGENT, "--queue", "q1", "--entity", "team"], {}) == {"queue": "q1", "entity": "team"}


def test_the_entity_falls_back_to_wandb_entity() -> None:
    assert agent_target([*AGENT, "-q", "q1"], {"WANDB_ENTITY": "env-team"}) == {"queue": "q1", "entity": "env-team"}
    assert agent_target([*AGENT, "-e", "team"], {"WANDB_ENTITY": "env-team"}) == {"queue": None, "entity": "team"}


def test_of_several_queues_the_first_names_the_run() -> None:
    assert agent_target([*AGENT, "-q", "q1", "-q", "q2"], {})["queue"] == "q1"


def test_a_flag_without_a_value_names_nothing() -> None:
    assert agent_target([*AGENT, "-q"], {}) == {"queue": None, "entity": None}


def test_run_fields_name_the_execution_then_queue_and_entity() -> None:
    fields = run_fields([*AGENT, "-q", "q1"], {"CLOUD_RUN_EXECUTION": "launcher-abc", "WANDB_ENTITY": "team"})
    assert list(fields.items()) == [("execution", "launcher-abc"), ("queue", "q1"), ("entity", "team")]
    assert run_fields(AGENT, {})["execution"] is None


def test_an_event_is_one_redacted_json_line(tmp_path: Path) -> None:
    """Common fields first, then the event's own; every string redacted, nested ones too."""
    path = tmp_path / "stdout"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        events = Events(Console(out_fd=fd), Redactor({"WANDB_API_KEY": "sekrit-value"}), {"execution": "x"})
        record = events.emit("watchdog.test", "INFO", "key sekrit-value", lines=[{"text": "sekrit-value"}], n=1)
    finally:
        os.close(fd)
    (line,) = path.read_text().splitlines()
    assert json.loads(line) == record
    assert list(record)[:6] == ["event", "severity", "message", "time", "schema", "execution"]
    assert record["schema"] == SCHEMA
    assert record["message"] == "key [REDACTED:WANDB_API_KEY]"
    assert record["lines"] == [{"text": "[REDACTED:WANDB_API_KEY]"}]
    assert record["n"] == 1
    assert "sekrit" not in line
