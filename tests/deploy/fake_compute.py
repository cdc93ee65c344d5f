"""gcloud for the VM's compute resources and the bucket, over fakes.py's gcloud for the rest: the
stand-in setup.sh runs against in tests/deploy/test_gcp_setup.py. Standard library only, so that each
of a script's calls starts in a fraction of the time (the stub runs it with `python -S`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

try:
    from tests.deploy import fakes
except ImportError:  # run as a script, its folder on sys.path
    import fakes  # type: ignore[no-redef]

# A stand-in for the compute resources fakes.py does not know: their fields are kept from the flags
# of create and update, and describe --format 'value(…)' answers them. Everything else goes to fakes.py.
COMPUTE_FIELDS = {
    "compute health-checks": {
        "httpHealthCheck.port": "--port",
        "httpHealthCheck.requestPath": "--request-path",
        "checkIntervalSec": "--check-interval",
        "timeoutSec": "--timeout",
        "unhealthyThreshold": "--unhealthy-threshold",
        "healthyThreshold": "--healthy-threshold",
    },
    "compute firewall-rules": {
        "sourceRanges.sort().list()": "--source-ranges",
        "targetTags.list()": "--target-tags",
        "allowed[0].ports.list()": "--rules",
    },
    "compute instance-templates": {},
    # gcloud storage buckets describe shows the bucket as the SDK's display dict: its keys
    # uniform_bucket_level_access (a bool, printed True) and public_access_prevention ("enforced" or
    # "inherited"), from command_lib/storage/resources/gcs_resource_reference.py.
    "storage buckets": {
        "uniform_bucket_level_access": "--uniform-bucket-level-access",
        "public_access_prevention": "--public-access-prevention",
    },
    "compute instance-groups managed": {
        "versions[0].instanceTemplate.basename()": "--template",
        "instanceTemplate.basename()": "--template",
        "autoHealingPolicies[0].healthCheck.basename()": "--health-check",
        "autoHealingPolicies[0].initialDelaySec": "--initial-delay",
    },
}
MUTATING = fakes.MUTATING_GCLOUD | {"start-update"}


def _as_stored(flag: str, value: str) -> str:
    if flag == "--uniform-bucket-level-access":
        return "True"
    if flag == "--public-access-prevention":
        return "enforced"
    if flag in ("--check-interval", "--timeout"):
        return value.removesuffix("s")
    if flag == "--rules":
        return value.split(":", 1)[1]
    return value


def fake_compute(args: list[str]) -> int:
    """gcloud ARGS… for the VM's compute resources; the rest is fakes.py's."""
    group = next((g for g in COMPUTE_FIELDS if args[: len(g.split())] == g.split()), None)
    if group is None or {"get-iam-policy", "add-iam-policy-binding"} & set(args):
        return fakes.run("gcloud", args)
    state_dir = Path(os.environ["FAKE_STATE"])
    with (state_dir / "calls").open("a") as log:
        log.write(json.dumps(["gcloud", *args]) + "\n")
    rest = args[len(group.split()) :]
    if rest[0] == "rolling-action":
        rest = rest[1:]
    verb, positional, flags = rest[0], [], {}
    i = 1
    while i < len(rest):
        if rest[i].startswith("--") and i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            flags[rest[i]] = rest[i + 1]
            i += 1
        elif rest[i].startswith("--"):
            flags[rest[i]] = ""
        else:
            positional.append(rest[i])
        i += 1
    if verb == "start-update":
        flags["--template"] = flags["--version"].removeprefix("template=")
    path = state_dir / "compute.json"
    state: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.exists() else {}
    key = f"{group} {positional[-1]}"
    if verb == "describe":
        if key not in state:
            print(f"ERROR: NOT_FOUND: {key}", file=sys.stderr)
            return 1
        fmt = flags.get("--format", "")
        if fmt:
            fields = fmt.removeprefix("value(").removesuffix(")").split(",")
            print("\t".join(state[key].get(field, "") for field in fields))
        return 0
    fields = state.setdefault(key, {})
    for field, flag in COMPUTE_FIELDS[group].items():
        if flag in flags:
            fields[field] = _as_stored(flag, flags[flag])
    path.write_text(json.dumps(state))
    return 0
