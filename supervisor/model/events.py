"""Events from Pub/Sub (docs/architecture.md, Events), parsed into plain records. Pure: bytes in, a record out.

A message is one of:
- a watchdog event, published directly (`--events-topic`): JSON with `event: "watchdog.…"`;
- a Cloud Logging `LogEntry` routed by a log sink: a watchdog event line arrives as its
  `jsonPayload`; audit entries of Cloud Run executions ending and of CustomJobs created or cancelled
  are hints to look again (docs/architecture.md, Events);
- `queue.item_added` from an enqueuer that wants instant dispatch.
Anything else is `Malformed`, with a kind for the counter and a reason for the log. Parsing never
raises: a daemon must not stop on a bad message.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any


class EventType(enum.StrEnum):
    """Every message type the daemon acts on; also the `type` label of its Pub/Sub counter."""

    STARTED = "watchdog.started"
    CLAIMED = "watchdog.claimed"
    SUBMITTED = "watchdog.submitted"
    BAILOUT = "watchdog.bailout"
    IDLE_EXIT = "watchdog.idle_exit"
    EXITED = "watchdog.exited"
    ITEM_ADDED = "queue.item_added"
    """From an enqueuer that wants instant dispatch (`launch-supervisor notify`)."""
    EXECUTION_HINT = "log.cloudrun_execution"
    """A Cloud Logging entry about a Cloud Run execution: list the executions again."""
    VERTEX_HINT = "log.vertex_job"
    """A Cloud Logging entry about a CustomJob: list the CustomJobs again."""


WATCHDOG_TYPES = frozenset(t for t in EventType if t.value.startswith("watchdog."))
ITEM_ADDED = EventType.ITEM_ADDED
EXECUTION_HINT = EventType.EXECUTION_HINT
VERTEX_HINT = EventType.VERTEX_HINT
SCHEMA = "launch-supervisor/1"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    execution: str | None = None
    """The execution's short name (CLOUD_RUN_EXECUTION), or a full resource name."""
    queue: str | None = None
    entity: str | None = None
    item_id: str | None = None
    custom_job: str | None = None
    rule: str | None = None
    category: str | None = None
    detection_ms: float | None = None
    job: str | None = None
    """For Cloud Run hints: the launcher job's short name."""


@dataclass(frozen=True, slots=True)
class Malformed:
    kind: str
    """not_json | not_object | unknown_type | missing_field"""
    reason: str


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _object(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one in place of a value of another type."""
    return value if isinstance(value, dict) else {}


def _millis(value: Any) -> float | None:
    """A finite, non-negative number, else None: it ends up in a histogram, where one NaN would
    spoil the sum for good."""
    if not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _watchdog(payload: dict[str, Any]) -> Event | Malformed:
    raw = payload.get("event")
    kind = EventType(raw) if isinstance(raw, str) and raw in WATCHDOG_TYPES else None
    if kind is None:
        return Malformed("unknown_type", f"unknown watchdog event {raw!r}")
    execution = _text(payload.get("execution"))
    if execution is None:
        return Malformed("missing_field", f"{kind} without `execution` (not running on Cloud Run?)")
    event = Event(
        type=kind,
        execution=execution,
        queue=_text(payload.get("queue")),
        entity=_text(payload.get("entity")),
        item_id=_text(payload.get("item_id")),
        custom_job=_text(payload.get("custom_job")),
        rule=_text(payload.get("rule")),
        category=_text(payload.get("category")),
        detection_ms=_millis(payload.get("detection_ms")),
    )
    if kind is EventType.CLAIMED and event.item_id is None:
        return Malformed("missing_field", f"{kind} without its item_id")
    if kind is EventType.SUBMITTED and event.custom_job is None:
        return Malformed("missing_field", f"{kind} without its custom_job")
    if kind is EventType.BAILOUT and (event.rule is None or event.category is None):
        return Malformed("missing_field", f"{kind} without rule or category")
    return event


RUN_SERVICE = "run.googleapis.com"
VERTEX_SERVICE = "aiplatform.googleapis.com"
VERTEX_WRITES = ("JobService.CreateCustomJob", "JobService.CancelCustomJob", "JobService.DeleteCustomJob")
"""Audited Vertex AI methods that change a CustomJob (Admin Activity logs); reads are not hints."""


def _job_of(resource_name: Any) -> str | None:
    """The Cloud Run job's short name in an audit entry's resourceName: v2 names it
    projects/P/locations/R/jobs/J(/executions/E), v1 namespaces/P/jobs/J."""
    if not isinstance(resource_name, str):
        return None
    parts = resource_name.split("/")
    return next((parts[i + 1] for i in range(len(parts) - 1) if parts[i] == "jobs" and parts[i + 1]), None)


def _log_entry(entry: dict[str, Any]) -> Event | Malformed:
    """A LogEntry a sink routed (deploy/gcp/setup-events.sh says which): a watchdog line, a Cloud Run
    audit entry (a RunJob operation's end is an execution's outcome), or a Vertex AI audit entry of
    a CustomJob created or cancelled. Training output (`ml_job`) is refused: it carries no state."""
    labels = _object(entry.get("labels"))
    payload = entry.get("jsonPayload")
    if isinstance(payload, dict) and str(payload.get("event", "")).startswith("watchdog."):
        if not payload.get("execution"):  # the execution is an entry label of cloud_run_job entries
            payload = {**payload, "execution": labels.get("run.googleapis.com/execution_name")}
        return _watchdog(payload)
    resource = _object(entry.get("resource"))
    resource_type = resource.get("type")
    resource_labels = _object(resource.get("labels"))
    proto = _object(entry.get("protoPayload"))
    service = proto.get("serviceName")
    if resource_type == "cloud_run_job" or service == RUN_SERVICE:
        job = _text(resource_labels.get("job_name")) or _job_of(proto.get("resourceName"))
        return Event(EXECUTION_HINT, job=job)
    if service == VERTEX_SERVICE:
        method = proto.get("methodName")
        if isinstance(method, str) and method.endswith(VERTEX_WRITES):
            return Event(VERTEX_HINT)
        return Malformed("unknown_type", f"Vertex AI audit entry for {method!r} changes no CustomJob")
    if resource_type == "ml_job":
        return Malformed(
            "unknown_type",
            "log entry of resource type 'ml_job' is training output, not a state change; "
            "update the sinks with deploy/gcp/setup-events.sh",
        )
    return Malformed("unknown_type", f"log entry of resource type {resource_type!r} is not one the supervisor uses")


def item_added(queue: str, entity: str | None = None, item_id: str | None = None) -> bytes:
    """The body an enqueuer publishes (with attribute type=queue.item_added) for instant dispatch."""
    body = {"event": ITEM_ADDED.value, "schema": SCHEMA, "queue": queue}
    body.update({k: v for k, v in (("entity", entity), ("item_id", item_id)) if v})
    return json.dumps(body).encode()


def parse(data: bytes, attributes: dict[str, str] | None = None) -> Event | Malformed:
    """One Pub/Sub message body (and attributes) as an Event, or why not."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; RecursionError: nested too deep
        return Malformed("not_json", f"body is not JSON ({len(data)} bytes)")
    if not isinstance(body, dict):
        return Malformed("not_object", f"body is a JSON {type(body).__name__}, not an object")
    kind = body.get("event") or body.get("type") or (attributes or {}).get("type")
    if kind == ITEM_ADDED:
        queue = _text(body.get("queue"))
        if queue is None:
            return Malformed("missing_field", f"{ITEM_ADDED} without `queue`")
        return Event(ITEM_ADDED, queue=queue, entity=_text(body.get("entity")), item_id=_text(body.get("item_id")))
    if isinstance(kind, str) and kind.startswith("watchdog."):
        return _watchdog(body)
    if "logName" in body or "jsonPayload" in body or "protoPayload" in body:
        return _log_entry(body)
    return Malformed("unknown_type", f"message type {kind!r} is not one the supervisor uses")
