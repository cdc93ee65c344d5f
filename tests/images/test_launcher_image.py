"""The launcher Dockerfile, checked statically (no Docker engine here)."""

from __future__ import annotations

import json
import subprocess
import tomllib
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "launcher" / "Dockerfile"


@pytest.fixture(scope="module")
def instructions() -> list[dict[str, Any]]:
    return [i for i in DockerfileParser(str(DOCKERFILE)).structure if i["instruction"] != "COMMENT"]


def _final_stage(instructions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last_from = max(i for i, ins in enumerate(instructions) if ins["instruction"] == "FROM")
    return instructions[last_from:]


def test_multi_stage_on_a_slim_python(instructions: list[dict[str, Any]]) -> None:
    """A build stage and a runtime stage, both from a slim Python 3.11 image."""
    froms = [i["value"] for i in instructions if i["instruction"] == "FROM"]
    assert len(froms) >= 2
    args = {
        i["value"].split("=", 1)[0]: i["value"].split("=", 1)[1]
        for i in instructions
        if i["instruction"] == "ARG" and "=" in i["value"]
    }
    assert "slim" in args["PYTHON_IMAGE"]
    assert args["PYTHON_IMAGE"].startswith("python:3.11")
    assert any(i["instruction"] == "COPY" and i["value"].startswith("--from=build") for i in _final_stage(instructions))


REQUIREMENTS = ROOT / "images" / "launcher" / "requirements.txt"
LAUNCH_CONFIG = ROOT / "images" / "launcher" / "launch-config.yaml"


def _pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        name, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            found[name.lower()] = version
    return found


def test_pinned_agent_and_no_gcloud(instructions: list[dict[str, Any]]) -> None:
    """The image installs exactly requirements.txt, every line an exact pin; never the gcloud CLI."""
    runs = " ".join(i["value"] for i in instructions if i["instruction"] == "RUN")
    assert "pip install -r /src/images/launcher/requirements.txt" in runs
    lines = [line for line in REQUIREMENTS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert all("==" in line for line in lines), lines
    assert {"wandb", "google-cloud-aiplatform", "google-cloud-compute"} <= set(_pins(lines))
    for forbidden in ("google-cloud-sdk", "google-cloud-cli", "install.sh", "curl "):
        assert forbidden not in runs


def test_the_pinned_wandb_is_the_one_tested() -> None:
    """Every pin of the image is the version installed here, so the tests run the image's agent."""
    for name, version in _pins(REQUIREMENTS.read_text().splitlines()).items():
        assert metadata.version(name) == version, name


def test_the_sandbox_extra_takes_the_images_pins() -> None:
    """`pip install 'launch-supervisor[sandbox]'` installs what the image installs, at the same pins."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    image = _pins(REQUIREMENTS.read_text().splitlines())
    assert {k: v for k, v in _pins(extras["sandbox"]).items() if k in image} == image


def test_the_sandbox_reads_the_images_launch_config() -> None:
    """The sandbox gives each launcher the very file the image copies."""
    from launch_supervisor.sandbox import session

    assert session.LAUNCH_CONFIG.read_bytes() == LAUNCH_CONFIG.read_bytes()


def test_runs_as_a_non_root_user(instructions: list[dict[str, Any]]) -> None:
    """The final stage switches to an unprivileged user before the entrypoint."""
    users = [i["value"] for i in _final_stage(instructions) if i["instruction"] == "USER"]
    assert users
    assert users[-1] not in ("root", "0")


def test_entrypoint_is_exec_form_and_names_installed_scripts(instructions: list[dict[str, Any]]) -> None:
    """ENTRYPOINT is the exec-form watchdog over `wandb launch-agent`, both real console scripts."""
    entrypoint = json.loads(next(i["value"] for i in instructions if i["instruction"] == "ENTRYPOINT"))
    assert entrypoint == ["launch-watchdog", "--", "wandb", "launch-agent"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["launch-watchdog"] == "launch_watchdog.cli:main"
    wandb_scripts = {ep.name for ep in metadata.distribution("wandb").entry_points if ep.group == "console_scripts"}
    assert "wandb" in wandb_scripts
    assert not any(i["instruction"] == "CMD" for i in _final_stage(instructions))


def test_copied_sources_exist(instructions: list[dict[str, Any]]) -> None:
    """Everything the build stage copies from the context is in the repository."""
    for ins in instructions:
        if ins["instruction"] == "COPY" and not ins["value"].startswith("--from"):
            for source in [s for s in ins["value"].split()[:-1] if not s.startswith("--")]:
                assert (ROOT / source).exists(), source


def _written_config(instructions: list[dict[str, Any]], tmp_path: Path, region: str) -> dict[str, Any]:
    """Copy launch-config.yaml and run the step that sets its region, redirected into tmp_path."""
    run = next(i["value"] for i in instructions if i["instruction"] == "RUN" and "launch-config.yaml" in i["value"])
    step = next(part for part in run.split("&&") if "sed" in part)
    step = step.replace("/home/launcher/.config/wandb", str(tmp_path))
    (tmp_path / "launch-config.yaml").write_bytes(LAUNCH_CONFIG.read_bytes())
    subprocess.run(["sh", "-c", step], check=True, env={"VERTEX_REGION": region, "PATH": "/usr/bin:/bin"})
    loaded: dict[str, Any] = yaml.safe_load((tmp_path / "launch-config.yaml").read_text())
    return loaded


def test_launch_config_validates_against_the_agents_model(instructions: list[dict[str, Any]], tmp_path: Path) -> None:
    """The copied config is noop builder + gcp environment in the build-arg region, valid for wandb."""
    copies = [i["value"] for i in instructions if i["instruction"] == "COPY" and "launch-config.yaml" in i["value"]]
    assert copies
    assert copies[0].split()[-1] == "/home/launcher/.config/wandb/launch-config.yaml"
    config = _written_config(instructions, tmp_path, "europe-west4")
    assert config == {"builder": {"type": "noop"}, "environment": {"type": "gcp", "region": "europe-west4"}}
    with warnings.catch_warnings():  # wandb's own model still uses pydantic's class-based config
        warnings.simplefilter("ignore", DeprecationWarning)
        from wandb.sdk.launch.agent.config import AgentConfig

    # As the agent resolves it: file, then -e/-q/--max-jobs from the command line.
    resolved = {"max_jobs": 1, "queues": ["vertex-ai-queue"], "entity": "team-ml", **config}
    agent_config = AgentConfig(**resolved)
    assert agent_config.environment is not None
    assert agent_config.environment.region == "europe-west4"
    assert agent_config.builder is not None
    assert agent_config.builder.type is not None
    assert agent_config.builder.type.value == "noop"


def test_region_defaults_from_the_build_arg(instructions: list[dict[str, Any]]) -> None:
    """VERTEX_REGION has a default, so the agent never falls back to gcloud for its region."""
    args = [i["value"] for i in instructions if i["instruction"] == "ARG"]
    assert any(a.startswith("VERTEX_REGION=") and a.split("=", 1)[1] for a in args)


CLOUDBUILD = ROOT / "images" / "launcher" / "cloudbuild.yaml"
SETUP = ROOT / "deploy" / "gcp" / "setup.sh"


def test_cloud_build_builds_this_dockerfile_and_pushes_the_tag_it_is_given() -> None:
    """The build config runs `docker build` on this Dockerfile with the region's build argument, pushes
    `_IMAGE`, logs to Cloud Logging (a user-specified service account cannot use the default logs
    bucket), and uses exactly the substitutions setup.sh passes: Cloud Build refuses a build whose
    substitutions and config disagree (https://cloud.google.com/build/docs/configuring-builds/substitute-variable-values)."""
    import re

    config = yaml.safe_load(CLOUDBUILD.read_text())
    (step,) = config["steps"]
    assert step["name"] == "gcr.io/cloud-builders/docker"
    args = step["args"]
    assert args[0] == "build"
    assert (ROOT / args[args.index("-f") + 1]) == DOCKERFILE
    assert args[args.index("-t") + 1] == "${_IMAGE}"
    assert "VERTEX_REGION=${_VERTEX_REGION}" in args
    assert "VERTEX_REGION" in {i["value"].split("=", 1)[0] for i in DockerfileParser(str(DOCKERFILE)).structure
                               if i["instruction"] == "ARG"}  # fmt: skip
    assert args[-1] == "."
    assert config["images"] == ["${_IMAGE}"]
    assert config["options"]["logging"] == "CLOUD_LOGGING_ONLY"
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", CLOUDBUILD.read_text().split("\nsteps:", 1)[1]))
    given = re.search(r'--substitutions "([^"]+)"', SETUP.read_text())
    assert given
    assert {pair.split("=", 1)[0] for pair in given[1].split(",")} == used == {"_IMAGE", "_VERTEX_REGION"}
