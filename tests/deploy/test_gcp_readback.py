"""setup.sh's read-backs, through gcloud's own formatter: each `--format 'value(…)'` is printed, offline, by
the installed Google Cloud SDK over a resource shaped as the API returns it when it is already as setup.sh
wants it (its fields checked against the SDK's generated message classes), and must give exactly what the
script compares with, so a second run changes nothing. Skipped without the SDK; nothing touches the network."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "deploy" / "gcp" / "setup.sh"
TEXT = SETUP.read_text()
LINES = TEXT.replace("\\\n", " ").splitlines()  # continuation lines joined: one command a line
COMPUTE = "https://www.googleapis.com/compute/v1/projects/p"

# Run by the SDK's Python with its lib on sys.path (its imports warn, which pytest makes errors here): reads
# the cases as JSON on stdin, prints for each what `value(…)` prints and the fields the API class lacks.
FORMATTER = r"""
import importlib, io, json, sys
sys.path[:0] = [sys.argv[1] + "/lib", sys.argv[1] + "/lib/third_party"]
try:
    from apitools.base.protorpclite import messages
    from apitools.base.py import encoding
    from googlecloudsdk.core.resource import resource_printer
except ImportError as e:
    print(json.dumps({"skip": f"the Google Cloud SDK's lib is not importable: {e}"}))
    sys.exit()

def unknown(m, at=""):
    found = [at + name for name in m.all_unrecognized_fields()]
    for field in m.all_fields():
        value = m.get_assigned_value(field.name)
        if isinstance(field, messages.MessageField) and value is not None:
            for item in value if field.repeated else [value]:
                found += unknown(item, at + field.name + ".")
    return found

results = []
for case in json.load(sys.stdin):
    if case["api"] is None:  # a command that returns a plain dict of its own making
        out = io.StringIO()
        resource_printer.Print(case["resources"], case["format"], out=out)
        results.append({"printed": out.getvalue(), "unknown": []})
        continue
    api, version = case["api"].split("/")
    module = f"googlecloudsdk.generated_clients.apis.{api}.{version}.{api}_{version}_messages"
    cls = getattr(importlib.import_module(module), case["type"])
    found = [encoding.DictToMessage(r, cls) for r in case["resources"]]
    # Describe commands return the message; `instance-groups managed describe` returns MessageToDict of it.
    shown = [encoding.MessageToDict(m) for m in found] if case["as_dict"] else found
    out = io.StringIO()
    resource_printer.Print(shown, case["format"], out=out)
    results.append({"printed": out.getvalue(), "unknown": [u for m in found for u in unknown(m)]})
print(json.dumps({"results": results}))
"""


def sdk_root() -> Path | None:
    """The Google Cloud SDK's root (with lib/googlecloudsdk), or None."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    root = Path(gcloud).resolve().parents[1]
    if not (root / "lib" / "googlecloudsdk").is_dir():
        info = ["gcloud", "info", "--format=value(installation.sdk_root)"]
        result = subprocess.run(info, capture_output=True, text=True, timeout=60, check=False)
        root = Path(result.stdout.strip() or "/nonexistent")
    return root if (root / "lib" / "googlecloudsdk").is_dir() else None


def var(name: str) -> str:
    """The first value setup.sh assigns to NAME: its default."""
    found = re.search(rf'(?:^|\s){name}=("[^"]*"|\S*)', TEXT, re.M)
    assert found, name
    return found[1].strip('"')


def array(name: str) -> list[str]:
    """The words of setup.sh's `NAME=(…)`."""
    found = re.search(rf"^\s*{name}=\((.*?)\)", TEXT, re.S | re.M)
    assert found, name
    return found[1].split()


def read_backs() -> dict[str, tuple[str, str]]:
    """setup.sh's `query gcloud COMMAND … --format 'value(…)'`: COMMAND → (the format, the `want=` line before)."""
    found, want = {}, ""
    for line in LINES:
        if line.startswith("want="):
            want = line
        query = re.search(r"query gcloud ((?:[a-z][a-z-]* )+?)[\"-].*--format '(value\(.*\))'", line)
        if query:
            found[query[1].strip()] = (query[2], want)
            want = ""
    return found


def roles() -> list[list[str]]:
    """setup.sh's `ensure_role ID TITLE PERMISSION…` calls."""
    return [shlex.split(line)[1:] for line in LINES if line.startswith("ensure_role ")]


def bash(script: str, **env: str) -> str:
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env={**os.environ, **env}, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@functools.cache
def job() -> dict[str, Any]:
    """The launcher job's spec as setup.sh applies it (--print-job)."""
    spec: dict[str, Any] = yaml.safe_load(
        bash(f"{shlex.quote(str(SETUP))} --project p --region r --image i --print-job")
    )
    return spec


def cases() -> dict[str, dict[str, Any]]:
    """For each read-back command: the API's message class, and the resources as the API returns them when
    they are as setup.sh makes them."""
    port, tag, check, vm = var("http_port"), var("tag"), var("health_check"), var("vm")
    bucket = "p-launch-supervisor"
    hc_words = [port if word == '"$http_port"' else word for word in array("hc_flags")]
    hc = dict(zip(hc_words[::2], hc_words[1::2], strict=True))
    template = f"{COMPUTE}/global/instanceTemplates/{vm}-0123456789"
    group = {
        "name": vm,
        "zone": f"{COMPUTE}/zones/r-b",
        "baseInstanceName": vm,
        "targetSize": 1,
        "instanceTemplate": template,
        "autoHealingPolicies": [
            {"healthCheck": f"{COMPUTE}/global/healthChecks/{check}", "initialDelaySec": int(var("initial_delay"))}
        ],
    }
    return {
        # gcloud services list (GA): serviceusage v1 services.list, filter state:ENABLED.
        "services list": {
            "api": "serviceusage/v1",
            "type": "GoogleApiServiceusageV1Service",
            "resources": [
                {"name": f"projects/123/services/{api}", "config": {"name": api, "title": api}, "state": "ENABLED"}
                for api in ["bigquery.googleapis.com", *array("apis")]
            ],
        },
        # gcloud iam roles describe: iam v1 (organizations_roles.Get); one resource a role, its permissions in
        # another order than setup.sh gives them.
        "iam roles describe": {
            "api": "iam/v1",
            "type": "Role",
            "resources": [
                {"name": f"projects/p/roles/{r[0]}", "title": r[1], "stage": "GA", "includedPermissions": r[:1:-1]}
                for r in roles()
            ],
        },
        # gcloud run jobs describe: run v1 namespaces.jobs.get (version_override='v1'): the job as replaced.
        "run jobs describe": {
            "api": "run/v1",
            "type": "Job",
            "resources": [job() | {"metadata": job()["metadata"] | {"namespace": "123456789", "generation": 1}}],
        },
        # gcloud compute firewall-rules describe: compute v1 firewalls.get, as setup.sh's create sets it.
        "compute firewall-rules describe": {
            "api": "compute/v1",
            "type": "Firewall",
            "resources": [
                {
                    "name": var("firewall"),
                    "network": f"{COMPUTE}/global/networks/default",
                    "direction": "INGRESS",
                    "priority": 1000,
                    "sourceRanges": var("probe_ranges").split(","),
                    "targetTags": [tag],
                    "allowed": [{"IPProtocol": "tcp", "ports": [port]}],
                }
            ],
        },
        # gcloud compute health-checks describe: compute v1 healthChecks.get, from hc_flags (durations in s).
        "compute health-checks describe": {
            "api": "compute/v1",
            "type": "HealthCheck",
            "resources": [
                {
                    "name": check,
                    "type": "HTTP",
                    "httpHealthCheck": {
                        "port": int(hc["--port"]),
                        "requestPath": hc["--request-path"],
                        "proxyHeader": "NONE",
                        "portSpecification": "USE_FIXED_PORT",
                    },
                    "checkIntervalSec": int(hc["--check-interval"].removesuffix("s")),
                    "timeoutSec": int(hc["--timeout"].removesuffix("s")),
                    "unhealthyThreshold": int(hc["--unhealthy-threshold"]),
                    "healthyThreshold": int(hc["--healthy-threshold"]),
                }
            ],
        },
        # gcloud storage buckets describe returns no API message but a dict of display fields
        # (surface/storage/buckets/describe.py: resource_util.get_display_dict_for_resource over
        # full_resource_formatter.BucketDisplayTitlesAndDefaults): a bool and the API's string.
        "storage buckets describe": {
            "api": None,
            "resources": [
                {
                    "storage_url": f"gs://{bucket}/",
                    "name": bucket,
                    "location": "US-CENTRAL1",
                    "uniform_bucket_level_access": True,
                    "public_access_prevention": "enforced",
                }
            ],
        },
        # gcloud compute instance-groups managed describe: compute v1, returned as MessageToDict; the group
        # with versions[] (as created, or after a rolling update), and with the top-level template only.
        "compute instance-groups managed describe": {
            "api": "compute/v1",
            "type": "InstanceGroupManager",
            "as_dict": True,
            "resources": [group | {"versions": [{"instanceTemplate": template}]}, group],
        },
    }


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What gcloud's formatter prints for each read-back command, its final newline cut as $(…) does."""
    root = sdk_root()
    if root is None:
        pytest.skip("needs the Google Cloud SDK (gcloud on PATH, with its lib/googlecloudsdk)")
    bundled = root / "platform" / "bundledpythonunix" / "bin" / "python3"
    python = str(bundled) if bundled.exists() else os.environ.get("CLOUDSDK_PYTHON", sys.executable)
    formats, todo = read_backs(), cases()
    assert set(formats) == set(todo), "a read-back in setup.sh without a case here, or the other way round"
    batch = [{"as_dict": False, **case, "format": formats[command][0]} for command, case in todo.items()]
    config = tmp_path_factory.mktemp("gcloud-config")
    env = {**os.environ, "CLOUDSDK_CONFIG": str(config), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    result = subprocess.run(
        [python, "-c", FORMATTER, str(root)],
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    if "skip" in answer:
        pytest.skip(answer["skip"])
    unknown = {command: r["unknown"] for command, r in zip(todo, answer["results"], strict=True) if r["unknown"]}
    assert unknown == {}, "fields the API's message class does not have"
    return {command: r["printed"].removesuffix("\n") for command, r in zip(todo, answer["results"], strict=True)}


def test_setup_sh_reads_back_what_these_cases_cover() -> None:
    """Seven read-backs, each with its format (a new one needs a case in cases())."""
    assert set(read_backs()) == set(cases())


def test_every_api_setup_sh_enables_is_seen_enabled(printed: dict[str, str]) -> None:
    """setup.sh:128 `grep -qxF "$api"` finds each API of `apis=(…)` among the enabled ones' names."""
    assert set(array("apis")) <= set(printed["services list"].split("\n"))


def test_a_role_with_its_permissions_is_left_alone(printed: dict[str, str]) -> None:
    """ensure_role (setup.sh:147-158), with query answering the read-back, neither creates nor updates."""
    function = re.search(r"^ensure_role\(\) \{.*?^\}$", TEXT, re.S | re.M)
    assert function
    stubs = 'project=p; query() { printf "%s" "$CURRENT"; }; run() { echo "$*"; }'
    lines = printed["iam roles describe"].split("\n")
    assert len(lines) == len(roles()) == 3
    for role, current in zip(roles(), lines, strict=True):
        assert ";" in current  # value() joins a list with ';'
        assert bash(f"{stubs}\n{function[0]}\nensure_role {shlex.join(role)}", CURRENT=current) == "", role


def test_the_job_as_replaced_reads_back_its_spec_sha(printed: dict[str, str]) -> None:
    """setup.sh:190 compares the read-back with $spec_sha, which --print-job writes into the label."""
    assert printed["run jobs describe"] == job()["metadata"]["labels"]["spec_sha"]


@pytest.mark.parametrize("command", ["compute firewall-rules describe", "compute health-checks describe"])
def test_firewall_rule_and_health_check_read_back_as_wanted(printed: dict[str, str], command: str) -> None:
    """setup.sh:252 and :267 compare the read-back with the `want=` line above it (:245, :262), evaluated."""
    values = " ".join(f"{name}={shlex.quote(var(name))}" for name in ("http_port", "tag", "probe_ranges"))
    want_line = read_backs()[command][1]
    assert want_line
    assert printed[command] == bash(f'{values}; {want_line}; printf %s "$want"')


def test_the_bucket_reads_back_as_wanted(printed: dict[str, str]) -> None:
    """A bucket with uniform access and public access prevented is left alone."""
    (want_line,) = [line for line in LINES if line.strip().startswith('want="True"')]
    assert printed["storage buckets describe"] == bash(f'{want_line.strip()}; printf %s "$want"')


def test_the_group_reads_back_its_template_check_and_delay(printed: dict[str, str]) -> None:
    """setup.sh:306-309 cut the template (versions[0]'s, else the top-level one), the health check and the
    delay out of the read-back; :321 and :325 compare them with $health_check, $initial_delay, $template."""
    cuts = [line for line in LINES if re.match(r"\s+mig_(template|check|delay)=", line)]
    assert len(cuts) == 4
    show = 'printf "%s|%s|%s" "$mig_template" "$mig_check" "$mig_delay"'
    for mig in printed["compute instance-groups managed describe"].split("\n"):
        got = bash("\n".join([*cuts, show]), mig=mig)
        assert got == f"{var('vm')}-0123456789|{var('health_check')}|{var('initial_delay')}", repr(mig)
