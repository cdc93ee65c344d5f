"""The W&B GraphQL client: one request lists a queue's items; one mutation fails an item; one
request reads the stop status of many runs of a project.

The items query is the SDK's own (`RunQueue._get_items`) with `state` and `associatedRunId` added,
so a queue of up to 100 items costs one request per poll, not one per item. `runQueueItems` is a
connection, and neither the schema nor the SDK says in what order W&B lists items or whether it
keeps finished ones: a full page is followed by the next (`after: endCursor`), up to `max_pages`
pages, so waiting items behind a long history are still seen (README, W&B's listing order). HTTP
Basic `api:<key>`. A 5xx, a timeout or a dropped connection is retried with backoff a few times
within the call; 401/403 raise `WandbAuthError` so the caller can stop polling that queue loudly
instead of hammering W&B. Fields the schema makes nullable (`Query.project`, `RunQueue`,
`Project.runs`, the `failRunQueueItem` payload) are read as such, never as a malformed answer.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from launch_supervisor.calls.observe import ObserveCall, ignore_call
from launch_supervisor.model.items import ItemState
from launch_supervisor.model.observations import ItemSeen

LAUNCH_PROJECT = "model-registry"

ITEMS_QUERY = """
query GetRunQueueItems($projectName: String!, $entityName: String!, $runQueue: String!, $cursor: String) {
    project(name: $projectName, entityName: $entityName) {
        runQueue(name: $runQueue) {
            runQueueItems(first: 100, after: $cursor) {
                edges { node { id state associatedRunId } }
                pageInfo { hasNextPage endCursor }
            }
        }
    }
}
"""
PAGE_SIZE = 100
"""Items per page: what the SDK's own reader asks for (`wandb/apis/public/jobs.py`, `first: 100`)."""

FAIL_MUTATION = """
mutation failRunQueueItem($runQueueItemId: ID!, $message: String!, $stage: String!, $filePaths: [String!]) {
    failRunQueueItem(
        input: {runQueueItemId: $runQueueItemId, message: $message, stage: $stage, filePaths: $filePaths}
    ) { success }
}
"""


RUNS_QUERY = """
query RunStopStatus($entity: String!, $project: String!, $filters: JSONString, $perPage: Int, $cursor: String) {
    project(name: $project, entityName: $entity) {
        runs(filters: $filters, first: $perPage, after: $cursor) {
            edges { node { name stopped state } }
            pageInfo { endCursor hasNextPage }
        }
    }
}
"""
"""The SDK's `Runs` query (`wandb/apis/public/runs.py`) cut down to what the stop check reads: the
`runs` connection filtered by `{"name": {"$in": [...]}}`, as `Api().runs(path, filters=...)` sends it."""


class WandbError(Exception):
    """W&B could not answer this call."""


class WandbAuthError(WandbError):
    """401/403: the key is wrong or lacks access. Retrying will not help."""


class WandbUnavailableError(WandbError):
    """5xx, timeouts or connection errors, after the retries."""


class WandbProtocolError(WandbError):
    """An answer that is not what the operation returns (GraphQL errors, a malformed answer)."""


class WandbQueueMissingError(WandbProtocolError):
    """W&B answered that the queue's project, or the queue in it, does not exist (`project: null` or
    `runQueue: null`): a configuration problem, not a failing call."""

    def __init__(self, entity: str, project: str, queue: str, missing: str) -> None:
        self.entity, self.project, self.queue, self.missing = entity, project, queue, missing
        """`missing` is `project` or `queue`: what W&B answered null."""
        if missing == "project":
            what = f"project {project!r} in entity {entity!r} (asked for queue {queue!r})"
            fix = "check [wandb] entity (or queues[].entity): launch queues live in that entity's project"
        else:
            what = f"queue {queue!r} in project {project!r} of entity {entity!r}"
            fix = "check queues[].name against the entity's queues in W&B, or create the queue"
        super().__init__(f"W&B knows no {what}: {fix}")


@dataclass(frozen=True, slots=True)
class QueueListing:
    """One listing of a queue: the items seen, the pages read, and whether more were left unread
    because the page bound was reached."""

    items: list[ItemSeen]
    pages: int
    truncated: bool


class WandbClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float,
        attempts: int = 3,
        observe: ObserveCall = ignore_call,
        *,
        max_pages: int = 10,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth("api", api_key),
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": "launch-supervisor"},
        )
        self._attempts = attempts
        self._observe = observe
        self._max_pages = max_pages

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _graphql(self, method: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        delay = 0.2
        for attempt in range(1, self._attempts + 1):
            started = time.monotonic()
            try:
                response = await self._http.post("/graphql", json={"query": query, "variables": variables})
            except httpx.TimeoutException as exc:
                self._observe("wandb", method, "timeout", time.monotonic() - started)
                failure: WandbError = WandbUnavailableError(f"W&B {method} timed out: {exc!r}")
            except httpx.TransportError as exc:
                self._observe("wandb", method, "connection", time.monotonic() - started)
                failure = WandbUnavailableError(f"W&B {method} could not connect: {exc!r}")
            else:
                self._observe("wandb", method, str(response.status_code), time.monotonic() - started)
                if response.status_code in (401, 403):
                    raise WandbAuthError(f"W&B answered {response.status_code} to {method}: check the API key")
                if response.status_code >= 500 or response.status_code == 429:
                    failure = WandbUnavailableError(f"W&B answered {response.status_code} to {method}")
                elif response.status_code != 200:
                    raise WandbProtocolError(f"W&B answered {response.status_code} to {method}: {response.text[:200]}")
                else:
                    return _data(method, response)
            if attempt == self._attempts:
                raise failure
            await anyio.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, not security
            delay *= 2
        raise AssertionError("unreachable")

    async def list_items(self, entity: str, queue: str) -> QueueListing:
        """The queue's items: one request, and more only while each page comes back full, up to
        `max_pages` requests (the rest is left unread and said so)."""
        variables: dict[str, Any] = {"projectName": LAUNCH_PROJECT, "entityName": entity, "runQueue": queue}
        seen: list[ItemSeen] = []
        for page in range(1, self._max_pages + 1):
            data = await self._graphql("GetRunQueueItems", ITEMS_QUERY, variables)
            try:
                if data["project"] is None:
                    raise WandbQueueMissingError(entity, LAUNCH_PROJECT, queue, "project")
                run_queue = data["project"]["runQueue"]
                if run_queue is None:
                    raise WandbQueueMissingError(entity, LAUNCH_PROJECT, queue, "queue")
                connection = run_queue["runQueueItems"]
                edges = connection["edges"]
                for edge in edges:
                    node = edge["node"]
                    state = ItemState.parse(str(node["state"]))
                    if state is not None:
                        seen.append(ItemSeen(str(node["id"]), state, node.get("associatedRunId") or None))
                info = connection.get("pageInfo") or {}
            except (KeyError, TypeError, AttributeError) as exc:
                raise WandbProtocolError(f"unexpected GetRunQueueItems answer: missing {exc}") from exc
            cursor = info.get("endCursor")
            if len(edges) < PAGE_SIZE or info.get("hasNextPage") is False or not cursor:
                return QueueListing(seen, page, truncated=False)
            variables["cursor"] = cursor
        return QueueListing(seen, self._max_pages, truncated=True)

    async def fail_item(self, item_id: str, message: str, stage: str = "run") -> bool:
        """failRunQueueItem; True when W&B reports success."""
        variables = {"runQueueItemId": item_id, "message": message[:4000], "stage": stage, "filePaths": None}
        data = await self._graphql("failRunQueueItem", FAIL_MUTATION, variables)
        try:
            payload = data["failRunQueueItem"]
            # The payload is nullable in W&B's schema: no answer is "not done", asked again later.
            return payload is not None and bool(payload["success"])
        except (KeyError, TypeError) as exc:
            raise WandbProtocolError(f"unexpected failRunQueueItem answer: missing {exc}") from exc

    async def stopped_runs(self, entity: str, project: str, runs: Sequence[str]) -> set[str]:
        """Of `runs` (run ids of one project), those stopped in W&B, in one request however many
        (more only if W&B pages the answer below `perPage`). A run W&B does not list, or a project it
        does not know, counts as not stopped."""
        filters = json.dumps({"name": {"$in": list(runs)}})
        variables: dict[str, Any] = {"entity": entity, "project": project, "filters": filters, "perPage": len(runs)}
        stopped: set[str] = set()
        for _ in range(len(runs) + 1):  # every page holds at least one run, or it is the last
            data = await self._graphql("RunStopStatus", RUNS_QUERY, variables)
            try:
                if data["project"] is None or data["project"]["runs"] is None:  # both nullable in the schema
                    return stopped
                connection = data["project"]["runs"]
                edges = connection["edges"]
                stopped |= {str(edge["node"]["name"]) for edge in edges if edge["node"].get("stopped") is True}
                page = connection.get("pageInfo") or {}
            except (KeyError, TypeError) as exc:
                raise WandbProtocolError(f"unexpected RunStopStatus answer: missing {exc}") from exc
            if not edges or not page.get("hasNextPage") or not page.get("endCursor"):
                return stopped
            variables["cursor"] = page["endCursor"]
        return stopped


def _data(method: str, response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise WandbProtocolError(f"W&B answered {method} with something that is not JSON") from exc
    if not isinstance(body, dict):
        raise WandbProtocolError(f"W&B answered {method} with a JSON {type(body).__name__}")
    if body.get("errors"):
        raise WandbProtocolError(f"W&B {method} failed: {body['errors'][0].get('message', body['errors'])}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise WandbProtocolError(f"W&B answered {method} without data")
    return data
