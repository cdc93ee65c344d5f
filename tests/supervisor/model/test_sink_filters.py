"""deploy/gcp/setup-events.sh's sink filters held against the LogEntry fixtures the parser is tested
with (tests/supervisor/model/logentries/): every fixture a filter admits becomes the intended hint
or event, and training output and the daemon's own reads match no filter."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from launch_supervisor.model.events import Event, Malformed, parse
from tests.supervisor.model.logging_query import QueryError, compile_query

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "deploy" / "gcp" / "setup-events.sh"
FIXTURES = sorted((Path(__file__).parent / "logentries").glob("*.json"))
JOB = "vertex-ai-launcher"


def sink_filters() -> dict[str, str]:
    """Each sink's filter, as the script would create it for the launcher job (and another)."""
    out = subprocess.run(
        ["bash", str(SCRIPT), "--project", "launch-prod-1234", "--job", JOB, "--job", "other", "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    filters = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if words[:4] == ["gcloud", "logging", "sinks", "create"]:
            filters[words[4].removeprefix("launch-supervisor-")] = words[words.index("--log-filter") + 1]
    return filters


def fixture(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def test_every_fixture_names_its_source_and_is_a_whole_sink_message() -> None:
    assert len(FIXTURES) >= 8
    for path in FIXTURES:
        case = fixture(path)
        assert len(case["_source"]) > 80, path.name
        entry = case["data"]
        for field in ("insertId", "timestamp", "logName", "resource", "receiveTimestamp"):
            assert field in entry, (path.name, field)
        assert "%2F" in entry["logName"] or entry["logName"].count("/") == 3, path.name
        assert set(case["attributes"]) == {"logging.googleapis.com/timestamp"}, path.name


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_a_fixture_parses_as_intended_and_only_its_sink_admits_it(path: Path) -> None:
    case, filters = fixture(path), sink_filters()
    expect = case["_expect"]
    admitted = [name for name, text in filters.items() if compile_query(text)(case["data"])]
    assert admitted == ([expect["sink"]] if expect["sink"] else []), path.name
    parsed = parse(json.dumps(case["data"]).encode(), case["attributes"])
    if expect["type"] is None:
        assert isinstance(parsed, Malformed)
        assert parsed.kind == "unknown_type"
    else:
        assert isinstance(parsed, Event)
        assert parsed.type == expect["type"]
        for key in ("job", "execution"):
            if key in expect:
                assert getattr(parsed, key) == expect[key]


def test_a_training_line_matches_no_filter_whatever_it_says() -> None:
    """Training output that quotes the very words the filters look for still matches none."""
    line = fixture(Path(__file__).parent / "logentries" / "ml_job_stdout.json")["data"]
    for text in ('{"event": "watchdog.claimed"}', "google.cloud.run.v2.Jobs.RunJob cloudaudit.googleapis.com"):
        entry = {**line, "textPayload": text}
        assert not any(compile_query(f)(entry) for f in sink_filters().values())


def test_the_evaluator_follows_the_documented_precedence_and_refuses_the_rest() -> None:
    entry = {"a": "x", "b": "y", "labels": {"run.googleapis.com/k": "v"}, "operation": {"last": True}}
    assert compile_query('a="x" AND b="no" OR b="y"')(entry)  # OR binds tighter than AND
    assert not compile_query('NOT a="x" OR b="no"')(entry)
    assert compile_query('labels."run.googleapis.com/k"="v" AND operation.last=true')(entry)
    assert compile_query('a:"x" AND b=("q" OR "y") AND c!="z"')(entry)
    assert not compile_query('missing:""')(entry)
    for refused in ('a>"x"', 'a=~"x"', 'a="x" b="y"', '"x"', 'SEARCH("x")'):
        with pytest.raises(QueryError):
            compile_query(refused)
