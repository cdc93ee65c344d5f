"""The agent's start-up hook: aiplatform's `CustomJob created` record is no longer dropped.

Each test runs a fresh Python the way the agent runs: wandb's CLI log handler on the root logger,
then aiplatform's logger, then google-auth's first use.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch_watchdog.agent_startup import DIRECTORY

SUCCESS = "CustomJob created. Resource name: projects/1/locations/us-central1/customJobs/2"

AGENT_LIKE = f"""
import logging, sys
handler = logging.FileHandler(sys.argv[1])  # what wandb's CLI puts on the root logger
handler.setLevel(logging.INFO)
logging.root.addHandler(handler)
from google.cloud.aiplatform import base
import google.auth._helpers
google.auth._helpers.is_logging_enabled(logging.getLogger("google.auth.transport.requests"))
base._LOGGER.info({SUCCESS!r})
logging.getLogger("google.cloud.aiplatform.base").exception("handled", exc_info=ValueError("hidden"))
logging.getLogger("google.api_core.retry").info("not for stderr")
print("propagate", logging.getLogger("google").propagate)
"""


def _run(tmp_path: Path, pythonpath: str | None) -> tuple[subprocess.CompletedProcess[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    log = tmp_path / "debug-cli.root.log"
    proc = subprocess.run(
        [sys.executable, "-c", AGENT_LIKE, str(log)], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    return proc, log.read_text()


def test_without_the_hook_the_success_record_is_lost(tmp_path: Path) -> None:
    """The fact the hook exists for: google-auth turns propagation off and the record goes nowhere."""
    proc, log = _run(tmp_path, None)
    assert "propagate False" in proc.stdout
    assert SUCCESS not in proc.stdout + proc.stderr + log


def test_with_the_hook_the_record_reaches_stderr_and_the_cli_log(tmp_path: Path) -> None:
    """One plain line on stderr (no traceback, nothing below WARNING from other Google loggers), and
    propagation left on, so the CLI log gets it too."""
    proc, log = _run(tmp_path, str(DIRECTORY))
    assert "propagate True" in proc.stdout
    assert f"INFO google.cloud.aiplatform.base: {SUCCESS}\n" in proc.stderr
    assert "ERROR google.cloud.aiplatform.base: handled\n" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "not for stderr" not in proc.stderr
    assert SUCCESS in log
    assert SUCCESS not in proc.stdout  # aiplatform's own stdout handler stays off: no duplicate


def test_an_existing_sitecustomize_still_runs(tmp_path: Path) -> None:
    """The hook shadows another sitecustomize on the path; it runs that one afterwards."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import sys\nprint('theirs ran', file=sys.stderr)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DIRECTORY), str(other)])}
    code = "import logging; print(len(logging.getLogger('google').handlers))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert proc.stdout.strip() == "1"
    assert "theirs ran" in proc.stderr


@pytest.mark.parametrize("name", ["__init__.py", "sitecustomize.py"])
def test_the_hook_ships_inside_the_package(name: str) -> None:
    """It lives in the watchdog package, so installing the package installs it."""
    assert (DIRECTORY / name).is_file()
    assert DIRECTORY.parent.name == "watchdog"
