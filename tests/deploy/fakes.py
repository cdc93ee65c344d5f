"""Stand-ins for gcloud and for the system commands install scripts run (apt-get, useradd, systemctl,
pip, chown …), as one program: `python fakes.py NAME ARGS…`. Each records its call in STATE/calls
and answers queries from STATE/state.json, so a script can be run twice against them."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

MUTATING_GCLOUD = {
    *("create", "update", "add-iam-policy-binding", "enable", "replace", "add", "delete", "set-iam-policy"),
    *("cp", "submit"),
}
VERBS = {"describe", "list", "get-iam-policy", "access", *MUTATING_GCLOUD}
SYSTEM = ["gcloud", "apt-get", "dpkg-query", "getent", "groupadd", "useradd", "systemctl", "chown", "stat", "python3"]


def install(bin_dir: Path, state_dir: Path) -> dict[str, str]:
    """Put a stub for every name in SYSTEM into bin_dir; the environment to run a script with."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in SYSTEM:
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\nexec {sys.executable} -S {Path(__file__).resolve()} {name} "$@"\n')
        stub.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATE": str(state_dir)}


def calls(state_dir: Path) -> list[list[str]]:
    path = state_dir / "calls"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _flags(args: list[str]) -> tuple[list[str], dict[str, str]]:
    positional, flags, i = [], {}, 0
    while i < len(args):
        if args[i].startswith("--"):
            if "=" in args[i]:
                key, value = args[i].split("=", 1)
                flags[key] = value
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                flags[args[i]] = args[i + 1]
                i += 1
            else:
                flags[args[i]] = ""
        else:
            positional.append(args[i])
        i += 1
    return positional, flags


def gcloud(args: list[str], state: dict[str, Any]) -> int:
    resources: dict[str, dict[str, str]] = state.setdefault("resources", {})
    bindings: dict[str, list[list[str]]] = state.setdefault("bindings", {})
    at = next(i for i, a in enumerate(args) if a in VERBS)
    group, verb = " ".join(args[:at]), args[at]
    positional, flags = _flags(args[at + 1 :])
    fmt = flags.get("--format", "")
    if group == "services":
        enabled = state.setdefault("services", [])
        if verb == "list":
            print("\n".join(enabled))
        else:
            enabled.extend(positional)
        return 0
    if group == "secrets versions":
        secret = flags["--secret"] if verb in ("access", "describe") else positional[0]
        data = state.setdefault("secret_data", {})
        if verb == "add":
            source = flags["--data-file"]
            data[secret] = sys.stdin.read() if source == "-" else Path(source).read_text()
            return 0
        if secret not in data:
            return 1
        if verb == "access":
            sys.stdout.write(data[secret])
        return 0
    name = positional[0] if positional else ""
    if group == "iam service-accounts" and verb == "create":
        name = f"{name}@{flags['--project']}.iam.gserviceaccount.com"
    key = f"{group} {name}"
    if verb == "replace":
        text = Path(name).read_text()
        job = re.search(r'^  name: "?([^"\n]+)', text, re.M)
        sha = re.search(r'spec_sha: "?([0-9a-f]+)', text)
        assert job
        assert sha
        resources[f"{group} {job.group(1)}"] = {"metadata.labels.spec_sha": sha.group(1)}
        return 0
    if verb == "submit":  # gcloud builds submit: the image the build config pushes (its _IMAGE)
        substitutions = dict(s.split("=", 1) for s in flags["--substitutions"].split(","))
        resources[f"artifacts docker images {substitutions['_IMAGE']}"] = {}
        return 0
    if verb == "cp":  # gcloud storage cp FILE gs://BUCKET/OBJECT
        resources[f"storage objects {positional[1]}"] = {}
        return 0
    if verb == "create":
        fields = {
            "filter": flags.get("--log-filter", ""),
            "writerIdentity": f"serviceAccount:writer-{name}@logging.example",
            "includedPermissions": flags.get("--permissions", "").replace(",", ";"),
            "serviceAccounts[0].email": flags.get("--service-account", ""),
        }
        resources[key] = fields
        return 0
    if verb == "update":
        if "--log-filter" in flags:
            resources[key]["filter"] = flags["--log-filter"]
        if "--permissions" in flags:
            resources[key]["includedPermissions"] = flags["--permissions"].replace(",", ";")
        return 0
    if verb == "add-iam-policy-binding":
        bindings.setdefault(key, []).append([flags["--role"], flags["--member"]])
        return 0
    if verb == "get-iam-policy":
        print("\n".join(f"{role}\t{member}" for role, member in bindings.get(key, [])))
        return 0
    if verb == "describe":
        if key not in resources:
            print(f"ERROR: NOT_FOUND: {key}", file=sys.stderr)
            return 1
        field = re.fullmatch(r"value\((.+)\)", fmt)
        if field:
            print(resources[key].get(field.group(1), ""))
        return 0
    raise SystemExit(f"fake gcloud cannot answer {args}")


def system(name: str, args: list[str], state: dict[str, Any]) -> int:
    packages: list[str] = state.setdefault("packages", [])
    users: list[str] = state.setdefault("users", [])
    groups: list[str] = state.setdefault("groups", [])
    owners: dict[str, str] = state.setdefault("owners", {})
    units: dict[str, list[str]] = state.setdefault("units", {})
    if name == "dpkg-query":
        if args[-1] in packages:
            print("install ok installed", end="")
            return 0
        return 1
    if name == "apt-get":
        if "install" in args:
            packages.extend(a for a in args[args.index("install") + 1 :] if not a.startswith("-"))
        return 0
    if name == "getent":
        return 0 if args[1] in (users if args[0] == "passwd" else groups) else 2
    if name == "groupadd":
        groups.append(args[-1])
        return 0
    if name == "useradd":
        users.append(args[-1])
        return 0
    if name == "chown":
        owners[str(Path(args[-1]).resolve())] = args[-2]
        return 0
    if name == "stat":
        if args[1] == "%U:%G":
            print(owners.get(str(Path(args[-1]).resolve()), "?:?"))
            return 0
        os.execv("/usr/bin/stat", ["stat", *args])  # noqa: S606 - the real stat for everything else
    if name == "systemctl":
        positional = [a for a in args if not a.startswith("-")]
        verb, names = positional[0], positional[1:]
        if verb in ("is-enabled", "is-active"):
            return 0 if all(verb in units.get(n, []) for n in names) else 1
        for n in names:
            flags = units.setdefault(n, [])
            if verb == "enable":
                flags.append("is-enabled")
            if verb in ("start", "restart"):
                flags.append("is-active")
        return 0
    if name == "python3":  # python3 -m venv DIR: a venv whose pip is this program too
        venv = Path(args[-1])
        (venv / "bin").mkdir(parents=True, exist_ok=True)
        for tool in ("python", "pip"):
            stub = venv / "bin" / tool
            stub.write_text(f'#!/bin/sh\nexec {sys.executable} -S {Path(__file__).resolve()} pip "$@"\n')
            stub.chmod(0o755)
        return 0
    if name == "pip":
        installed: list[str] = state.setdefault("pip", [])
        if args[0] == "show":
            return 0 if "launch-supervisor" in installed else 1
        installed.append("launch-supervisor")
        return 0
    raise SystemExit(f"no fake for {name}")


def main() -> int:
    return run(sys.argv[1], sys.argv[2:])


def run(name: str, args: list[str]) -> int:
    """One call of the stand-in NAME, recorded in FAKE_STATE/calls."""
    state_dir = Path(os.environ["FAKE_STATE"])
    with (state_dir / "calls").open("a") as log:
        log.write(json.dumps([name, *args]) + "\n")
    path = state_dir / "state.json"
    state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    try:
        return gcloud(args, state) if name == "gcloud" else system(name, args, state)
    finally:
        path.write_text(json.dumps(state))


if __name__ == "__main__":
    sys.exit(main())
