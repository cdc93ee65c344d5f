"""A W&B stand-in: the GraphQL operations the supervisor and the launch agent use.

Items move PENDING → LEASED (popFromRunQueue) → CLAIMED (ackRunQueueItem), or → FAILED
(failRunQueueItem); a lease not acknowledged within `lease_timeout` returns the item to PENDING, as
on the real server. Requests need HTTP Basic `api:<key>`.

An operation is recognised by its name alone: the request's `operationName`, else the name its
document gives it (`query NAME`, `mutation NAME`). Every client it serves names its operations (the
agent's Python client sends `operationName: ""` with a named document, wandb-core sends both, the
supervisor's WandbClient a named document), so there is no fallback for anonymous documents: an
operation not in `OPERATIONS`, of the wrong kind, or anonymous, is answered with a GraphQL error naming
it and recorded in `unknown`, so a test fails loudly rather than trusting a made-up answer.

Runs exist once a job's training code starts one (`start_run`). A user stops a run as in the W&B UI
with `stop_run`, or over HTTP (`POST /sandbox/runs/<run id>/stop`; `GET /sandbox/runs` lists them):
the run is then `stopped` for whoever asks (the agent's RunStoppedStatus, the supervisor's
RunStopStatus) while it keeps its state until its job ends.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import graphql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from launch_supervisor.sandbox.faults import Faults


@dataclass(slots=True)
class QueueItem:
    id: str
    entity: str
    queue: str
    state: str = "PENDING"
    run_spec: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    created: float = field(default_factory=time.monotonic)
    leased_at: float | None = None
    enqueued_at: float = field(default_factory=time.time)
    leases: int = 0
    """popFromRunQueue calls that handed this item out (one per agent that took it)."""
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(message, stage) of each failRunQueueItem call."""
    failed_by: list[str] = field(default_factory=list)
    """The User-Agent of each failRunQueueItem call: who failed the item."""


@dataclass(slots=True)
class Run:
    """A W&B run, as the training code's own wandb client reports it."""

    state: str = "running"
    stopped: bool = False


REFUSALS = ("user is not logged in", "permission denied")
"""What W&B says, with HTTP 401, to a key it does not accept: `user is not logged in` (wandb issues
#7118 and #5319, `Error while calling W&B API: user is not logged in (<Response [401]>)`; the body
`{"errors":[{"message":"user is not logged in","path":["upsertBucket"],"extensions":{"code":
"PERMISSION_ERROR"}}]}` is quoted in public guides to that error) or `permission denied` (issues #2966
and #2657; issue #1239 quotes the body `{"errors":[{"message":"permission denied","path":
["upsertBucket"],"extensions":{"code":"PERMISSION_ERROR"}}],"data":{"upsertBucket":null}}`). The SDK
reads the message from `errors[].message` (`wandb/util.py::parse_backend_error_messages`)."""


OUTAGE_BODY = {"errors": [{"message": "service unavailable"}]}
"""The body of an outage's 5xx. W&B's is not documented (behind a load balancer it may not even be
JSON); clients act on the status alone and show the body as text (wandb-core's `{status}
encountered ({body}), retrying request`, printed by wandb/sdk/wandb_run.py)."""


def refusal_body(message: str, field_name: str | None) -> dict[str, Any]:
    """W&B's 401 body (see `REFUSALS`): the message, the path of the field refused, its code, and
    that field null when known."""
    error: dict[str, Any] = {"message": message, "extensions": {"code": "PERMISSION_ERROR"}}
    if field_name is None:
        return {"errors": [error]}
    return {"errors": [{**error, "path": [field_name]}], "data": {field_name: None}}


class UnsupportedError(ValueError):
    """A request the stand-in cannot answer faithfully (a filter it does not implement): answered with
    a GraphQL error and recorded in `unknown`, so a test fails and names it rather than trusting a
    made-up answer."""


class WandbStandIn:
    """The state of the W&B server and the ASGI app that serves it."""

    def __init__(self, api_key: str, lease_timeout: float = 60.0, refusal: str = REFUSALS[0]) -> None:
        self.api_key = api_key
        self.lease_timeout = lease_timeout
        self.refusal = refusal
        """The message of a 401 (one of `REFUSALS`: W&B words it either way)."""
        self.items: dict[str, QueueItem] = {}
        self.known_queues: set[str] = set()
        """Queues that exist (listing an unknown one answers runQueue: null, as W&B does)."""
        self.unknown_entities: set[str] = set()
        """Entities W&B does not know: their launch project is `project: null`."""
        self.listing = LISTINGS[0]
        """How `runQueueItems` orders items and whether it keeps finished ones (see `LISTINGS`)."""
        self.item_listings = 0
        """GetRunQueueItems requests for a first page (no `after`): listings, however many pages each."""
        self.runs: dict[tuple[str, str, str], Run] = {}
        """Runs by (entity, project, run id): none until a job's code starts one."""
        self.projects: set[tuple[str, str]] = set()
        """(entity, project) that exist: once a run or a bucket was created in them. Any other
        project answers `project: null`, as W&B does."""
        self.runs_page_cap: int | None = None
        """Most runs per RunStopStatus page, whatever `perPage` asks (to force paging)."""
        self.agents: dict[str, str] = {}
        """Launch agents registered (createLaunchAgent), by id, with their last status."""
        self.faults = Faults()
        self.outage: int | None = None
        """While set, every GraphQL and file_stream request answers this HTTP status (a W&B outage),
        with `OUTAGE_BODY`."""
        self.base_url = ""
        """Where this server is reached (set once it listens): upload URLs point here."""
        self.unknown: list[str] = []
        """Operations and paths the stand-in could not answer, by name: a test fails on any."""
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/graphql", self._graphql, methods=["POST"]),
                Route("/sdk/otel/v1/{signal}", self._otel, methods=["POST"]),
                Route("/files/{entity}/{project}/{run}/file_stream", self._file_stream, methods=["POST"]),
                Route("/upload/{path:path}", self._upload, methods=["PUT", "POST"]),
                Route("/sandbox/runs", self._list_runs, methods=["GET"]),
                Route("/sandbox/runs/{run_id}/stop", self._stop_run, methods=["POST"]),
                Route("/{path:path}", self._unknown_path, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
            ]
        )

    # -- state ----------------------------------------------------------------------------------

    def enqueue(self, entity: str, queue: str, run_spec: dict[str, Any] | None = None) -> str:
        self.known_queues.add(queue)
        number = next(self._ids)
        item_id = base64.b64encode(f"RunQueueItem:{number}".encode()).decode()
        self.items[item_id] = QueueItem(item_id, entity, queue, run_spec=run_spec or {})
        return item_id

    def add_history(self, entity: str, queue: str, count: int) -> list[str]:
        """`count` items the queue finished before now, older than any enqueued later: every third
        FAILED, the others CLAIMED with a run id (a queue with a long history)."""
        ids = []
        for n in range(count):
            item_id = self.enqueue(entity, queue, {"history": n})
            item = self.items[item_id]
            if n % 3 == 2:
                item.state = "FAILED"
                item.failures.append(("history", "run"))
            else:
                item.state, item.run_id = "CLAIMED", f"history{n:05d}"
            ids.append(item_id)
        return ids

    def queue_items(self, entity: str, queue: str) -> list[QueueItem]:
        return [i for i in self.items.values() if i.entity == entity and i.queue == queue]

    def expire_leases(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for item in self.items.values():
            if item.state == "LEASED" and item.leased_at is not None and now - item.leased_at >= self.lease_timeout:
                item.state, item.leased_at = "PENDING", None

    def pop(self, entity: str, queue: str) -> QueueItem | None:
        """Lease the oldest pending item, as popFromRunQueue does."""
        self.expire_leases()
        for item in sorted(self.queue_items(entity, queue), key=lambda i: i.created):
            if item.state == "PENDING":
                item.state, item.leased_at = "LEASED", time.monotonic()
                item.leases += 1
                return item
        return None

    def ack(self, item_id: str, run_id: str) -> bool:
        item = self.items.get(item_id)
        if item is None or item.state != "LEASED":
            return False
        item.state, item.run_id = "CLAIMED", run_id
        return True

    def fail(self, item_id: str, message: str, stage: str, caller: str = "") -> bool:
        item = self.items.get(item_id)
        if item is None:
            return False
        item.failures.append((message, stage))
        item.failed_by.append(caller)
        item.state = "FAILED"
        return True

    def run_of(self, item_id: str) -> str | None:
        """The run id the item was acknowledged with (its run exists once its job's code starts)."""
        item = self.items.get(item_id)
        return None if item is None else item.run_id

    def runs_named(self, run_id: str) -> list[Run]:
        """The runs with this id, in any entity and project (ids are random, so at most one)."""
        return [run for (_, _, name), run in self.runs.items() if name == run_id]

    def start_run(self, entity: str, project: str, run_id: str) -> Run:
        """What `wandb.init` in a job's code does: the run (and its project) exist, `running`."""
        self.projects.add((entity, project))
        return self.runs.setdefault((entity, project, run_id), Run())

    def end_run(self, entity: str, project: str, run_id: str, state: str) -> None:
        """The run's code ended (finished, failed, killed); a run never started stays absent."""
        run = self.runs.get((entity, project, run_id))
        if run is not None and run.state == "running":
            run.state = state

    def stop_run(self, run_id: str) -> bool:
        """Stop the run as a user does in the W&B UI: it is `stopped` from now on, its state unchanged
        until its code ends. False when no run has that id (its job's code has not started it)."""
        runs = self.runs_named(run_id)
        for run in runs:
            run.stopped = True
        return bool(runs)

    # -- HTTP -----------------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, key = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == "api" and secrets.compare_digest(key, self.api_key)

    async def _otel(self, request: Request) -> Response:
        return Response(status_code=204)

    async def _file_stream(self, request: Request) -> Response:
        """The agent's run streams its console and history here; accepted and dropped."""
        if self.outage is not None:
            return JSONResponse(OUTAGE_BODY, status_code=self.outage)
        if not self._authorised(request):
            return JSONResponse(refusal_body(self.refusal, None), status_code=401)
        await request.body()
        # No source found for this body (W&B does not document file_stream's answer): the agent's
        # runs have streamed against it; the tests rely on its status alone.
        return JSONResponse({"exitcode": None, "limits": {}})

    async def _unknown_path(self, request: Request) -> Response:
        """A path the stand-in does not serve: recorded, so a test fails and names it."""
        self.unknown.append(f"{request.method} {request.url.path}")
        return JSONResponse({"errors": [{"message": f"path not served by the stand-in: {request.url.path}"}]}, 404)

    async def _list_runs(self, request: Request) -> Response:
        """The runs, for a user of the sandbox to pick one to stop (no key needed: loopback only)."""
        items = {i.run_id: i.id for i in self.items.values() if i.run_id}
        runs = [
            {"entity": e, "project": p, "run_id": n, "state": r.state, "stopped": r.stopped, "item_id": items.get(n)}
            for (e, p, n), r in self.runs.items()
        ]
        return JSONResponse({"runs": runs})

    async def _stop_run(self, request: Request) -> Response:
        """Stop a run, as the W&B UI's Stop button does."""
        run_id = request.path_params["run_id"]
        if not self.stop_run(run_id):
            message = f"no run {run_id}: a run exists once its CustomJob runs (see GET /sandbox/runs)"
            return JSONResponse({"error": message}, status_code=404)
        return JSONResponse({"run_id": run_id, "stopped": True})

    async def _upload(self, request: Request) -> Response:
        await request.body()
        return Response(status_code=200)

    async def _graphql(self, request: Request) -> Response:
        try:
            body = await request.json()
            query = str(body["query"])
            variables = body.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"errors": [{"message": "malformed GraphQL request"}]}, status_code=400)
        if self.outage is not None:
            return JSONResponse(OUTAGE_BODY, status_code=self.outage)
        name, problem = _resolve(query, body.get("operationName"))
        operation = OPERATIONS.get(name) if problem is None else None
        fault = self.faults.take(name)
        if fault is not None:
            if fault.delay:
                await anyio.sleep(fault.delay)
            if fault.status is not None:
                return JSONResponse({"errors": [{"message": "injected fault"}]}, status_code=int(fault.status))
            if fault.body is not None:
                return Response(fault.body, media_type="application/json")
        if not self._authorised(request):
            return JSONResponse(refusal_body(self.refusal, _first_field(query)), status_code=401)
        if operation is None or problem is not None:
            unknown = name if problem is None else f"{name}: {problem}"
            self.unknown.append(unknown)
            return JSONResponse({"errors": [{"message": f"operation not supported by the stand-in: {unknown}"}]})
        variables = {**variables, CALLER: request.headers.get("user-agent", ""), DOCUMENT: query}
        try:
            data = operation.handler(self, variables)
        except UnsupportedError as exc:
            self.unknown.append(f"{name}: {exc}")
            return JSONResponse({"errors": [{"message": f"not supported by the stand-in: {exc}"}]})
        return JSONResponse({"data": data})


CALLER = "__user_agent"
"""Added to the variables handlers see: the request's User-Agent."""
DOCUMENT = "__document"
"""Added to the variables handlers see: the request's GraphQL document (for literal arguments)."""


def _definitions(query: str) -> list[tuple[str, str]] | None:
    """The (kind, name) of each operation the document defines, in order; name "" when anonymous
    (`query { … }`, or the shorthand `{ … }`). None when the document does not parse."""
    try:
        document = graphql.parse(query)
    except graphql.GraphQLError:
        return None
    return [
        (d.operation.value, d.name.value if d.name else "")
        for d in document.definitions
        if isinstance(d, graphql.OperationDefinitionNode)
    ]


def _first_field(query: str) -> str | None:
    """The first field the document selects (what W&B names in a refusal's `path`), if it parses."""
    try:
        fields = _fields(graphql.parse(query))
    except graphql.GraphQLError:
        return None
    return fields[0].name.value if fields else None


def _resolve(query: str, operation_name: Any) -> tuple[str, str | None]:
    """The operation to answer: its name, and why it cannot be answered (None when it can).

    `operationName`, when given (not null or ""), must name an operation of the document; else the
    document must hold exactly one, and it must be named. A name is always returned, for the error
    and `unknown`: the operation's, `anonymous query` (or mutation), or the document's start."""
    head = " ".join(query.split())[:60]
    definitions = _definitions(query)
    if definitions is None:
        return head or "(empty document)", "not a GraphQL document"
    named = {name: kind for kind, name in definitions if name}
    if operation_name not in (None, ""):
        name = str(operation_name)
        if name not in named:
            return name, f"operationName names no operation of the document ({head})"
        kind = named[name]
    elif not definitions:
        return head or "(empty document)", "no operation in the document"
    elif len(definitions) > 1:
        return head, f"{len(definitions)} operations in the document and no operationName to choose one"
    else:
        kind, name = definitions[0]
        if not name:
            return f"anonymous {kind}", head
    known = OPERATIONS.get(name)
    if known is not None and known.kind != kind:
        return name, f"a {kind}, but {name} is a {known.kind}"
    return name, None


LISTINGS = ("waiting_first", "oldest_first")
"""How the stand-in orders `runQueueItems`. Neither W&B's schema nor the SDK says in what order the
server lists a queue's items or whether finished ones stay listed (the SDK's own reader takes
`first: 100` and never pages: `wandb/apis/public/jobs.py`), so both plausible answers are served:
- `waiting_first`: PENDING, then LEASED, then CLAIMED items, each oldest first; FAILED ones dropped;
- `oldest_first`: every item the queue ever had, whatever its state, oldest first (history kept).
"""
ITEMS_PROJECT = "model-registry"
"""The project launch queues live in (`LAUNCH_DEFAULT_PROJECT`, `wandb/sdk/launch/utils.py`)."""
WAITING_ORDER = {"PENDING": 0, "LEASED": 1, "CLAIMED": 2}


def _listed(server: WandbStandIn, items: list[QueueItem]) -> list[QueueItem]:
    if server.listing == "oldest_first":
        return sorted(items, key=lambda i: i.created)
    waiting = (i for i in items if i.state in WAITING_ORDER)
    return sorted(waiting, key=lambda i: (WAITING_ORDER[i.state], i.created))


def _items(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    """A page of the queue's items, in the order `listing` says, with Relay's `pageInfo` and
    graphql-relay's offset cursors (`arrayconnection:N`, base64; how W&B encodes its cursors is not
    documented, and clients pass them back unread). A project other than the launch
    project, or an entity W&B does not know, is `project: null`; a queue it does not know,
    `runQueue: null` (both nullable in W&B's schema)."""
    server.expire_leases()
    entity, queue = str(v.get("entityName")), str(v.get("runQueue"))
    if v.get("projectName") != ITEMS_PROJECT or entity in server.unknown_entities:
        return {"project": None}
    items = server.queue_items(entity, queue)
    if not items and queue not in server.known_queues:
        return {"project": {"runQueue": None}}
    listed = _listed(server, items)
    arguments = _arguments(v[DOCUMENT], v, "runQueueItems")
    first = arguments.get("first")
    if first is not None and (not isinstance(first, int) or isinstance(first, bool) or first < 0):
        raise UnsupportedError(f"runQueueItems first {first!r}")
    start = 0 if arguments.get("after") is None else _offset(arguments["after"]) + 1
    if start == 0:
        server.item_listings += 1
    # Without `first` (the SDK's legacy reader sends none) every item is listed: no source says what
    # W&B does then.
    page = listed[start:] if first is None else listed[start : start + first]
    edges = [
        {"node": {"id": i.id, "state": i.state, "associatedRunId": i.run_id}, "cursor": _offset_cursor(start + n)}
        for n, i in enumerate(page)
    ]
    info = {
        "hasNextPage": start + len(page) < len(listed),
        "hasPreviousPage": start > 0,
        "startCursor": edges[0]["cursor"] if edges else None,
        "endCursor": edges[-1]["cursor"] if edges else None,
    }
    return {"project": {"runQueue": {"runQueueItems": {"edges": edges, "pageInfo": info}}}}


def _offset_cursor(offset: int) -> str:
    return _encode_cursor("arrayconnection:", str(offset))


def _offset(cursor: Any) -> int:
    number = _decode_cursor("arrayconnection:", cursor)
    if not number.isdigit():
        raise UnsupportedError(f"cursor {cursor!r} was not given by the stand-in")
    return int(number)


def _encode_cursor(prefix: str, value: str) -> str:
    return base64.b64encode(f"{prefix}{value}".encode()).decode()


def _decode_cursor(prefix: str, cursor: Any) -> str:
    """What `_encode_cursor(prefix, …)` encoded; any other cursor raises UnsupportedError."""
    try:
        text = base64.b64decode(str(cursor), validate=True).decode()
    except ValueError:
        text = ""
    if not text.startswith(prefix):
        raise UnsupportedError(f"cursor {cursor!r} was not given by the stand-in")
    return text.removeprefix(prefix)


def _arguments(document: str, variables: dict[str, Any], field_name: str) -> dict[str, Any]:
    """The arguments of the first `field_name` field of the document, variables resolved."""
    node = next((n for n in _fields(graphql.parse(document)) if n.name.value == field_name), None)
    if node is None:
        return {}
    values = {a.name.value: graphql.value_from_ast_untyped(a.value, variables) for a in node.arguments}
    return {name: None if value is graphql.Undefined else value for name, value in values.items()}


def _fields(document: graphql.DocumentNode) -> list[graphql.FieldNode]:
    """Every field the document selects, depth first."""
    found: list[graphql.FieldNode] = []

    class Collect(graphql.Visitor):
        def enter_field(self, node: graphql.FieldNode, *_: Any) -> None:
            found.append(node)

    graphql.visit(document, Collect())
    return found


def _fail(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    ok = server.fail(str(v.get("runQueueItemId")), str(v.get("message", "")), str(v.get("stage", "")), v[CALLER])
    return {"failRunQueueItem": {"success": ok}}


def _pop(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    item = server.pop(str(v.get("entity")), str(v.get("queueName")))
    if item is None:
        return {"popFromRunQueue": None}
    return {"popFromRunQueue": {"runQueueItemId": item.id, "runSpec": item.run_spec}}


def _ack(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    return {"ackRunQueueItem": {"success": server.ack(str(v.get("itemId")), str(v.get("runId")))}}


def _run_queues(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    entity = str(v.get("entity"))
    names = sorted(set(server.known_queues) | {i.queue for i in server.items.values() if i.entity == entity})
    # `createdBy` is an Int in W&B's schema: the creating user's numeric id, here the sandbox's one
    # user, `User:1` (the Viewer's id). The schema is not published with the SDK and no public copy
    # was found to cite; the SDK selects the field untyped and compares it with an entity name
    # (`q["createdBy"] == self.default_entity`, wandb/sdk/launch/api.py), which an Int never matches,
    # so its queue check rests on `access` alone, as it does against W&B.
    queues = [{"id": _queue_id(q), "name": q, "createdBy": 1, "access": "PROJECT"} for q in names]
    return {"project": {"runQueues": queues}}


def _queue_id(name: str) -> str:
    return base64.b64encode(f"RunQueue:{name}".encode()).decode()


def _create_agent(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    agent_id = base64.b64encode(f"LaunchAgent:{next(server._ids)}".encode()).decode()  # noqa: SLF001
    server.agents[agent_id] = "POLLING"
    return {"createLaunchAgent": {"launchAgentId": agent_id}}


def _update_agent(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    agent_id = str(v.get("agentId"))
    if agent_id not in server.agents:
        return {"updateLaunchAgent": {"success": False}}
    server.agents[agent_id] = str(v.get("agentStatus"))
    return {"updateLaunchAgent": {"success": True}}


def _get_agent(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    agent_id = str(v.get("agentId"))
    status = server.agents.get(agent_id)
    if status is None:
        return {"launchAgent": None}
    fields: dict[str, Any] = {
        "id": agent_id,
        "name": agent_id,
        "runQueues": [],
        "hostname": "sandbox",
        "heartbeatAt": None,
    }
    return {"launchAgent": {**fields, "agentStatus": status, "stopPolling": False}}


def _viewer(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    user = {"id": "VXNlcjox", "entity": "sandbox", "username": "sandbox", "email": "sandbox@localhost"}
    return {"viewer": {**user, "flags": "{}", "teams": {"edges": []}}}


def _entity_is_team(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    entity = str(v.get("entity"))
    return {"entity": {"id": base64.b64encode(f"Entity:{entity}".encode()).decode(), "isTeam": True}}


def _upsert_bucket(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    """The agent's own run (and a job's run): created or updated, never stored."""
    name = str(v.get("name") or secrets.token_hex(4))
    entity = str(v.get("entity") or "sandbox")
    project = str(v.get("project") or "uncategorized")
    server.projects.add((entity, project))
    bucket = {
        "id": base64.b64encode(f"Run:{entity}/{project}/{name}".encode()).decode(),
        "name": name,
        "displayName": v.get("displayName") or name,
        "description": v.get("description"),
        "config": v.get("config") or "{}",
        "sweepName": v.get("sweep"),
        "project": {"id": _queue_id(project), "name": project, "entity": {"id": _queue_id(entity), "name": entity}},
        "historyLineCount": 0,
    }
    return {"upsertBucket": {"bucket": bucket, "inserted": True}}


def _no_organization(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    return {"entity": {"organization": None}}


def _server_features(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    return {"serverInfo": {"features": []}}


def _create_run_files(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    """Upload URLs on this server: the run's files are accepted and dropped."""
    run = str(v.get("run"))
    files = [{"name": name, "uploadUrl": f"{server.base_url}/upload/{run}/{name}"} for name in v.get("files") or []]
    return {"createRunFiles": {"runID": run, "uploadHeaders": [], "files": files}}


def _run(server: WandbStandIn, v: dict[str, Any], project_key: str, name_key: str) -> dict[str, Any]:
    entity = str(v.get("entityName") or v.get("entity"))
    run = server.runs.get((entity, str(v.get(project_key)), str(v.get(name_key))))
    return {"project": {"run": None if run is None else {"state": run.state, "stopped": run.stopped}}}


def _run_stopped(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    """A run W&B has not heard of yet (its job has not started) is `run: null`, as on the server."""
    return _run(server, v, "projectName", "runId")


def _run_state(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    return _run(server, v, "project", "name")


DEFAULT_PER_PAGE = 50


def _names_in(filters: Any) -> list[str]:
    """The run names of a `{"name": {"$in": [...]}}` filter (a JSON string, as JSONString is sent);
    any other filter raises UnsupportedError."""
    try:
        parsed = json.loads(filters) if isinstance(filters, str) else None
    except ValueError:
        parsed = None
    names = parsed.get("name") if isinstance(parsed, dict) and len(parsed) == 1 else None
    wanted = names.get("$in") if isinstance(names, dict) and len(names) == 1 else None
    if not isinstance(wanted, list) or not all(isinstance(n, str) for n in wanted):
        raise UnsupportedError(f'runs filter {filters!r}: only {{"name": {{"$in": [names]}}}} is answered')
    return list(dict.fromkeys(wanted))


def _run_stop_status(server: WandbStandIn, v: dict[str, Any]) -> dict[str, Any]:
    """The supervisor's batched question: the named runs of one project, with `stopped` and `state`,
    in the order asked, `perPage` (or `runs_page_cap`) at a time from after `cursor`; runs W&B has not
    heard of are left out; a project that does not exist is `project: null`, as on the server."""
    entity, project = str(v.get("entity")), str(v.get("project"))
    names = _names_in(v.get("filters"))
    per_page = v.get("perPage")
    if per_page is None:
        per_page = DEFAULT_PER_PAGE
    if not isinstance(per_page, int) or isinstance(per_page, bool) or per_page < 0:
        raise UnsupportedError(f"perPage {per_page!r}")
    if server.runs_page_cap is not None:
        per_page = min(per_page, server.runs_page_cap)
    if (entity, project) not in server.projects:
        return {"project": None}
    found = [n for n in names if (entity, project, n) in server.runs]
    start = 0
    if v.get("cursor") is not None:
        after = _cursor_name(v["cursor"])
        if after not in found:
            raise UnsupportedError(f"cursor {v['cursor']!r} names no run of this answer")
        start = found.index(after) + 1
    page = found[start : start + per_page]
    runs = [(n, server.runs[(entity, project, n)]) for n in page]
    edges = [{"node": {"name": n, "stopped": r.stopped, "state": r.state}} for n, r in runs]
    end = _cursor(page[-1]) if page else None
    info = {"endCursor": end, "hasNextPage": start + len(page) < len(found)}
    return {"project": {"runs": {"edges": edges, "pageInfo": info}}}


def _cursor(name: str) -> str:
    return _encode_cursor("Run:", name)


def _cursor_name(cursor: Any) -> str:
    return _decode_cursor("Run:", cursor)


Handler = Callable[[WandbStandIn, dict[str, Any]], dict[str, Any]]
"""(server, variables) → the answer's `data`."""


@dataclass(frozen=True, slots=True)
class Operation:
    """An operation the stand-in answers."""

    kind: str
    """`query` or `mutation`: a document of the other kind with this name is refused."""
    handler: Handler


OPERATIONS: dict[str, Operation] = {
    # The supervisor's WandbClient (supervisor/engines/sources/wandb.py): named documents.
    "GetRunQueueItems": Operation("query", _items),
    "failRunQueueItem": Operation("mutation", _fail),
    "RunStopStatus": Operation("query", _run_stop_status),
    # The launch agent (wandb 0.31), its Python client: named documents, `operationName: ""`.
    "Viewer": Operation("query", _viewer),
    "EntityIsTeam": Operation("query", _entity_is_team),
    "ProjectRunQueues": Operation("query", _run_queues),
    "createLaunchAgent": Operation("mutation", _create_agent),
    "updateLaunchAgent": Operation("mutation", _update_agent),
    "LaunchAgent": Operation("query", _get_agent),
    "popFromRunQueue": Operation("mutation", _pop),
    "ackRunQueueItem": Operation("mutation", _ack),
    "RunStoppedStatus": Operation("query", _run_stopped),
    "RunState": Operation("query", _run_state),
    # The launch agent's own run, through wandb-core: named documents and `operationName`.
    "ServerFeaturesQuery": Operation("query", _server_features),
    "OrganizationCoreWeaveOrganizationID": Operation("query", _no_organization),
    "UpsertBucket": Operation("mutation", _upsert_bucket),
    "CreateRunFiles": Operation("mutation", _create_run_files),
}
"""The operations answered, by the name their clients give them: what the real agent and the
supervisor send (as recorded running tests/launcher/test_real_agent.py and tests/sandbox/), no more."""
