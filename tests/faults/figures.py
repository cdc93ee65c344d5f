"""The fault suite's figures: each scenario's row, printed as a table at the end of the run and,
when the whole suite ran, written into docs/reliability.md (between its markers).

A plugin that tests/conftest.py registers at startup, so that its hooks run on pytest-xdist's
controller too: the controller collects nothing, so it never loads tests/faults/conftest.py. Each
worker sends its rows through xdist's `workeroutput`, and the controller prints and writes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import Figures

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BEGIN, END = "<!-- fault-suite:begin -->", "<!-- fault-suite:end -->"
COLUMNS = (
    ("area", "area"),
    ("scenario", "scenario"),
    ("items", "items"),
    ("terminal", "terminal"),
    ("executions", "executions"),
    ("max_executions_per_item", "max exec/item"),
    ("max_jobs_per_item", "max jobs/item"),
    ("duplicates", "duplicates"),
    ("lost", "lost"),
    ("recover_s", "recover s"),
    ("note", "note"),
)
WORKER_OUTPUT = "fault_suite"
"""The key of a worker's figures and collected scenarios in xdist's `workeroutput`."""
rows: list[Figures] = []
"""The figures of the scenarios run in this process (the `record` fixture appends to it)."""
_collected: set[str] = set()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _collected.update(i.nodeid for i in items if "tests/faults/" in i.nodeid.replace("\\", "/"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: send its figures and what it collected to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[WORKER_OUTPUT] = {"rows": [row.row() for row in rows], "collected": sorted(_collected)}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the xdist controller: take in a finished worker's figures (every worker collects the
    whole run, each runs its share of it)."""
    sent = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT)
    if sent is not None:
        rows.extend(Figures(**row) for row in sent["rows"])
        _collected.update(sent["collected"])


def _whole_suite_ran() -> bool:
    """Every scenario module of the suite was collected, and every collected scenario recorded."""
    modules = {p.name for p in Path(__file__).parent.glob("test_*.py")}
    collected = {nodeid.split("::", 1)[0].rsplit("/", 1)[-1] for nodeid in _collected}
    return modules <= collected and len(rows) >= len(_collected)


def table(found: list[Figures]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in sorted(found, key=lambda r: (r.area, r.scenario)):
        values = row.row()
        cells = ["—" if values[key] is None else str(values[key]) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not rows:
        return
    terminalreporter.write_sep("=", "fault suite figures")
    terminalreporter.write_line(table(rows))
    if _whole_suite_ran() and DOC.exists():  # the doc shows the whole suite, never a part
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            DOC.write_text(f"{head}{BEGIN}\n{table(rows)}\n{END}{rest.split(END, 1)[1]}")
