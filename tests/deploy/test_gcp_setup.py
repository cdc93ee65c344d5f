"""The project setup scripts: setup-events.sh and setup.sh in dry-run mode (the commands, filters and
roles they would use), shellcheck, and setup.sh run twice against a fake gcloud."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.shell import require_shellcheck

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "gcp" / "setup-events.sh"


def dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args, "--dry-run"], capture_output=True, text=True, check=False)


def test_creates_topic_subscription_and_three_sinks() -> None:
    """Topic, subscription, and a sink per event source, each allowed to publish."""
    out = dry_run("--project", "arr-coc", "--job", "vertex-ai-launcher", "--daemon-sa", "sup@arr-coc.iam").stdout
    assert "gcloud pubsub topics create launch-supervisor-events --project arr-coc" in out
    assert "subscriptions create launch-supervisor --project arr-coc --topic launch-supervisor-events" in out
    for sink in ("watchdog", "executions", "vertex"):
        assert f"gcloud logging sinks create launch-supervisor-{sink} " in out
    assert out.count("--role roles/pubsub.publisher") == 3
    assert "--role roles/pubsub.subscriber" in out
    assert 'subscription = "projects/arr-coc/subscriptions/launch-supervisor"' in out


def test_filters_select_the_right_logs() -> None:
    """The watchdog sink takes its jsonPayload events from the launcher jobs only."""
    out = dry_run("--project", "p", "--job", "a", "--job", "b").stdout
    watchdog = next(line for line in out.splitlines() if "sinks create launch-supervisor-watchdog" in line)
    assert 'resource.labels.job_name=\\(\\"a\\"\\ OR\\ \\"b\\"\\)' in watchdog
    assert 'jsonPayload.event:\\"watchdog.\\"' in watchdog


def test_missing_arguments_are_named() -> None:
    """Without --project or --job it says which are required and exits 2."""
    result = dry_run("--project", "p")
    assert result.returncode == 2
    assert "--project and at least one --job" in result.stderr


# -- setup.sh: the whole project ------------------------------------------------------------------------

SETUP = SCRIPT.parent / "setup.sh"
BASIC_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
ARGS = ("--project", "p", "--region", "us-central1", "--image", "us-docker.pkg.dev/p/r/launcher:1")


def setup(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SETUP), *ARGS, *args], input=stdin, capture_output=True, text=True, check=False, env=env
    )


def test_shellcheck_passes() -> None:
    """setup.sh, setup-events.sh, lib.sh and deploy/vm/install.sh are shellcheck-clean."""
    scripts = [SETUP, SCRIPT, SCRIPT.parent / "lib.sh", SCRIPT.parents[1] / "vm" / "install.sh"]
    result = subprocess.run(
        [require_shellcheck(), "-x", *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_grants_the_roles_and_no_basic_role() -> None:
    """The dry run makes both accounts, the custom roles with their permissions, and no basic role."""
    result = setup("--wandb-key-stdin", "--dry-run", stdin="secret-key\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("launch-launcher", "launch-supervisor", "launch-training"):
        assert f"gcloud iam service-accounts create {name} --project p" in out
    roles = {line.split()[4]: line for line in out.splitlines() if line.startswith("gcloud iam roles create")}
    assert "aiplatform.customJobs.create\\,aiplatform.customJobs.get" in roles["launchSupervisorLauncher"]
    dispatch = roles["launchSupervisorDispatch"]
    for permission in ("run.jobs.run\\,", "run.jobs.runWithOverrides", "run.executions.get", "run.executions.cancel"):
        assert permission in dispatch
    assert "aiplatform.customJobs.cancel\\,aiplatform.customJobs.list" in roles["launchSupervisorVertex"]
    launcher = "--member serviceAccount:launch-launcher@p.iam.gserviceaccount.com"
    supervisor = "--member serviceAccount:launch-supervisor@p.iam.gserviceaccount.com"
    expected = [
        f"projects add-iam-policy-binding p {launcher} --role projects/p/roles/launchSupervisorLauncher",
        f"projects add-iam-policy-binding p {launcher} --role roles/logging.logWriter",
        f"iam service-accounts add-iam-policy-binding launch-training@p.iam.gserviceaccount.com --project p {launcher} "
        "--role roles/iam.serviceAccountUser",
        f"secrets add-iam-policy-binding wandb-api-key --project p {launcher} "
        "--role roles/secretmanager.secretAccessor",
        f"run jobs add-iam-policy-binding vertex-ai-launcher --region us-central1 --project p {supervisor} "
        "--role projects/p/roles/launchSupervisorDispatch",
        f"projects add-iam-policy-binding p {supervisor} --role projects/p/roles/launchSupervisorVertex",
        f"pubsub subscriptions add-iam-policy-binding launch-supervisor --project p {supervisor} "
        "--role roles/pubsub.subscriber",
    ]
    for command in expected:
        assert f"gcloud {command} " in out, command
    assert "gcloud run jobs replace " in out
    assert "gcloud logging sinks create launch-supervisor-watchdog " in out
    vm = next(line for line in out.splitlines() if line.startswith("gcloud compute instances create"))
    assert "--machine-type e2-small" in vm
    assert "--image-family debian-12" in vm
    assert "--no-address" in vm
    assert "--service-account launch-supervisor@p.iam.gserviceaccount.com" in vm
    assert not any(role in out + result.stderr for role in BASIC_ROLES)
    assert "secret-key" not in out + result.stderr


def test_the_key_never_goes_on_a_command_line() -> None:
    """setup.sh has no option that takes the key itself; it adds the version from a file."""
    usage = subprocess.run(["bash", str(SETUP), "--help"], capture_output=True, text=True, check=False).stdout
    assert "--wandb-key-file FILE | --wandb-key-stdin" in usage
    assert setup("--wandb-key", "k", "--dry-run").returncode == 2
    out = setup("--wandb-key-stdin", "--dry-run", stdin="k").stdout
    assert "gcloud secrets versions add wandb-api-key --project p --data-file " in out


def test_launcher_job_spec() -> None:
    """The job: no retries, the task timeout, 2 CPU and 2 GiB, the key from the secret, the watchdog's env."""
    import re

    import yaml

    spec = yaml.safe_load(setup("--task-timeout", "1200", "--print-job").stdout)
    assert spec["metadata"]["name"] == "vertex-ai-launcher"
    assert re.fullmatch(r"[0-9a-f]{40}", spec["metadata"]["labels"]["spec_sha"])
    task = spec["spec"]["template"]["spec"]["template"]["spec"]
    assert task["maxRetries"] == 0
    assert task["timeoutSeconds"] == "1200"
    assert task["serviceAccountName"] == "launch-launcher@p.iam.gserviceaccount.com"
    (container,) = task["containers"]
    assert container["image"] == ARGS[-1]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
    env = {e["name"]: e for e in container["env"]}
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "wandb-api-key", "key": "latest"}
    watchdog_cli = (SCRIPT.parents[2] / "watchdog" / "cli.py").read_text()
    settings = {name for name in env if name.startswith("LAUNCH_WATCHDOG_")}
    assert {"LAUNCH_WATCHDOG_IDLE_TIMEOUT", "LAUNCH_WATCHDOG_ON_SUBMIT"} <= settings
    assert all(f'"{name}"' in watchdog_cli for name in settings), settings
    assert all("value" in env[name] for name in settings)


def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    """Against a fake gcloud, the first run creates everything and a second makes no mutating call."""
    from tests.deploy import fakes

    env = fakes.install(tmp_path / "bin", tmp_path / "state")
    first = setup("--wandb-key-stdin", "--with-nat", env=env, stdin="the-key\n")
    assert first.returncode == 0, first.stderr
    made = [c for c in fakes.calls(tmp_path / "state") if c[0] == "gcloud"]
    assert any("replace" in c for c in made)
    assert any(c[1:4] == ["compute", "instances", "create"] for c in made)
    assert not any("the-key" in arg for c in made for arg in c)
    (tmp_path / "state" / "calls").unlink()

    second = setup("--wandb-key-stdin", "--with-nat", env=env, stdin="the-key\n")
    assert second.returncode == 0, second.stderr
    mutating = [c for c in fakes.calls(tmp_path / "state") if fakes.MUTATING_GCLOUD & set(c[1:])]
    assert mutating == []

    # A changed key or image changes just that.
    (tmp_path / "state" / "calls").unlink()
    third = setup("--wandb-key-stdin", "--with-nat", "--task-timeout", "900", env=env, stdin="new-key")
    assert third.returncode == 0, third.stderr
    mutating = [c for c in fakes.calls(tmp_path / "state") if fakes.MUTATING_GCLOUD & set(c[1:])]
    assert [c[1:4] for c in mutating] == [["secrets", "versions", "add"], ["run", "jobs", "replace"]]
