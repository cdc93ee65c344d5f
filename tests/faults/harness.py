"""The fault suite's figures: what happened to every item of a scenario, counted from the stand-ins'
own records (what W&B, Cloud Run and Vertex saw), never from the daemon's metrics.

Each scenario injects its faults at the wire, lets the system run, and records one `Figures` row.
A row must show 0 duplicates and 0 lost items; an item left non-terminal on purpose (a queue whose
RunJob is refused for good, say) is listed with its cause and does not count as lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import anyio

from launch_supervisor.sandbox.stack import Stack
from launch_supervisor.sandbox.summary import is_terminal, jobs_by_item, settled

SECRETS: set[str] = set()
"""The W&B keys of the scenarios' stand-ins: nothing any scenario prints may contain one."""


@dataclass(frozen=True, slots=True)
class Figures:
    scenario: str
    area: str
    items: int
    terminal: int
    executions: int
    max_executions_per_item: int
    """Executions that popped the item (W&B leases), for the item popped most."""
    max_jobs_per_item: int
    duplicates: int
    """CustomJobs beyond the first for the same item."""
    lost: int
    """Items non-terminal at the end with no cause the scenario names."""
    recover_s: float | None
    """From the end of the fault to every item terminal."""
    note: str = ""

    def check(self) -> None:
        assert self.duplicates == 0, f"{self.scenario}: {self.duplicates} duplicate CustomJobs"
        assert self.lost == 0, f"{self.scenario}: {self.lost} items lost"

    def row(self) -> dict[str, object]:
        return asdict(self)


def figures(
    stack: Stack,
    item_ids: Sequence[str],
    recover_s: float | None,
    *,
    area: str,
    scenario: str,
    explained: Mapping[str, str] | None = None,
    note: str = "",
) -> Figures:
    """The figures of `item_ids`; `explained` maps items left non-terminal on purpose to the cause."""
    explained = explained or {}
    SECRETS.add(stack.api_key)
    jobs = jobs_by_item(stack)
    terminal = [i for i in item_ids if is_terminal(stack, i, jobs)]
    lost = [i for i in item_ids if i not in terminal and i not in explained]
    causes = sorted(set(explained.values()))
    return Figures(
        scenario=scenario,
        area=area,
        items=len(item_ids),
        terminal=len(terminal),
        executions=len(stack.cloudrun.executions),
        max_executions_per_item=max((stack.wandb.items[i].leases for i in item_ids), default=0),
        max_jobs_per_item=max((len(jobs.get(i, [])) for i in item_ids), default=0),
        duplicates=sum(max(0, len(jobs.get(i, [])) - 1) for i in item_ids),
        lost=len(lost),
        recover_s=None if recover_s is None else round(recover_s, 1),
        note="; ".join([note, *causes]) if note and causes else note or "; ".join(causes),
    )


Record = Callable[[Figures], None]
"""The `record` fixture (conftest.py): keeps a scenario's figures for the table."""


def record_figures(
    record: Record,
    stack: Stack,
    item_ids: Sequence[str],
    recover_s: float | None,
    *,
    area: str,
    scenario: str,
    note: str = "",
    check: bool = True,
) -> Figures:
    """The scenario's `figures`, recorded for the table, then checked (unless `check` is False):
    recorded first, so that a scenario that fails still shows its row."""
    fig = figures(stack, item_ids, recover_s, area=area, scenario=scenario, note=note)
    record(fig)
    if check:
        fig.check()
    return fig


async def settle(stack: Stack, item_ids: Sequence[str], timeout: float = 30.0) -> float:
    """Wait until every item is terminal and no execution runs; the seconds it took."""
    started = time.monotonic()
    with anyio.fail_after(timeout):
        while not settled(stack, item_ids):
            await anyio.sleep(0.05)
    return time.monotonic() - started


async def wait(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)
