"""The W&B stand-in over HTTP: operations dispatched by name (every one its clients send answered,
any other refused and named), the supervisor's batched RunStopStatus question, a run stopped as from
the W&B UI (also seen by the agent's RunStoppedStatus), and faults on the new operation."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from launch_supervisor.engines.sources.wandb import ITEMS_QUERY, WandbClient
from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.wandb_server import OPERATIONS, REFUSALS, WandbStandIn
from launch_supervisor.surface.asgi import serve_asgi

pytestmark = pytest.mark.anyio

KEY = "k" * 40
ENTITY, PROJECT = "team", "train"
RUN_STOP_STATUS = """
query RunStopStatus($entity: String!, $project: String!, $filters: JSONString, $perPage: Int) {
  project(name: $project, entityName: $entity) {
    runs(filters: $filters, first: $perPage) {
      edges { node { name stopped state } }
      pageInfo { endCursor hasNextPage }
    }
  }
}
"""
RUN_STOPPED_STATUS = """
query RunStoppedStatus($projectName: String, $entityName: String, $runId: String!) {
    project(name:$projectName, entityName:$entityName) {
        run(name:$runId) {
            stopped
        }
    }
}
"""
"""The agent's document (wandb.sdk.launch.api, check_stop_requested)."""


@asynccontextmanager
async def served(wandb: WandbStandIn) -> AsyncIterator[httpx.AsyncClient]:
    """The stand-in on a loopback port, and a client authenticated as the supervisor is."""
    async with anyio.create_task_group() as tg:
        host, port = await tg.start(serve_asgi, wandb.app, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", auth=("api", KEY), timeout=5) as client:
            yield client
        tg.cancel_scope.cancel()


async def stop_status(
    client: httpx.AsyncClient, names: list[str], *, project: str = PROJECT, filters: Any = None
) -> httpx.Response:
    variables = {
        "entity": ENTITY,
        "project": project,
        "filters": json.dumps({"name": {"$in": names}}) if filters is None else filters,
        "perPage": len(names),
    }
    return await client.post("/graphql", json={"query": RUN_STOP_STATUS, "variables": variables})


def with_runs(*names: str) -> WandbStandIn:
    wandb = WandbStandIn(KEY)
    for name in names:
        wandb.start_run(ENTITY, PROJECT, name)
    return wandb


async def test_run_stop_status_answers_the_runs_it_knows_in_the_order_asked() -> None:
    """One call for many runs: each known run with `stopped` and `state`; unknown ones left out."""
    wandb = with_runs("r1", "r2", "r3")
    wandb.stop_run("r2")
    wandb.end_run(ENTITY, PROJECT, "r3", "finished")
    async with served(wandb) as client:
        answer = (await stop_status(client, ["r3", "never-started", "r2", "r1"])).json()
    runs = answer["data"]["project"]["runs"]
    assert [edge["node"] for edge in runs["edges"]] == [
        {"name": "r3", "stopped": False, "state": "finished"},
        {"name": "r2", "stopped": True, "state": "running"},
        {"name": "r1", "stopped": False, "state": "running"},
    ]
    assert runs["pageInfo"]["hasNextPage"] is False
    assert runs["pageInfo"]["endCursor"]
    assert wandb.faults.calls["RunStopStatus"] == 1
    assert wandb.unknown == []


async def test_run_stop_status_pages_at_per_page_and_goes_on_from_the_cursor() -> None:
    """`perPage` (or the stand-in's cap, to force paging) at a time; `cursor` (the last endCursor)
    goes on after that page, as the production client sends it."""
    wandb = with_runs("r1", "r2", "r3")
    query = RUN_STOP_STATUS.replace("$perPage: Int)", "$perPage: Int, $cursor: String)")
    query = query.replace("first: $perPage)", "first: $perPage, after: $cursor)")
    variables: dict[str, Any] = {
        "entity": ENTITY,
        "project": PROJECT,
        "filters": '{"name": {"$in": ["r1", "r2", "r3"]}}',
        "perPage": 2,
    }
    pages = []
    async with served(wandb) as client:
        for _ in range(3):
            answer = await client.post("/graphql", json={"query": query, "variables": variables})
            runs = answer.json()["data"]["project"]["runs"]
            pages.append([edge["node"]["name"] for edge in runs["edges"]])
            if not runs["pageInfo"]["hasNextPage"]:
                break
            variables["cursor"] = runs["pageInfo"]["endCursor"]
        wandb.runs_page_cap = 1
        capped = (await stop_status(client, ["r1", "r2", "r3"])).json()["data"]["project"]["runs"]
        bad = (await client.post("/graphql", json={"query": query, "variables": {**variables, "cursor": "x"}})).json()
    assert pages == [["r1", "r2"], ["r3"]]
    assert [edge["node"]["name"] for edge in capped["edges"]] == ["r1"]
    assert capped["pageInfo"]["hasNextPage"] is True
    assert "cursor" in bad["errors"][0]["message"]
    assert wandb.unknown == ["RunStopStatus: cursor 'x' was not given by the stand-in"]


async def test_the_production_client_reads_the_stopped_runs_in_one_request() -> None:
    wandb = with_runs("r1", "r2", "r3")
    wandb.stop_run("r2")
    wandb.stop_run("r3")
    async with served(wandb) as client:
        production = WandbClient(str(client.base_url), KEY, timeout=2)
        try:
            stopped = await production.stopped_runs(ENTITY, PROJECT, ["r1", "r2", "r3", "not-started"])
            elsewhere = await production.stopped_runs(ENTITY, "no-such-project", ["r2"])
        finally:
            await production.aclose()
    assert stopped == {"r2", "r3"}
    assert elsewhere == set()
    assert wandb.faults.calls["RunStopStatus"] == 2
    assert wandb.unknown == []


async def test_a_project_that_does_not_exist_is_null_one_without_the_runs_has_none() -> None:
    wandb = with_runs("r1")
    async with served(wandb) as client:
        missing = (await stop_status(client, ["r1"], project="no-such-project")).json()
        empty = (await stop_status(client, ["not-yet"])).json()
    assert missing == {"data": {"project": None}}
    assert empty["data"]["project"]["runs"]["edges"] == []


@pytest.mark.parametrize(
    "filters",
    [
        None,
        "not json",
        json.dumps({"state": "running"}),
        json.dumps({"name": "r1"}),
        json.dumps({"name": {"$nin": ["r1"]}}),
        json.dumps({"name": {"$in": ["r1"]}, "state": "running"}),
        json.dumps({"name": {"$in": [1]}}),
    ],
)
async def test_a_filter_it_does_not_implement_fails_loudly(filters: str | None) -> None:
    """Answered with a GraphQL error and recorded as unknown, never with a made-up list."""
    wandb = with_runs("r1")
    async with served(wandb) as client:
        variables = {"entity": ENTITY, "project": PROJECT, "filters": filters, "perPage": 1}
        answer = (await client.post("/graphql", json={"query": RUN_STOP_STATUS, "variables": variables})).json()
    assert "data" not in answer
    assert "not supported by the stand-in" in answer["errors"][0]["message"]
    assert len(wandb.unknown) == 1
    assert wandb.unknown[0].startswith("RunStopStatus: ")


async def test_faults_target_run_stop_status() -> None:
    """A planned failure answers the next RunStopStatus only; every call is counted."""
    wandb = with_runs("r1")
    wandb.faults.add("RunStopStatus", Fault(status=503))
    async with served(wandb) as client:
        failed = await stop_status(client, ["r1"])
        answered = await stop_status(client, ["r1"])
    assert failed.status_code == 503
    assert answered.json()["data"]["project"]["runs"]["edges"][0]["node"]["name"] == "r1"
    assert wandb.faults.calls["RunStopStatus"] == 2
    assert wandb.faults.calls["RunStoppedStatus"] == 0


async def test_a_stopped_run_is_stopped_for_the_agent_too() -> None:
    """stop_run is the W&B UI's Stop: the agent's RunStoppedStatus sees it; the state stays."""
    wandb = with_runs("r1")
    assert wandb.stop_run("no-such-run") is False
    assert wandb.stop_run("r1") is True
    async with served(wandb) as client:
        variables = {"projectName": PROJECT, "entityName": ENTITY, "runId": "r1"}
        answer = (await client.post("/graphql", json={"query": RUN_STOPPED_STATUS, "variables": variables})).json()
    assert answer == {"data": {"project": {"run": {"state": "running", "stopped": True}}}}
    wandb.end_run(ENTITY, PROJECT, "r1", "killed")
    assert [(run.state, run.stopped) for run in wandb.runs_named("r1")] == [("killed", True)]


async def test_the_run_of_an_item_is_the_one_it_was_acknowledged_with() -> None:
    wandb = WandbStandIn(KEY)
    item_id = wandb.enqueue(ENTITY, "q")
    assert wandb.run_of(item_id) is None
    assert wandb.pop(ENTITY, "q") is not None
    wandb.ack(item_id, "r9")
    assert wandb.run_of(item_id) == "r9"
    assert wandb.run_of("no-such-item") is None


async def test_a_user_lists_and_stops_runs_over_http() -> None:
    """GET /sandbox/runs names each run with its item; POST …/stop stops one, or says why not."""
    wandb = WandbStandIn(KEY)
    item_id = wandb.enqueue(ENTITY, "q")
    wandb.pop(ENTITY, "q")
    wandb.ack(item_id, "r1")
    async with served(wandb) as client, httpx.AsyncClient(base_url=str(client.base_url)) as anyone:
        early = await anyone.post("/sandbox/runs/r1/stop")
        wandb.start_run(ENTITY, PROJECT, "r1")
        listed = (await anyone.get("/sandbox/runs")).json()
        stopped = await anyone.post("/sandbox/runs/r1/stop")
    assert early.status_code == 404
    assert "GET /sandbox/runs" in early.json()["error"]
    assert listed == {
        "runs": [
            {
                "entity": ENTITY,
                "project": PROJECT,
                "run_id": "r1",
                "state": "running",
                "stopped": False,
                "item_id": item_id,
            }
        ]
    }
    assert stopped.status_code == 200
    assert stopped.json() == {"run_id": "r1", "stopped": True}
    assert [run.stopped for run in wandb.runs_named("r1")] == [True]
    assert wandb.unknown == []


# -- dispatch by operation name --------------------------------------------------------------------

AGENT = "W&B Public Client 0.31.0"
"""The launch agent's Python client: a named document, `operationName: ""`."""
CORE = "wandb-core"
"""The agent's run, through wandb-core: a named document and its `operationName`."""
SENT = [
    # (client, document, variables, the answer's top-level field), as recorded from the real agent
    # (tests/launcher/test_real_agent.py) and the supervisor's WandbClient, documents cut down.
    (
        AGENT,
        "query Viewer { viewer { id entity username email flags teams { edges { node { name } } } } }",
        {},
        "viewer",
    ),
    (
        AGENT,
        "query EntityIsTeam($entity: String!) { entity(name: $entity) { id isTeam } }",
        {"entity": ENTITY},
        "entity",
    ),
    (
        AGENT,
        "query ProjectRunQueues($entity: String!, $projectName: String!){ project(entityName: $entity, "
        "name: $projectName) { runQueues { id name createdBy access } } }",
        {"entity": ENTITY, "projectName": "model-registry"},
        "project",
    ),
    (
        AGENT,
        "mutation createLaunchAgent($entity: String!, $project: String!, $queues: [ID!]!, $hostname: String!) "
        "{ createLaunchAgent(input: {entityName: $entity, projectName: $project, runQueues: $queues, "
        "hostname: $hostname}) { launchAgentId } }",
        {"entity": ENTITY, "project": "model-registry", "queues": [], "hostname": "vm"},
        "createLaunchAgent",
    ),
    (
        AGENT,
        "mutation updateLaunchAgent($agentId: ID!, $agentStatus: String){ updateLaunchAgent(input: "
        "{ launchAgentId: $agentId agentStatus: $agentStatus }) { success } }",
        {"agentId": "a", "agentStatus": "RUNNING"},
        "updateLaunchAgent",
    ),
    (
        AGENT,
        "query LaunchAgent($agentId: ID!) { launchAgent(id: $agentId) { id name runQueues hostname agentStatus "
        "stopPolling heartbeatAt } }",
        {"agentId": "a"},
        "launchAgent",
    ),
    (
        AGENT,
        "mutation popFromRunQueue($entity: String!, $project: String!, $queueName: String!, $launchAgentId: ID) "
        "{ popFromRunQueue(input: { entityName: $entity, projectName: $project, queueName: $queueName, "
        "launchAgentId: $launchAgentId }) { runQueueItemId runSpec } }",
        {"entity": ENTITY, "project": "model-registry", "queueName": "q"},
        "popFromRunQueue",
    ),
    (
        AGENT,
        "mutation ackRunQueueItem($itemId: ID!, $runId: String!) { ackRunQueueItem(input: { runQueueItemId: "
        "$itemId, runName: $runId }) { success } }",
        {"itemId": "i", "runId": "r1"},
        "ackRunQueueItem",
    ),
    (AGENT, RUN_STOPPED_STATUS, {"projectName": PROJECT, "entityName": ENTITY, "runId": "r1"}, "project"),
    (
        AGENT,
        "query RunState($project: String!, $entity: String!, $name: String!) { project(name: $project, "
        "entityName: $entity) { run(name: $name) { state } } }",
        {"project": PROJECT, "entity": ENTITY, "name": "r1"},
        "project",
    ),
    (
        AGENT,
        "mutation failRunQueueItem($runQueueItemId: ID!, $message: String!, $stage: String!, $filePaths: "
        "[String!]) { failRunQueueItem(input: { runQueueItemId: $runQueueItemId message: $message stage: $stage "
        "filePaths: $filePaths }) { success } }",
        {"runQueueItemId": "i", "message": "m", "stage": "agent", "filePaths": None},
        "failRunQueueItem",
    ),
    (CORE, "query ServerFeaturesQuery { serverInfo { features { name isEnabled } } }", {}, "serverInfo"),
    (
        CORE,
        "query OrganizationCoreWeaveOrganizationID ($entityName: String!) { entity(name: $entityName) "
        "{ organization { coreWeaveOrganizationId } } }",
        {"entityName": ENTITY},
        "entity",
    ),
    (
        CORE,
        "mutation UpsertBucket ($name: String, $project: String, $entity: String) { upsertBucket(input: "
        "{name:$name,modelName:$project,entityName:$entity}) { bucket { id name } inserted } }",
        {"name": "r1", "project": PROJECT, "entity": ENTITY},
        "upsertBucket",
    ),
    (
        CORE,
        "mutation CreateRunFiles ($entity: String!, $project: String!, $run: String!, $files: [String!]!) "
        "{ createRunFiles(input: {entityName:$entity,projectName:$project,runName:$run,files:$files}) "
        "{ runID uploadHeaders files { name uploadUrl } } }",
        {"entity": ENTITY, "project": PROJECT, "run": "r1", "files": ["output.log"]},
        "createRunFiles",
    ),
]


def operation_of(query: str) -> str:
    name = re.search(r"(?:query|mutation)\s+(\w+)", query)
    assert name is not None
    return name.group(1)


def sent_as(client: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The request body as that client sends it (the agent's Viewer goes with its operationName)."""
    name = operation_of(query)
    return {"query": query, "variables": variables, "operationName": name if client == CORE or name == "Viewer" else ""}


async def test_every_operation_the_agent_sends_is_answered_as_its_client_sends_it() -> None:
    """The real agent's operations, named in the document, with `operationName` "" or the name."""
    wandb = with_runs("r1")
    wandb.enqueue(ENTITY, "q")
    async with served(wandb) as client:
        answers = [
            (await client.post("/graphql", json=sent_as(who, query, variables))).json()
            for who, query, variables, _ in SENT
        ]
    assert [sorted(answer) for answer in answers] == [["data"]] * len(SENT), answers
    assert [next(iter(answer["data"])) for answer in answers] == [field for *_, field in SENT]
    assert wandb.unknown == []
    supervisor = {"GetRunQueueItems", "RunStopStatus", "failRunQueueItem"}
    assert set(OPERATIONS) == {operation_of(query) for _, query, _, _ in SENT} | supervisor, "all, no more"


async def test_the_production_client_operations_are_answered_and_counted_under_their_names() -> None:
    """The supervisor's own documents (no operationName), each counted under its operation name."""
    wandb = with_runs("r1")
    item_id = wandb.enqueue(ENTITY, "q")
    async with served(wandb) as client:
        production = WandbClient(str(client.base_url), KEY, timeout=2)
        try:
            items = await production.list_items(ENTITY, "q")
            failed = await production.fail_item(item_id, "gone")
            stopped = await production.stopped_runs(ENTITY, PROJECT, ["r1"])
        finally:
            await production.aclose()
    assert [item.id for item in items.items] == [item_id]
    assert failed is True
    assert stopped == set()
    assert wandb.faults.calls == {"GetRunQueueItems": 1, "failRunQueueItem": 1, "RunStopStatus": 1}
    assert wandb.unknown == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"query": "query MyViewer { viewer { id entity } }"}, "MyViewer"),
        ({"query": "query MyViewer { viewer { id entity } }", "operationName": ""}, "MyViewer"),
        ({"query": "query MyViewer { viewer { id entity } }", "operationName": "MyViewer"}, "MyViewer"),
        ({"query": "query QueuesOf($e: String!) { project(entityName: $e) { runQueues { id } } }"}, "QueuesOf"),
        (
            {"query": "mutation popFromRunQueueTwice { popFromRunQueue(input: {}) { runQueueItemId } }"},
            "popFromRunQueueTwice",
        ),
        ({"query": "query launchAgents { launchAgent(id: 1) { id } runQueueItems { id } }"}, "launchAgents"),
    ],
)
async def test_an_unknown_operation_that_mentions_a_known_field_is_refused_and_named(
    body: dict[str, Any], named: str
) -> None:
    """Dispatch is by the operation's name, never by a field its text holds: refused with a GraphQL
    error naming it, and recorded in `unknown` by name."""
    wandb = WandbStandIn(KEY)
    wandb.known_queues.add("q")
    async with served(wandb) as client:
        answer = (await client.post("/graphql", json={"variables": {}, **body})).json()
    assert answer == {"errors": [{"message": f"operation not supported by the stand-in: {named}"}]}
    assert wandb.unknown == [named]
    assert wandb.agents == {}
    assert wandb.faults.calls == {named: 1}


@pytest.mark.parametrize(
    ("body", "recorded"),
    [
        ({"query": "{ viewer { id } }"}, "anonymous query: { viewer { id } }"),
        (
            {"query": 'query { project(name: "p") { runQueues { id } } }'},
            'anonymous query: query { project(name: "p") { runQueues { id } } }',
        ),
        (
            {"query": "mutation($q: String!) { popFromRunQueue(input: {queueName: $q}) { runQueueItemId } }"},
            "anonymous mutation: ",
        ),
        (
            {"query": "query Viewer { viewer { id } }", "operationName": "Other"},
            "Other: operationName names no operation",
        ),
        ({"query": "query Viewer { viewer { id } } query RunState { project { run { state } } }"}, "query Viewer"),
        (
            {"query": "# query Viewer\nfragment F on User { id }"},
            "# query Viewer fragment F on User { id }: no operation",
        ),
        ({"query": "query popFromRunQueue { popFromRunQueue { runQueueItemId } }"}, "popFromRunQueue: a query, but"),
    ],
)
async def test_an_anonymous_ambiguous_or_mismatched_document_is_refused(body: dict[str, Any], recorded: str) -> None:
    """No client the stand-in serves sends anonymous documents, so none is answered; nor a document
    whose operationName it lacks, two operations with none chosen, or a known name of the wrong kind."""
    wandb = WandbStandIn(KEY)
    async with served(wandb) as client:
        answer = (await client.post("/graphql", json={"variables": {}, **body})).json()
    assert "data" not in answer
    assert answer["errors"][0]["message"].startswith("operation not supported by the stand-in: ")
    assert len(wandb.unknown) == 1
    assert wandb.unknown[0].startswith(recorded)
    assert wandb.agents == {}


async def test_operation_name_chooses_among_the_documents_operations() -> None:
    """A document of several operations is answered for the one `operationName` names."""
    wandb = WandbStandIn(KEY)
    query = "query Viewer { viewer { id } } query Other { viewer { id } } # mutation X { }"
    async with served(wandb) as client:
        answer = (await client.post("/graphql", json={"query": query, "operationName": "Viewer"})).json()
        other = (await client.post("/graphql", json={"query": query, "operationName": "Other"})).json()
    assert answer["data"]["viewer"]["username"] == "sandbox"
    assert other == {"errors": [{"message": "operation not supported by the stand-in: Other"}]}
    assert wandb.unknown == ["Other"]


@pytest.mark.parametrize("wording", REFUSALS)
async def test_a_wrong_key_is_refused_with_401_in_each_of_w_and_bs_wordings(wording: str) -> None:
    """A key the server does not know: 401, W&B's own message and code, the refused field null."""
    wandb = WandbStandIn("other-key", refusal=wording)
    async with served(wandb) as client:
        answer = await client.post("/graphql", json={"query": RUN_STOPPED_STATUS, "variables": {"runId": "r"}})
        stream = await client.post(f"/files/{ENTITY}/{PROJECT}/r/file_stream", json={})
    assert answer.status_code == 401
    assert answer.json() == {
        "errors": [{"message": wording, "path": ["project"], "extensions": {"code": "PERMISSION_ERROR"}}],
        "data": {"project": None},
    }
    assert stream.status_code == 401
    assert stream.json()["errors"][0]["message"] == wording


NULL = type(None)
SHAPES: dict[str, dict[str, tuple[type, ...]]] = {
    # (operation) → {path in `data`: the types the SDK reads there}; `[]` is every element of a list.
    # Sources: the documents and the code that reads the answers in wandb 0.31
    # (wandb/sdk/launch/api.py, wandb/sdk/launch/agent/agent.py), and the schema's scalars they declare.
    "Viewer": {"viewer.id": (str,), "viewer.entity": (str,), "viewer.username": (str,), "viewer.teams.edges": (list,)},
    "EntityIsTeam": {"entity.id": (str,), "entity.isTeam": (bool,)},  # api.py: `is_team: bool = …["isTeam"]`
    "ProjectRunQueues": {
        "project.runQueues[].id": (str,),
        "project.runQueues[].name": (str,),
        "project.runQueues[].createdBy": (int,),  # an Int: the creating user's id, not a name
        "project.runQueues[].access": (str,),  # api.py compares it with "PROJECT" and "USER"
    },
    "createLaunchAgent": {"createLaunchAgent.launchAgentId": (str,)},  # an ID
    "updateLaunchAgent": {"updateLaunchAgent.success": (bool,)},
    "LaunchAgent": {
        "launchAgent.id": (str,),
        "launchAgent.runQueues": (list,),
        "launchAgent.agentStatus": (str,),
        "launchAgent.stopPolling": (bool,),  # agent.py: `if agent_response["stopPolling"]:`
        "launchAgent.heartbeatAt": (str, NULL),
    },
    "popFromRunQueue": {
        "popFromRunQueue.runQueueItemId": (str,),
        "popFromRunQueue.runSpec": (dict,),  # agent.py indexes `job["runSpec"]` as a mapping
    },
    "ackRunQueueItem": {"ackRunQueueItem.success": (bool,)},
    "RunStoppedStatus": {"project.run.stopped": (bool,)},  # a Boolean
    "RunState": {"project.run.state": (str,)},  # a String
    "failRunQueueItem": {"failRunQueueItem.success": (bool,)},
    "ServerFeaturesQuery": {"serverInfo.features": (list,)},
    "OrganizationCoreWeaveOrganizationID": {"entity.organization": (dict, NULL)},
    "UpsertBucket": {
        "upsertBucket.bucket.id": (str,),
        "upsertBucket.bucket.name": (str,),
        "upsertBucket.inserted": (bool,),
    },
    "CreateRunFiles": {"createRunFiles.runID": (str,), "createRunFiles.files[].uploadUrl": (str,)},
    "GetRunQueueItems": {
        "project.runQueue.runQueueItems.edges[].node.id": (str,),
        "project.runQueue.runQueueItems.edges[].node.state": (str,),
        "project.runQueue.runQueueItems.edges[].node.associatedRunId": (str, NULL),
        "project.runQueue.runQueueItems.pageInfo.hasNextPage": (bool,),
        "project.runQueue.runQueueItems.pageInfo.endCursor": (str, NULL),
    },
    "RunStopStatus": {
        "project.runs.edges[].node.name": (str,),
        "project.runs.edges[].node.stopped": (bool,),
        "project.runs.edges[].node.state": (str,),
        "project.runs.pageInfo.hasNextPage": (bool,),
        "project.runs.pageInfo.endCursor": (str, NULL),
    },
}


def values_at(data: Any, path: str) -> list[Any]:
    """The values at a dotted path; `name[]` goes into every element of the list."""
    found = [data]
    for part in path.split("."):
        key, each = part.removesuffix("[]"), part.endswith("[]")
        found = [value[key] for value in found]
        if each:
            found = [element for value in found for element in value]
    return found


async def test_every_answer_has_the_types_the_sdk_reads() -> None:
    """Each operation answered (the agent's, wandb-core's, the supervisor's), with its items, runs
    and queues present: every field checked has the type the SDK's documents and code expect."""
    wandb = with_runs("r1")
    item_id = wandb.enqueue(ENTITY, "q", {"job": "j"})
    wandb.pop(ENTITY, "q")
    wandb.ack(item_id, "r1")
    wandb.enqueue(ENTITY, "q", {"job": "j"})
    wandb.agents["a"] = "POLLING"  # the agent SENT's LaunchAgent and updateLaunchAgent name
    supervisor = [
        ("", ITEMS_QUERY, {"projectName": "model-registry", "entityName": ENTITY, "runQueue": "q"}, "project"),
        ("", RUN_STOP_STATUS, {"entity": ENTITY, "project": PROJECT, "filters": '{"name": {"$in": ["r1"]}}'}, ""),
    ]
    answers: dict[str, Any] = {}
    async with served(wandb) as client:
        for who, query, variables, _ in [*SENT, *supervisor]:
            answer = (await client.post("/graphql", json=sent_as(who, query, variables))).json()
            answers[operation_of(query)] = answer["data"]
    assert set(SHAPES) == set(OPERATIONS), "every operation the stand-in answers has its shape checked"
    for operation, fields in SHAPES.items():
        for path, types in fields.items():
            try:
                values = values_at(answers[operation], path)
            except (KeyError, TypeError) as exc:
                raise AssertionError(f"{operation}: no {path} in {answers[operation]}") from exc
            assert values, f"{operation}: nothing at {path}"
            for value in values:
                assert isinstance(value, types), f"{operation} {path}: {value!r} is not {types}"


@pytest.mark.parametrize(
    ("listing", "states"),
    [
        ("waiting_first", ["PENDING", "PENDING", "LEASED", "CLAIMED", "CLAIMED"]),
        ("oldest_first", ["CLAIMED", "CLAIMED", "FAILED", "LEASED", "FAILED", "PENDING", "PENDING"]),
    ],
)
async def test_each_listing_order_pages_with_relay_cursors(listing: str, states: list[str]) -> None:
    """waiting_first: waiting work first, FAILED dropped; oldest_first: every item, history kept.
    Three at a time, `after` the last `endCursor`, until `hasNextPage` is false."""
    wandb = WandbStandIn(KEY)
    wandb.listing = listing
    wandb.add_history(ENTITY, "q", 3)
    leased = wandb.enqueue(ENTITY, "q")
    failed = wandb.enqueue(ENTITY, "q")
    wandb.enqueue(ENTITY, "q")
    wandb.enqueue(ENTITY, "q")
    wandb.pop(ENTITY, "q")  # the oldest pending: `leased`
    wandb.fail(failed, "refused", "agent")
    assert wandb.items[leased].state == "LEASED"
    query = ITEMS_QUERY.replace("first: 100", "first: 3")
    variables: dict[str, Any] = {"projectName": "model-registry", "entityName": ENTITY, "runQueue": "q"}
    seen: list[str] = []
    async with served(wandb) as client:
        for _ in range(5):
            answer = (await client.post("/graphql", json={"query": query, "variables": variables})).json()
            connection = answer["data"]["project"]["runQueue"]["runQueueItems"]
            seen += [edge["node"]["state"] for edge in connection["edges"]]
            if not connection["pageInfo"]["hasNextPage"]:
                break
            variables["cursor"] = connection["pageInfo"]["endCursor"]
        bad = (await client.post("/graphql", json={"query": query, "variables": {**variables, "cursor": "x"}})).json()
    assert seen == states
    assert "cursor 'x' was not given by the stand-in" in bad["errors"][0]["message"]
    assert wandb.unknown == ["GetRunQueueItems: cursor 'x' was not given by the stand-in"]
