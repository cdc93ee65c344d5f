"""Every GraphQL document the daemon sends, held to the pinned wandb SDK's own documents for the same
operation: a field or an argument the SDK never uses there fails here, not in production.

The SDK's documents are read from the installed package at test time: the string literals of
`wandb/sdk/launch/*.py` (the launch operations, `_launch_add.py` among them), `wandb/apis/public/*.py`
and, in SDKs that have it, `wandb/sdk/internal/internal_api.py` (wandb 0.31 has none: its launch
operations moved to `wandb/sdk/launch/api.py`), plus the `Runs` query `wandb/apis/public/runs.py`
builds at run time. Ours are the string literals of `supervisor/` (the sandbox answers GraphQL, it
sends none) that parse as an operation.

W&B's schema is not published with the SDK, so a field is identified by where it is selected: the
field that selects it (`project` → `runQueue`), the node of a connection by the connection's name
(`runs { edges { node } }` holds what `run` holds), and Relay's connection fields (`edges`, `node`,
`cursor`, `pageInfo` and its fields) by those of any SDK connection.
"""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import graphql
import pytest
import wandb

import launch_supervisor

SDK = Path(wandb.__file__).parent
SDK_FILES = sorted(
    [
        *SDK.glob("sdk/launch/*.py"),
        *SDK.glob("apis/public/*.py"),
        *[p for p in [SDK / "sdk" / "internal" / "internal_api.py"] if p.exists()],
    ]
)
OURS = Path(launch_supervisor.__file__).parent

SAME_AS = {
    "GetRunQueueItems": ("GetRunQueueItems", "GetRunQueueItem"),
    "failRunQueueItem": ("failRunQueueItem",),
    "RunStopStatus": ("Runs", "RunStoppedStatus"),
}
"""For each operation the daemon sends, the SDK's operations that ask the same things
(`wandb/apis/public/jobs.py` lists and reads items; `wandb/sdk/launch/api.py` fails an item and
reads a run's `stopped`; `wandb/apis/public/runs.py` pages runs by filter)."""

BEYOND_SDK = {
    ("GetRunQueueItems", "runQueueItems", "after"): (
        "runQueueItems is a connection (after, before, first, last); the SDK reads only its first 100 "
        "items, the daemon pages on (README, W&B's listing order)"
    ),
}
"""(operation, field, argument) the daemon uses and the SDK does not, each with why it exists."""

CONNECTION = "<connection>"
RELAY = {"edges", "node", "cursor", "pageInfo", "hasNextPage", "hasPreviousPage", "startCursor", "endCursor"}


@dataclass
class Usage:
    """Which fields are selected under which (the parent's key), with which argument names."""

    fields: set[tuple[str, str]] = field(default_factory=set)
    arguments: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))

    def add(self, other: Usage) -> None:
        self.fields |= other.fields
        for key, names in other.arguments.items():
            self.arguments[key] |= names


def _child_key(parent: str, name: str) -> str:
    if name in ("edges", "pageInfo"):
        return f"{parent}.{name}"
    if name == "node" and parent.endswith(".edges"):
        connection = parent.removesuffix(".edges")
        return connection.removesuffix("s")  # runs → run, runQueueItems → runQueueItem
    return name


def _argument_names(node: graphql.FieldNode) -> set[str]:
    names = set()
    for argument in node.arguments:
        names.add(argument.name.value)
        if isinstance(argument.value, graphql.ObjectValueNode):  # `input: {…}`: its fields too
            names |= {f"{argument.name.value}.{f.name.value}" for f in argument.value.fields}
    return names


def _collect(
    selections: graphql.SelectionSetNode | None,
    parent: str,
    fragments: dict[str, graphql.FragmentDefinitionNode],
    usage: Usage,
) -> None:
    for selection in selections.selections if selections is not None else ():
        if isinstance(selection, graphql.FragmentSpreadNode):
            _collect(fragments[selection.name.value].selection_set, parent, fragments, usage)
        elif isinstance(selection, graphql.InlineFragmentNode):
            _collect(selection.selection_set, parent, fragments, usage)
        elif isinstance(selection, graphql.FieldNode):
            name = selection.name.value
            structural = parent.rsplit(".", 1)[-1] in ("edges", "pageInfo") or name in ("edges", "pageInfo")
            key = (CONNECTION if structural and name in RELAY else parent, name)
            usage.fields.add(key)
            usage.arguments[key] |= _argument_names(selection)
            _collect(selection.selection_set, _child_key(parent, name), fragments, usage)


def _documents(texts: list[str]) -> Iterator[graphql.DocumentNode]:
    for text in texts:
        try:
            yield graphql.parse(text)
        except graphql.GraphQLError:
            continue  # not GraphQL, or a template filled in later


def _literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def usage_by_operation(documents: list[graphql.DocumentNode]) -> dict[str, Usage]:
    """Every named operation of the documents, with what it selects; fragments are shared by name."""
    fragments = {
        d.name.value: d for doc in documents for d in doc.definitions if isinstance(d, graphql.FragmentDefinitionNode)
    }
    found: dict[str, Usage] = defaultdict(Usage)
    for doc in documents:
        for d in doc.definitions:
            if isinstance(d, graphql.OperationDefinitionNode) and d.name is not None:
                usage = Usage()
                _collect(d.selection_set, d.operation.value, fragments, usage)
                found[d.name.value].add(usage)
    return found


def sdk_documents() -> list[graphql.DocumentNode]:
    runs = importlib.import_module("wandb.apis.public.runs")
    generated = [runs._create_runs_query(lazy=False)]  # noqa: SLF001 - the document Api().runs sends
    return list(_documents([text for path in SDK_FILES for text in _literals(path)] + generated))


def our_documents() -> dict[str, Usage]:
    paths = [p for p in OURS.rglob("*.py") if "sandbox" not in p.relative_to(OURS).parts]
    return usage_by_operation(list(_documents([text for path in paths for text in _literals(path)])))


@pytest.fixture(scope="module")
def sdk() -> dict[str, Usage]:
    return usage_by_operation(sdk_documents())


def test_the_sdk_documents_are_found_where_the_pinned_sdk_keeps_them(sdk: dict[str, Usage]) -> None:
    """The SDK's launch, queue and run operations are all read (so an empty read cannot pass)."""
    assert {"GetRunQueueItems", "GetRunQueueItem", "failRunQueueItem", "Runs", "RunStoppedStatus"} <= set(sdk)
    assert {"popFromRunQueue", "ackRunQueueItem", "ProjectRunQueues"} <= set(sdk)
    assert (CONNECTION, "endCursor") in sdk["Runs"].fields


def test_every_document_the_daemon_sends_is_checked() -> None:
    """Each operation found in supervisor/ is one SAME_AS maps to the SDK's: a new one must be."""
    assert set(our_documents()) == set(SAME_AS)


@pytest.mark.parametrize("operation", sorted(SAME_AS))
def test_fields_and_arguments_are_the_sdks_own(sdk: dict[str, Usage], operation: str) -> None:
    """Every field the operation selects, where it selects it, and every argument it passes, are
    used by the SDK's documents for the same operation; Relay's connection fields by any of them."""
    ours = our_documents()[operation]
    same = Usage()
    for name in SAME_AS[operation]:
        same.add(sdk[name])
    anywhere = Usage()
    for usage in sdk.values():
        anywhere.add(usage)
    for key in sorted(ours.fields):
        known = anywhere if key[0] == CONNECTION else same
        assert key in known.fields, f"{operation}: the SDK never selects {key[1]!r} under {key[0]!r}"
        for argument in sorted(ours.arguments[key] - known.arguments[key]):
            assert (operation, key[1], argument) in BEYOND_SDK, (
                f"{operation}: the SDK never passes {argument!r} to {key[1]!r} (under {key[0]!r})"
            )


def test_what_goes_beyond_the_sdk_is_used_and_not_in_the_sdk(sdk: dict[str, Usage]) -> None:
    """Each BEYOND_SDK entry is still needed: the daemon passes it, and the SDK still does not."""
    ours = our_documents()
    for operation, field_name, argument in BEYOND_SDK:
        passed = {a for (_, f), names in ours[operation].arguments.items() if f == field_name for a in names}
        assert argument in passed
        in_sdk = {a for u in sdk.values() for (_, f), names in u.arguments.items() if f == field_name for a in names}
        assert argument not in in_sdk, f"the SDK now passes {argument!r} to {field_name!r}: drop it from BEYOND_SDK"


def test_a_renamed_field_or_argument_fails_the_check(sdk: dict[str, Usage]) -> None:
    """The check bites: the items query with `associatedRunId` renamed, or `first` spelled `limit`."""
    from launch_supervisor.engines.sources.wandb import ITEMS_QUERY

    same = Usage()
    for name in SAME_AS["GetRunQueueItems"]:
        same.add(sdk[name])
    for broken in (ITEMS_QUERY.replace("associatedRunId", "associatedRun"), ITEMS_QUERY.replace("first:", "limit:")):
        usage = usage_by_operation([graphql.parse(broken)])["GetRunQueueItems"]
        unknown_fields = {k for k in usage.fields if k[0] != CONNECTION} - same.fields
        unknown_arguments = {(k[1], a) for k, names in usage.arguments.items() for a in names - same.arguments[k]} - {
            (f, a) for (_, f, a) in BEYOND_SDK
        }
        assert unknown_fields or unknown_arguments
