"""The project setup scripts: setup-events.sh and setup.sh in dry-run mode (the commands, filters and
roles they would use), shellcheck, and setup.sh run twice against a fake gcloud."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy import fake_compute, fakes

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "gcp" / "setup-events.sh"


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


def offline(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment to run setup.sh in: the daemon's wheel is built with this Python, offline."""
    return (env or dict(os.environ)) | {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads 0 here as --no-build-isolation
        "PYTHON": sys.executable,
    }


def run_setup(*args: str, env: dict[str, str] | None = None, stdin: str = "", script: Path | None = None) -> (
    subprocess.CompletedProcess[str]
):  # fmt: skip
    argv = ["bash", str(script or SETUP), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, env=offline(env))


def setup(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """setup.sh with ARGS, which name the launcher image (--image): no image build."""
    return run_setup(*ARGS, *args, env=env, stdin=stdin)


def test_an_initial_delay_gcloud_cannot_set_is_refused() -> None:
    """gcloud never sends an initial delay of 0, so it could never be read back: refused up front."""
    for delay, message in (("0", "at least 1 second"), ("5m", "whole seconds")):
        result = setup("--dry-run", "--initial-delay", delay)
        assert result.returncode == 2
        assert message in result.stderr


def test_shellcheck_passes() -> None:
    """setup.sh, setup-events.sh, lib.sh and deploy/vm/install.sh and startup.sh are shellcheck-clean."""
    from tests.deploy.shell import require_shellcheck

    scripts = [SETUP, SCRIPT, SCRIPT.parent / "lib.sh", *sorted((ROOT / "deploy" / "vm").glob("*.sh"))]
    result = subprocess.run(
        [require_shellcheck(), "-x", *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_grants_the_roles_and_no_basic_role(tmp_path: Path) -> None:
    """The dry run makes both accounts, the custom roles with their permissions, and no basic role."""
    result = setup("--wandb-key-stdin", "--config", str(config_file(tmp_path)), "--dry-run", stdin="secret-key\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("launch-launcher", "launch-supervisor", "launch-training"):
        assert f"gcloud iam service-accounts create {name} --project p" in out
    roles = {line.split()[4]: line for line in out.splitlines() if line.startswith("gcloud iam roles create")}
    assert "aiplatform.customJobs.create\\,aiplatform.customJobs.get" in roles["launchSupervisorLauncher"]
    dispatch = roles["launchSupervisorDispatch"]
    for permission in ("run.jobs.get", "run.jobs.run\\,", "run.jobs.runWithOverrides", "run.executions.cancel"):
        assert permission in dispatch
    # The daemon cancels the CustomJobs of failed items and of runs stopped in W&B.
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
        f"secrets add-iam-policy-binding wandb-api-key --project p {supervisor} "
        "--role roles/secretmanager.secretAccessor",
    ]
    for command in expected:
        assert f"gcloud {command} " in out, command
    assert "gcloud run jobs replace " in out
    assert "gcloud logging sinks create launch-supervisor-watchdog " in out
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


# -- the daemon's VM: template, health check, firewall rule, managed instance group ---------------------

CONFIG = """[wandb]
entity = "e"

[gcp]
project = "p"
region = "us-central1"

[[queues]]
name = "q"
launcher_job = "projects/p/locations/us-central1/jobs/vertex-ai-launcher"
"""


def config_file(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def line_of(out: str, prefix: str) -> str:
    """The one line of the dry run's script that starts with `prefix`."""
    (line,) = [line for line in out.splitlines() if line.startswith(prefix)]
    return line


def test_dry_run_makes_a_self_healing_group_of_one(tmp_path: Path) -> None:
    """A template (e2-small, Debian 12, the supervisor account, no address, the startup script), a
    health check on /healthz at the daemon's port, a firewall rule for Google's probes, and a group
    of one that autoheals on it."""
    from launch_supervisor.config import HttpConfig

    port = HttpConfig().port
    result = setup("--wandb-key-stdin", "--config", str(config_file(tmp_path)), "--dry-run", stdin="secret-key")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "gcloud compute instances create" not in out

    template = line_of(out, "gcloud compute instance-templates create ")
    name = template.split()[4]
    assert name.startswith("launch-supervisor-")
    flags = ["--machine-type e2-small", "--image-family debian-12", "--no-address", "--tags launch-supervisor"]
    flags += ["--service-account launch-supervisor@p.iam.gserviceaccount.com", "--scopes cloud-platform"]
    for flag in flags:
        assert flag in template, flag
    from_file = template.split("--metadata-from-file ")[1].split()[0].split("\\,")
    keys = {item.split("=", 1)[0] for item in from_file}
    assert {"startup-script", "launch-supervisor-install", "launch-supervisor-unit", "launch-supervisor-config",
            "launch-supervisor-wheel", "launch-supervisor-lock", "launch-supervisor-http-listen"} <= keys  # fmt: skip
    assert "launch-supervisor-package" not in keys

    check = line_of(out, "gcloud compute health-checks create http launch-supervisor-healthz ")
    assert f"--port {port} " in check
    assert "--request-path /healthz " in check
    rule = line_of(out, "gcloud compute firewall-rules create launch-supervisor-healthz ")
    assert f"--rules tcp:{port} " in rule
    assert "--source-ranges 130.211.0.0/22\\,35.191.0.0/16 " in rule
    assert "--target-tags launch-supervisor " in rule

    group = line_of(out, "gcloud compute instance-groups managed create launch-supervisor ")
    assert "--size 1 " in group or "--size=1 " in group
    assert f"--template {name} " in group
    assert "--health-check launch-supervisor-healthz " in group
    assert "--initial-delay 300 " in group
    assert "secret-key" not in out + result.stderr


def test_the_vm_serves_healthz_where_the_health_check_looks() -> None:
    """The startup script has install.sh bind the daemon's default port on every address."""
    from launch_supervisor.config import HttpConfig

    startup = (ROOT / "deploy" / "vm" / "startup.sh").read_text()
    assert "--http-listen" in startup
    assert "launch-supervisor-http-listen" in startup
    text = SETUP.read_text()
    assert f"http_port={HttpConfig().port}\n" in text
    assert '"0.0.0.0:$http_port"' in text


def test_without_a_config_the_vm_is_left_alone(tmp_path: Path) -> None:
    """No --config: no template and no group, said on stderr; the health check and rule still."""
    result = setup("--dry-run")
    assert result.returncode == 0, result.stderr
    assert "instance-templates create" not in result.stdout
    assert "instance-groups managed create" not in result.stdout
    assert "gcloud compute health-checks create http" in result.stdout
    assert "no --config" in result.stderr
    assert setup("--config", str(tmp_path / "missing.toml"), "--dry-run").returncode == 2


# -- no --image, no --package: the launcher image from Cloud Build, the daemon from the bucket ---------

BASE = ("--project", "p", "--region", "us-central1")
BUCKET = "gs://p-launch-supervisor"
LOCK = ROOT / "deploy" / "vm" / "requirements.lock"
VM_SA = "serviceAccount:launch-supervisor@p.iam.gserviceaccount.com"
BUILD_SA = "serviceAccount:launch-build@p.iam.gserviceaccount.com"


def image_of(*args: str, script: Path | None = None) -> str:
    """The launcher image the job runs, from --print-job."""
    import yaml

    spec = yaml.safe_load(run_setup(*args, "--print-job", script=script).stdout)
    (container,) = spec["spec"]["template"]["spec"]["template"]["spec"]["containers"]
    image: str = container["image"]
    return image


def test_dry_run_builds_the_image_and_uploads_the_daemon(tmp_path: Path) -> None:
    """The Cloud Build call with a content-hash tag, as launch-build; the bucket with uniform access
    and two readers, the VM's and the build's accounts; the wheel and lock uploaded under their sha256
    before the template that names them; and the VM's install pinned to those hashes."""
    import hashlib
    import re

    result = run_setup(*BASE, "--config", str(config_file(tmp_path)), "--wandb-key-stdin", "--dry-run", stdin="k")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lines = out.splitlines()

    build = line_of(out, "gcloud builds submit ")
    image = image_of(*BASE)
    assert re.fullmatch(r"us-central1-docker\.pkg\.dev/p/launch/launcher:[0-9a-f]{16}", image)
    assert f"--substitutions _IMAGE={image}\\,_VERTEX_REGION=us-central1 " in build
    assert build.split("--config ")[1].split()[0].endswith("/images/launcher/cloudbuild.yaml")
    assert f"--service-account projects/p/serviceAccounts/{BUILD_SA.split(':')[1]} " in build
    assert f"--gcs-source-staging-dir {BUCKET}/source" in build
    repository = line_of(out, "gcloud artifacts repositories create launch ")
    assert "--repository-format docker" in repository
    writer = line_of(out, "gcloud artifacts repositories add-iam-policy-binding launch ")
    assert f"--member {BUILD_SA} --role roles/artifactregistry.writer " in writer

    bucket = line_of(out, f"gcloud storage buckets create {BUCKET} ")
    assert "--uniform-bucket-level-access --public-access-prevention" in bucket
    readers = [line for line in lines if line.startswith(f"gcloud storage buckets add-iam-policy-binding {BUCKET} ")]
    members = sorted(
        line.split("--member ")[1].split()[0] + " " + line.split("--role ")[1].split()[0] for line in readers
    )
    assert members == [f"{BUILD_SA} roles/storage.objectViewer", f"{VM_SA} roles/storage.objectViewer"]

    lock_sha = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    uploads = [line for line in lines if line.startswith("gcloud storage cp ")]
    assert len(uploads) == 2
    wheel = re.search(rf"{BUCKET}/daemon/([0-9a-f]{{16}})/launch_supervisor-[^ ]+-py3-none-any\.whl ", uploads[0])
    assert wheel
    assert f" {BUCKET}/daemon/{lock_sha[:16]}/requirements.lock " in uploads[1]
    pinned = next(line for line in lines if line.startswith("# launch-supervisor-") and "installs" in line)
    assert "pip --require-hashes --no-deps" in pinned
    assert re.search(rf"{wheel[0].strip()} \(sha256 {wheel[1]}[0-9a-f]{{48}}\)", pinned)
    assert f"{BUCKET}/daemon/{lock_sha[:16]}/requirements.lock (sha256 {lock_sha})" in pinned

    def at(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    assert (
        at("gcloud storage buckets create") < at("gcloud storage cp") < at("gcloud compute instance-templates create")
    )
    assert at("gcloud storage buckets create") < at("gcloud builds submit") < at("gcloud run jobs replace")
    assert "storage.googleapis.com" in line_of(out, "gcloud services enable ")


def test_image_and_package_given_build_and_upload_nothing(tmp_path: Path) -> None:
    """--image and --package: no build, no bucket, and the template has the VM pip-install the package."""
    args = ("--config", str(config_file(tmp_path)), "--package", "launch-supervisor[daemon]==0.1.0", "--dry-run")
    result = setup(*args)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "gcloud builds submit" not in out
    assert "gcloud storage" not in out + result.stderr
    assert "launch-build" not in out
    template = line_of(out, "gcloud compute instance-templates create ")
    keys = {item.split("=", 1)[0] for item in template.split("--metadata-from-file ")[1].split()[0].split("\\,")}
    assert "launch-supervisor-package" in keys
    assert not {"launch-supervisor-wheel", "launch-supervisor-lock"} & keys
    assert "installs at every boot, with pip (deploy/vm/install.sh): launch-supervisor[daemon]==0.1.0" in out


def test_a_bucket_name_cloud_storage_refuses_is_refused() -> None:
    """A --bucket Cloud Storage would refuse is named, with the fix, before anything is done."""
    result = setup("--bucket", "My_Bucket", "--dry-run")
    assert result.returncode == 2
    assert "My_Bucket is not a bucket name" in result.stderr
    assert result.stdout == ""


def test_the_image_tag_is_a_hash_of_its_inputs_and_region() -> None:
    """The same checkout gives the same tag; another region (a build argument) another; --image wins."""
    first, again, other = image_of(*BASE), image_of(*BASE), image_of("--project", "p", "--region", "europe-west4")
    assert first == again
    assert first.rsplit(":", 1)[1] != other.rsplit(":", 1)[1]
    assert image_of(*BASE, "--image", "r/launcher:1") == "r/launcher:1"


def test_the_image_inputs_cover_what_the_dockerfile_copies() -> None:
    """Every file the launcher's Dockerfile copies from the context is in images/launcher/inputs (or
    under a folder there), and every input exists: the tag changes whenever the image would."""
    from dockerfile_parse import DockerfileParser

    inputs_file = ROOT / "images" / "launcher" / "inputs"
    inputs = [line for line in inputs_file.read_text().splitlines() if line and not line.startswith("#")]
    assert all((ROOT / path).exists() for path in inputs), inputs
    parser = DockerfileParser(path=str(ROOT / "images" / "launcher" / "Dockerfile"))
    copies = [i["value"].split() for i in parser.structure if i["instruction"] == "COPY"]
    sources = [s for words in copies if not any(w.startswith("--from") for w in words) for s in words[:-1]]
    sources = [s for s in sources if not s.startswith("--")]
    assert sources
    for source in sources:
        assert any(source == i or source.startswith(f"{i}/") for i in inputs), source
    assert "images/launcher/cloudbuild.yaml" in inputs


def fake_env(tmp_path: Path) -> dict[str, str]:
    """fakes.py's stand-ins, with gcloud answering for the VM's compute resources too."""
    env = fakes.install(tmp_path / "bin", tmp_path / "state")
    gcloud = tmp_path / "bin" / "gcloud"
    # -S: the stand-in needs only the standard library, and a script makes about a hundred calls.
    gcloud.write_text(
        f"#!{sys.executable} -S\nimport sys\nsys.path.insert(0, {str(Path(fakes.__file__).parent)!r})\n"
        "from fake_compute import fake_compute\nsys.exit(fake_compute(sys.argv[1:]))\n"
    )
    return env


def mutating_calls(state: Path) -> list[list[str]]:
    calls = [c for c in fakes.calls(state) if c[0] == "gcloud" and fake_compute.MUTATING & set(c[1:])]
    (state / "calls").unlink()
    return calls


@pytest.mark.slow
def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    """Against a fake gcloud, the first run creates everything, the image build, the bucket and the
    uploads included, and a second makes no mutating call; a new config makes a new template and a
    rolling replacement, a new initial delay an update of the group, and nothing else."""
    env = fake_env(tmp_path)
    state = tmp_path / "state"
    config = config_file(tmp_path)
    args = (*BASE, "--wandb-key-stdin", "--with-nat", "--config", str(config))
    first = run_setup(*args, env=env, stdin="the-key\n")
    assert first.returncode == 0, first.stderr
    made = mutating_calls(state)
    assert any("replace" in c for c in made)
    creates = {" ".join(c[1 : c.index("create")]) for c in made if "create" in c}
    assert {"compute instance-templates", "compute health-checks", "compute firewall-rules"} <= creates
    assert {"compute instance-groups managed", "storage buckets", "artifacts repositories"} <= creates
    assert [c[1:3] for c in made if "cp" in c or "submit" in c] == [["storage", "cp"]] * 2 + [["builds", "submit"]]
    group = next(c for c in made if c[1:5] == ["compute", "instance-groups", "managed", "create"])
    assert group[group.index("--size") + 1] == "1"
    assert group[group.index("--health-check") + 1] == "launch-supervisor-healthz"
    template = next(c for c in made if c[1:4] == ["compute", "instance-templates", "create"])
    assert group[group.index("--template") + 1] == template[4]
    assert template[template.index("--machine-type") + 1] == "e2-small"
    assert template[template.index("--service-account") + 1] == "launch-supervisor@p.iam.gserviceaccount.com"
    assert "startup-script=" in template[template.index("--metadata-from-file") + 1]
    assert not any(c[1:3] == ["compute", "instances"] and "create" in c for c in made)
    assert not any("the-key" in arg for c in made for arg in c)

    second = run_setup(*args, env=env, stdin="the-key\n")
    assert second.returncode == 0, second.stderr
    assert mutating_calls(state) == []

    # A changed key or task timeout changes just that.
    third = run_setup(*args, "--task-timeout", "900", env=env, stdin="new-key")
    assert third.returncode == 0, third.stderr
    assert [c[1:4] for c in mutating_calls(state)] == [["secrets", "versions", "add"], ["run", "jobs", "replace"]]

    # A new config: a new template, and the group's VM replaced with it (the old one stopped first).
    config_file(tmp_path, CONFIG.replace('entity = "e"', 'entity = "f"'))
    fourth = run_setup(*args, "--task-timeout", "900", env=env, stdin="new-key")
    assert fourth.returncode == 0, fourth.stderr
    made = mutating_calls(state)
    assert [c[1:5] for c in made] == [
        ["compute", "instance-templates", "create", made[0][4]],
        ["compute", "instance-groups", "managed", "rolling-action"],
    ]
    assert made[0][4] != template[4]
    update = made[1]
    assert update[update.index("--version") + 1] == f"template={made[0][4]}"
    assert update[update.index("--max-surge") + 1] == "0"

    # A longer initial delay: the group's autohealing policy is updated, nothing else.
    fifth = run_setup(*args, "--task-timeout", "900", "--initial-delay", "600", env=env, stdin="new-key")
    assert fifth.returncode == 0, fifth.stderr
    (update,) = mutating_calls(state)
    assert update[1:6] == ["compute", "instance-groups", "managed", "update", "launch-supervisor"]
    assert update[update.index("--initial-delay") + 1] == "600"


def checkout(tmp_path: Path) -> Path:
    """A copy of what setup.sh reads of the repository, to change as a new commit would."""
    import shutil

    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("deploy", "images", "supervisor", "watchdog"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    return copy


@pytest.mark.slow
def test_new_code_rebuilds_the_image_and_rolls_the_vm(tmp_path: Path) -> None:
    """New code in the package: a new wheel uploaded, the image built again and the job given it, a
    new template and the VM replaced; a new lock alone: the lock uploaded and the VM replaced, no build."""
    repo = checkout(tmp_path)
    script = repo / "deploy" / "gcp" / "setup.sh"
    env = fake_env(tmp_path)
    state = tmp_path / "state"
    args = (*BASE, "--wandb-key-stdin", "--config", str(config_file(tmp_path)))
    assert run_setup(*args, env=env, stdin="k", script=script).returncode == 0
    mutating_calls(state)

    def changes_after_editing(path: Path) -> list[list[str]]:
        """What a run makes after a line is added to `path`: group, verb and first argument."""
        with path.open("a") as file:
            file.write("# a change\n")
        result = run_setup(*args, env=env, stdin="k", script=script)
        assert result.returncode == 0, result.stderr
        return [c[1:4] for c in mutating_calls(state)]

    made = changes_after_editing(repo / "watchdog" / "cli.py")
    assert made == [
        ["storage", "cp", made[0][2]],
        ["builds", "submit", made[1][2]],
        ["run", "jobs", "replace"],
        ["compute", "instance-templates", "create"],
        ["compute", "instance-groups", "managed"],
    ]
    assert made[0][2].endswith(".whl")

    made = changes_after_editing(repo / "deploy" / "vm" / "requirements.lock")
    assert made == [
        ["storage", "cp", made[0][2]],
        ["compute", "instance-templates", "create"],
        ["compute", "instance-groups", "managed"],
    ]
    assert made[0][2].endswith("requirements.lock")


def test_a_role_missing_a_permission_is_updated(tmp_path: Path) -> None:
    """A launchSupervisorVertex role from before cancel was needed gets it, by one roles update."""
    env = fake_env(tmp_path)
    state = tmp_path / "state"
    args = ("--wandb-key-stdin", "--config", str(config_file(tmp_path)))
    assert setup(*args, env=env, stdin="k").returncode == 0
    mutating_calls(state)
    saved = json.loads((state / "state.json").read_text())
    saved["resources"]["iam roles launchSupervisorVertex"]["includedPermissions"] = "aiplatform.customJobs.list"
    (state / "state.json").write_text(json.dumps(saved))

    again = setup(*args, env=env, stdin="k")
    assert again.returncode == 0, again.stderr
    (update,) = mutating_calls(state)
    assert update[1:5] == ["iam", "roles", "update", "launchSupervisorVertex"]
    assert update[update.index("--permissions") + 1] == "aiplatform.customJobs.cancel,aiplatform.customJobs.list"


def test_a_plain_vm_of_the_same_name_stops_it(tmp_path: Path) -> None:
    """A VM made outside a group (by an earlier setup.sh) is not joined by a second daemon."""
    env = fake_env(tmp_path)
    state = tmp_path / "state"
    (state / "state.json").write_text(
        json.dumps({"resources": {"compute instances launch-supervisor": {"serviceAccounts[0].email": "x"}}})
    )
    result = setup("--wandb-key-stdin", "--config", str(config_file(tmp_path)), env=env, stdin="k")
    assert result.returncode == 2
    assert "gcloud compute instances delete launch-supervisor" in result.stderr
    assert not any(c[1:4] == ["compute", "instance-groups", "managed"] and "create" in c for c in mutating_calls(state))
