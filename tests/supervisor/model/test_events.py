"""The Pub/Sub parser (docs/architecture.md, Events): every message is an Event or says why not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from launch_supervisor.model.events import (
    EXECUTION_HINT,
    ITEM_ADDED,
    VERTEX_HINT,
    WATCHDOG_TYPES,
    Event,
    Malformed,
    item_added,
    parse,
)

JOB = "projects/p/locations/r/customJobs/42"


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def event(value: Any, attributes: dict[str, str] | None = None) -> Event:
    parsed = parse(body(value), attributes)
    assert isinstance(parsed, Event), parsed
    return parsed


def malformed(data: bytes | Any, attributes: dict[str, str] | None = None) -> str:
    parsed = parse(data if isinstance(data, bytes) else body(data), attributes)
    assert isinstance(parsed, Malformed), parsed
    assert parsed.reason
    return parsed.kind


# -- watchdog events ------------------------------------------------------------------------------

FULL: dict[str, dict[str, Any]] = {
    "watchdog.started": {"queue": "q", "entity": "e"},
    "watchdog.claimed": {"item_id": "i1"},
    "watchdog.submitted": {"item_id": "i1", "custom_job": JOB},
    "watchdog.bailout": {"rule": "quota_exceeded", "category": "quota", "detection_ms": 12},
    "watchdog.idle_exit": {"idle_seconds": 30},
    "watchdog.exited": {"exit_code": 0, "reason": "submitted"},
}


@pytest.mark.parametrize("kind", sorted(WATCHDOG_TYPES))
def test_each_watchdog_event_type_parses(kind: str) -> None:
    parsed = event({"event": kind, "schema": "launch-supervisor/1", "execution": "x1", **FULL[kind]})
    assert (parsed.type, parsed.execution) == (kind, "x1")


def test_watchdog_fields_are_carried() -> None:
    claimed = event({"event": "watchdog.claimed", "execution": "x1", "queue": "q", "entity": "e", "item_id": "i1"})
    assert (claimed.queue, claimed.entity, claimed.item_id) == ("q", "e", "i1")
    submitted = event({"event": "watchdog.submitted", "execution": "x1", "custom_job": JOB})
    assert submitted.custom_job == JOB
    bailout = event({"event": "watchdog.bailout", "execution": "x1", **FULL["watchdog.bailout"]})
    assert (bailout.rule, bailout.category, bailout.detection_ms) == ("quota_exceeded", "quota", 12.0)


def test_the_type_may_come_from_the_body_or_the_attributes() -> None:
    hint = event({"queue": "q"}, {"type": ITEM_ADDED})
    assert (hint.type, hint.queue) == (ITEM_ADDED, "q")
    assert event({"type": ITEM_ADDED, "queue": "q"}).type == ITEM_ADDED
    # A watchdog event names itself in its body (the watchdog prints the same line for log sinks).
    assert malformed({"execution": "x1"}, {"type": "watchdog.idle_exit"}) == "unknown_type"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ({"event": "watchdog.claimed", "queue": "q"}, "missing_field"),  # no execution
        ({"event": "watchdog.claimed", "execution": "", "item_id": "i1"}, "missing_field"),
        ({"event": "watchdog.claimed", "execution": "x1"}, "missing_field"),  # no item_id
        ({"event": "watchdog.submitted", "execution": "x1", "item_id": "i1"}, "missing_field"),  # no custom_job
        ({"event": "watchdog.bailout", "execution": "x1", "rule": "r"}, "missing_field"),  # no category
        ({"event": "watchdog.bailout", "execution": "x1", "category": "c"}, "missing_field"),  # no rule
        ({"event": ITEM_ADDED}, "missing_field"),  # no queue
        ({"event": "watchdog.rebooted", "execution": "x1"}, "unknown_type"),
        ({"event": "odd"}, "unknown_type"),
        ({"hello": "world"}, "unknown_type"),
    ],
)
def test_missing_fields_and_unknown_types(value: dict[str, Any], kind: str) -> None:
    assert malformed(value) == kind


def test_fields_of_the_wrong_type() -> None:
    """Wrong schema: a field that is not a (non-empty) string counts as missing; a detection time
    that is not a number is dropped, not fatal."""
    assert malformed({"event": "watchdog.claimed", "execution": 7, "item_id": "i1"}) == "missing_field"
    assert malformed({"event": "watchdog.claimed", "execution": "x1", "item_id": ["i1"]}) == "missing_field"
    assert malformed({"event": ITEM_ADDED, "queue": {"name": "q"}}) == "missing_field"
    bailout = event({"event": "watchdog.bailout", "execution": "x1", "rule": "r", "category": "c", "detection_ms": "5"})
    assert bailout.detection_ms is None


def test_malformed_bodies() -> None:
    assert malformed(b"\xff not json") == "not_json"
    assert malformed(b"{truncated") == "not_json"
    assert malformed(b"") == "not_json"
    assert malformed(b"[1, 2]") == "not_object"
    assert malformed(b'"watchdog.claimed"') == "not_object"
    assert malformed(b"null") == "not_object"


# -- queue.item_added ---------------------------------------------------------------------------------


def test_item_added_round_trips() -> None:
    parsed = parse(item_added("q", entity="e", item_id="i1"))
    assert parsed == Event(ITEM_ADDED, queue="q", entity="e", item_id="i1")
    bare = parse(item_added("q"))
    assert bare == Event(ITEM_ADDED, queue="q")
    assert json.loads(item_added("q"))["schema"] == "launch-supervisor/1"


# -- Cloud Logging LogEntry (routed by a log sink) ----------------------------------------------------


def test_a_watchdog_line_in_a_log_entry() -> None:
    entry = {
        "logName": "projects/p/logs/run.googleapis.com%2Fstdout",
        "jsonPayload": {"event": "watchdog.claimed", "execution": "x1", "item_id": "i1"},
    }
    parsed = event(entry)
    assert (parsed.type, parsed.execution, parsed.item_id) == ("watchdog.claimed", "x1", "i1")


def test_a_log_entry_names_the_execution_when_the_line_does_not() -> None:
    """The execution is the entry label run.googleapis.com/execution_name; cloud_run_job has no
    execution_name resource label (its labels are job_name, location, project_id)."""
    line = {"event": "watchdog.idle_exit"}
    by_label = event({"jsonPayload": line, "labels": {"run.googleapis.com/execution_name": "x2"}})
    assert by_label.execution == "x2"
    stdout = "projects/p/logs/run.googleapis.com%2Fstdout"
    no_label = {"jsonPayload": line, "logName": stdout, "resource": {"labels": {"execution_name": "x3"}}}
    assert malformed(no_label) == "missing_field"


def test_a_cloud_run_job_entry_is_a_hint_for_its_job() -> None:
    entry = {
        "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
        "resource": {"type": "cloud_run_job", "labels": {"job_name": "launcher"}},
    }
    parsed = event(entry)
    assert (parsed.type, parsed.job) == (EXECUTION_HINT, "launcher")
    assert event({"logName": "l", "resource": {"type": "cloud_run_job"}}).job is None


def test_a_cloud_run_audit_entry_without_the_job_label_names_it_in_its_resource_name() -> None:
    """No public sample shows which resource a RunJob audit entry has: the job is also read from
    protoPayload.resourceName, as v2 (projects/…/jobs/J) and v1 (namespaces/P/jobs/J) name it."""
    for name in (
        "projects/p/locations/r/jobs/launcher",
        "namespaces/p/jobs/launcher",
        "projects/p/locations/r/jobs/launcher/executions/e",
    ):
        audit = {
            "protoPayload": {"serviceName": "run.googleapis.com", "resourceName": name},
            "resource": {"type": "audited_resource"},
        }
        assert (event(audit).type, event(audit).job) == (EXECUTION_HINT, "launcher")
    assert event({"protoPayload": {"serviceName": "run.googleapis.com", "resourceName": 7}}).job is None


def test_vertex_audit_entries_that_change_a_job_are_hints_and_training_output_is_not() -> None:
    for method in ("CreateCustomJob", "CancelCustomJob"):
        audit = {
            "protoPayload": {
                "serviceName": "aiplatform.googleapis.com",
                "methodName": f"google.cloud.aiplatform.v1.JobService.{method}",
            },
            "resource": {"type": "audited_resource"},
        }
        assert event(audit).type == VERTEX_HINT
    read = {
        "protoPayload": {
            "serviceName": "aiplatform.googleapis.com",
            "methodName": "google.cloud.aiplatform.v1.JobService.ListCustomJobs",
        }
    }
    assert malformed(read) == "unknown_type"
    assert malformed({"logName": "projects/p/logs/workerpool0-0", "resource": {"type": "ml_job"}}) == "unknown_type"


def test_other_log_entries_are_unknown() -> None:
    assert malformed({"logName": "l", "resource": {"type": "gce_instance"}}) == "unknown_type"
    assert malformed({"protoPayload": {"serviceName": "storage.googleapis.com"}}) == "unknown_type"
    assert malformed({"jsonPayload": {"message": "hello"}}) == "unknown_type"
