"""The daemon's Dockerfile (images/supervisor), checked statically: slim base, non-root, the daemon
extra only, `launch-supervisor run`, nothing exposed, no secrets."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "supervisor" / "Dockerfile"


@pytest.fixture(scope="module")
def instructions() -> list[dict[str, Any]]:
    return [i for i in DockerfileParser(str(DOCKERFILE)).structure if i["instruction"] != "COMMENT"]


def final_stage(instructions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last_from = max(i for i, ins in enumerate(instructions) if ins["instruction"] == "FROM")
    return instructions[last_from:]


def test_slim_python_base(instructions: list[dict[str, Any]]) -> None:
    """Every stage is the slim Python 3.11 image the launcher uses."""
    args = dict(i["value"].split("=", 1) for i in instructions if i["instruction"] == "ARG" and "=" in i["value"])
    assert args["PYTHON_IMAGE"].startswith("python:3.11")
    assert "slim" in args["PYTHON_IMAGE"]
    froms = [i["value"].split()[0] for i in instructions if i["instruction"] == "FROM"]
    assert froms
    assert set(froms) == {"${PYTHON_IMAGE}"}


def test_installs_only_the_daemon_extra(instructions: list[dict[str, Any]]) -> None:
    """pip installs the project with [daemon], an extra of pyproject.toml, and nothing else."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "daemon" in extras
    installs = [i["value"] for i in instructions if i["instruction"] == "RUN" and "pip install" in i["value"]]
    assert installs == ['/opt/launch-supervisor/bin/pip install "/src[daemon]"']


def test_runs_launch_supervisor_as_a_non_root_user(instructions: list[dict[str, Any]]) -> None:
    """The final stage switches to an unprivileged user; ENTRYPOINT is `launch-supervisor run`."""
    users = [i["value"] for i in final_stage(instructions) if i["instruction"] == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    entrypoint = json.loads(next(i["value"] for i in instructions if i["instruction"] == "ENTRYPOINT"))
    assert entrypoint == ["launch-supervisor", "run"]
    assert "launch-supervisor" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_exposes_nothing_and_documents_the_metrics_port(instructions: list[dict[str, Any]]) -> None:
    """No EXPOSE (the daemon listens on loopback by default); the header says how to publish 9464."""
    assert not any(i["instruction"] == "EXPOSE" for i in instructions)
    assert "9464" in DOCKERFILE.read_text()


def test_no_secrets_in_the_image(instructions: list[dict[str, Any]]) -> None:
    """No key, token or credential file is set or copied; only the sources are."""
    for ins in instructions:
        if ins["instruction"] in ("ENV", "ARG", "COPY", "ADD"):
            assert not re.search(r"API_KEY|TOKEN|PASSWORD|SECRET|credentials|netrc|\.json", ins["value"], re.I), ins
    copied = [
        i["value"].split()[:-1] for i in instructions if i["instruction"] == "COPY" and "--from" not in i["value"]
    ]
    assert sorted(s for sources in copied for s in sources) == ["README.md", "pyproject.toml", "supervisor", "watchdog"]
    assert not any(i["instruction"] == "ADD" for i in instructions)
