"""Collects each fault scenario's figures; prints them as a table at the end of the run, and, when
the whole suite ran, writes that table into docs/reliability.md (between its markers)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import SECRETS, Figures

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
_rows: list[Figures] = []
_collected: set[str] = set()


@pytest.fixture
def record() -> Callable[[Figures], None]:
    """Keep a scenario's figures for the table."""
    return _rows.append


@pytest.fixture(autouse=True)
def no_secret_in_any_output(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Everything a scenario printed (the daemon's log lines, /status, the stand-ins) is free of
    the W&B key it ran with."""
    yield
    out, err = capfd.readouterr()
    sys.stdout.write(out)
    sys.stderr.write(err)
    leaked = sorted(s for s in SECRETS if s in out or s in err)
    assert not leaked, f"a W&B key appeared in the output ({len(leaked)} of {len(SECRETS)} keys)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _collected.update(i.nodeid for i in items if "tests/faults/" in i.nodeid.replace("\\", "/"))


def _whole_suite_ran() -> bool:
    """Every scenario module of the suite was collected, and every collected scenario recorded."""
    modules = {p.name for p in Path(__file__).parent.glob("test_*.py")}
    collected = {nodeid.split("::", 1)[0].rsplit("/", 1)[-1] for nodeid in _collected}
    return modules <= collected and len(_rows) >= len(_collected)


def table(rows: list[Figures]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in sorted(rows, key=lambda r: (r.area, r.scenario)):
        values = row.row()
        cells = ["—" if values[key] is None else str(values[key]) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _rows:
        return
    terminalreporter.write_sep("=", "fault suite figures")
    terminalreporter.write_line(table(_rows))
    if _whole_suite_ran() and DOC.exists():  # the doc shows the whole suite, never a part
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            DOC.write_text(f"{head}{BEGIN}\n{table(_rows)}\n{END}{rest.split(END, 1)[1]}")
