"""The README and the documentation site: short, every link resolving, the site building strictly,
and the reference pages agreeing with the code (tests/docs_reference.py)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import docs_reference as ref

ROOT = ref.ROOT


def page(name: str) -> str:
    return (ROOT / name).read_text()


# The site ------------------------------------------------------------------------------------------


@pytest.mark.slow  # a separate Python process renders every page
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict` passes: every page in the nav, every link and anchor between pages found."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail("mkdocs is not installed; run: pip install -e '.[dev]'")
    environ = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # Run from elsewhere than the checkout: the site is built from mkdocs.yml alone.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()


def test_every_page_is_in_the_nav() -> None:
    """A page left out of mkdocs.yml's nav would be built but found by no one."""
    nav = page("mkdocs.yml")
    for path in sorted((ROOT / "docs").glob("*.md")):
        assert f": {path.name}" in nav, f"docs/{path.name} is not in mkdocs.yml's nav"


# The README ----------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's and mkdocs' anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_the_readme_fits_on_a_screen_and_every_link_resolves() -> None:
    """Under 200 lines; each relative link names a file of the checkout, and its anchor a heading."""
    text = page("README.md")
    assert len(text.splitlines()) < 200
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        path = ROOT / target if target else ROOT / "README.md"
        assert path.exists(), f"README.md links to {link}, which does not exist"
        if anchor:
            assert anchor in anchors(path), f"README.md links to {link}: no such heading in {target}"


def extra_names(extra: str) -> list[str]:
    """The distributions an extra of pyproject.toml names, without versions or the project itself."""
    listed = tomllib.loads(page("pyproject.toml"))["project"]["optional-dependencies"][extra]
    names = [re.split(r"[<>=!~\[ ;@]", spec, maxsplit=1)[0] for spec in listed]
    return [name for name in names if name != "launch-supervisor"]


@pytest.mark.parametrize("name", ["README.md", "docs/index.md"])
def test_the_install_table_names_every_dependency_of_each_extra(name: str) -> None:
    """Each extra's row in 'What gets installed' names every distribution the extra adds."""
    rows = {row[0]: row for row in ref.table_rows(page(name)) if "pip install" in row[0]}
    for extra in tomllib.loads(page("pyproject.toml"))["project"]["optional-dependencies"]:
        found = [cells for command, cells in rows.items() if f"[{extra}]" in command]
        assert found, f"{name}: 'What gets installed' has no row for the {extra!r} extra"
        text = " ".join(found[0]).lower()
        missing = [dist for dist in extra_names(extra) if dist.lower() not in text]
        assert not missing, f"{name}: the {extra!r} row leaves out {missing}; add them to its 'needs' cell"


# The reference pages -------------------------------------------------------------------------------

DRIFT: list[tuple[Callable[[str], list[str]], str]] = [
    (ref.config_drift, "docs/configuration.md"),
    (ref.cli_drift, "docs/cli.md"),
    (ref.watchdog_cli_drift, "docs/watchdog.md"),
    (ref.metrics_drift, "docs/http-and-metrics.md"),
    (ref.rules_drift, "docs/watchdog.md"),
    (ref.alerts_drift, "docs/operating.md"),
]


@pytest.mark.parametrize(("drift", "name"), DRIFT, ids=[d.__name__ for d, _ in DRIFT])
def test_the_reference_agrees_with_the_code(drift: Callable[[str], list[str]], name: str) -> None:
    """Every config key, CLI option, metric, watchdog rule and alert is on its page, as the code has it."""
    problems = drift(page(name))
    assert not problems, "the docs are out of date:\n" + "\n".join(problems)


def without_row(text: str, start: str) -> str:
    """`text` without the one table row that starts with `start`."""
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(start)]
    assert len(kept) == len(lines) - 1, f"no single row starts with {start!r}"
    return "".join(kept)


@pytest.mark.parametrize(
    ("drift", "name", "row", "named"),
    [
        (ref.config_drift, "docs/configuration.md", "| `queues[].stop_grace` |", "config key `queues[].stop_grace`"),
        (ref.cli_drift, "docs/cli.md", "| `--job-seconds` |", "option `--job-seconds` of `sandbox`"),
        (ref.watchdog_cli_drift, "docs/watchdog.md", "| `--submit-grace` |", "option `--submit-grace`"),
        (
            ref.metrics_drift,
            "docs/http-and-metrics.md",
            "| `launch_supervisor_breaker_open` |",
            "`launch_supervisor_breaker_open`",
        ),
        (ref.rules_drift, "docs/watchdog.md", "| `gcp_unavailable` |", "watchdog rule `gcp_unavailable`"),
        (ref.alerts_drift, "docs/operating.md", "| [LaunchSupervisorQueueStuck]", "alert `LaunchSupervisorQueueStuck`"),
    ],
    ids=["config-key", "cli-option", "watchdog-option", "metric", "rule", "alert"],
)
def test_a_removed_row_is_named_with_where_it_belongs(
    drift: Callable[[str], list[str]], name: str, row: str, named: str
) -> None:
    """Removing one row from a reference page gives exactly one problem, naming it and its page."""
    problems = drift(without_row(page(name), row))
    assert len(problems) == 1, problems
    assert named in problems[0]
    assert name in problems[0]
    assert "add |" in problems[0]


def test_a_wrong_default_is_named() -> None:
    """A default the page gets wrong is found, with the value the code has."""
    text = page("docs/configuration.md").replace(
        "| `queues[].max_inflight` | `4` |", "| `queues[].max_inflight` | `8` |"
    )
    assert ref.config_drift(text) == [
        "config key `queues[].max_inflight` has default '4' but docs/configuration.md says '8': "
        "make it | `queues[].max_inflight` | `4` | what it does |"
    ]


def test_a_key_the_code_lacks_is_named() -> None:
    """A row for a key that does not exist (removed or misspelled) is out of date too."""
    text = page("docs/configuration.md") + "\n| `poll.interval` | `5` | gone |\n"
    assert ref.config_drift(text) == [
        "docs/configuration.md documents `poll.interval`, which supervisor/config.py does not have: remove its row"
    ]
