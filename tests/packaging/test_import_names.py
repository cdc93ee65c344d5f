"""Our import names are our own: the wheel installs `launch_supervisor` and `launch_watchdog`, never
`supervisor` (supervisord's) or `watchdog` (the file-system events library's), so both programs work
in an environment that holds those packages too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from launch_supervisor.sandbox.emulator import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _package_folders(folder: str, name: str) -> set[str]:
    found = set()
    for init in (ROOT / folder).rglob("__init__.py"):
        parts = init.parent.relative_to(ROOT / folder).parts
        found.add(".".join([name, *parts]))
    return found


def test_the_package_list_names_every_package_folder() -> None:
    """pyproject's explicit package list (setuptools' package-dir mapping needs one) names every folder
    with an __init__.py, so a new subpackage is not left out of the wheel."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"launch_supervisor": "supervisor", "launch_watchdog": "watchdog"}
    expected = _package_folders("supervisor", "launch_supervisor") | _package_folders("watchdog", "launch_watchdog")
    assert set(setuptools["packages"]) == expected


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("launch_supervisor-*.whl")
    return built


def test_the_wheel_holds_only_our_own_top_level_names(wheel: Path) -> None:
    """Nothing in the wheel lands where another project's package lives."""
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        assert "launch_watchdog/rules.toml" in archive.namelist()
        assert "launch_supervisor/sandbox/launch-config.yaml" in archive.namelist()
        assert "launch_supervisor/sandbox/prices-us-central1.toml" in archive.namelist()
        assert {"launch_supervisor/py.typed", "launch_watchdog/py.typed"} <= set(archive.namelist())
    assert {t for t in tops if not t.endswith(".dist-info")} == {"launch_supervisor", "launch_watchdog"}


def test_both_programs_work_beside_pypis_watchdog_and_supervisor(wheel: Path, tmp_path: Path) -> None:
    """In a fresh venv that also holds PyPI's `watchdog` and `supervisor` (the dev extra installs both), the
    wheel's programs run, the sandbox takes an item to its CustomJob, and the other two still import."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    # The dependencies are this environment's (PyPI's watchdog and supervisor among them), seen after the
    # venv's own site-packages, where the wheel goes: no network, and no editable copy of ours.
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "dependencies.pth").write_text("".join(f"{p}\n" for p in sys.path if p.endswith("site-packages")))
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    def run(*argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # Outside the checkout: its folders must not be what the programs import.
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout, check=False)

    where = run(python, "-c", "import launch_supervisor, launch_watchdog; print(launch_supervisor.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(venv)), where.stdout  # the wheel's copy, not the checkout's

    theirs = run(python, "-c", "import watchdog.observers, supervisor.supervisord; print(watchdog.observers.Observer)")
    assert theirs.returncode == 0, theirs.stderr
    supervisord = run(python, "-m", "supervisor.supervisord", "--version")
    assert supervisord.returncode == 0, supervisord.stderr
    assert supervisord.stdout.strip()

    watchdog_help = run(bin_dir / "launch-watchdog", "--help")
    assert watchdog_help.returncode == 0, watchdog_help.stderr
    assert "usage: launch-watchdog" in watchdog_help.stdout
    supervisor_help = run(bin_dir / "launch-supervisor", "--help")
    assert supervisor_help.returncode == 0, supervisor_help.stderr
    assert "sandbox" in supervisor_help.stdout

    summary = tmp_path / "summary.json"
    sandbox = run(
        bin_dir / "launch-supervisor",
        "sandbox",
        "--items",
        "1",
        "--duration",
        "150",
        "--no-pubsub",
        "--http",
        f"127.0.0.1:{free_port()}",
        "--summary-json",
        summary,
        timeout=240,
    )
    assert sandbox.returncode == 0, sandbox.stdout[-3000:] + sandbox.stderr[-3000:]
    result = json.loads(summary.read_text())
    assert result["items_terminal"] == 1, result
    assert result["items_non_terminal"] == 0, result
