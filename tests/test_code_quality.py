"""The code checks CI relies on, run as tests so the one test command covers them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


TOOLS = {
    "ruff": ("ruff", ["-m", "ruff"]),
    "mypy": ("mypy", ["-m", "mypy"]),
    # import-linter has no __main__: its console script's function, run by this interpreter.
    "lint-imports": ("importlinter", ["-c", "from importlinter.cli import lint_imports_command as c; c()"]),
}


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A check run by this interpreter, the one that has launch_supervisor installed (a console script
    on PATH may belong to another environment, where the import names do not resolve)."""
    module, argv = TOOLS[tool]
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{tool} is not installed; run: pip install -e '.[dev]'")
    return subprocess.run(
        [sys.executable, *argv, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_ruff_lint() -> None:
    """ruff finds nothing."""
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    """The code is formatted as ruff formats it."""
    result = _run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    """mypy --strict is clean on supervisor/ and watchdog/."""
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts() -> None:
    """Every import contract holds: the layers, the pure model, the standalone watchdog, no sandbox in production."""
    result = _run("lint-imports")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_class_is_over_250_lines_unless_its_docstring_says_why() -> None:
    """A class longer than 250 lines does two things; the rare exception opens its docstring's
    reason with "Over 250 lines:"."""
    import ast

    long = []
    for path in sorted([*ROOT.glob("supervisor/**/*.py"), *ROOT.glob("watchdog/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef) or node.end_lineno is None:
                continue
            size = node.end_lineno - node.lineno + 1
            if size > 250 and "Over 250 lines:" not in (ast.get_docstring(node) or ""):
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({size} lines)")
    assert long == []
