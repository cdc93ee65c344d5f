"""deploy/vm/requirements.lock, the daemon's dependencies as the VM installs them: it agrees with
pyproject.toml's `daemon` extra, pins every package exactly with hashes, and was made for the VM
(CPython 3.11 on Linux x86_64). Offline: names and specifiers are compared with `packaging`."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "deploy" / "vm" / "requirements.lock"
REFRESH = "docs/deploying.md, Refresh the lock"
# uv pip compile writes this for a requirement taken from the project itself (its `# via` comments).
FROM_PYPROJECT = "launch-supervisor (pyproject.toml)"


@dataclass
class Entry:
    """One package of the lock: its exact version, its hashes, and what asked for it."""

    version: Version
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def parse_lock(text: str) -> dict[str, Entry]:
    """The entries of a `uv pip compile --generate-hashes` file, by canonical name."""
    entries: dict[str, Entry] = {}
    current: Entry | None = None
    for raw in text.splitlines():
        line = raw.strip().removesuffix("\\").strip()
        if not line or line.startswith("# This file") or line.startswith("#    uv "):
            continue
        if not raw.startswith(" "):
            pin = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)(?:\s*;.*)?", line)
            if pin is None:
                pytest.fail(f"{LOCK.name}: not an exact pin: {line!r}; refresh it ({REFRESH})")
            current = entries.setdefault(canonicalize_name(pin[1]), Entry(Version(pin[2])))
        elif current is not None and line.startswith("--hash="):
            current.hashes.append(line.removeprefix("--hash="))
        elif current is not None and line.startswith("#"):
            via = line.lstrip("#").strip().removeprefix("via").strip()
            if via:
                current.via.append(via)
    return entries


def daemon_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(spec) for spec in project["optional-dependencies"]["daemon"]]


def test_every_daemon_dependency_is_locked_at_a_version_it_allows() -> None:
    """Each requirement of the daemon extra is in the lock, at a version its specifier accepts."""
    lock = parse_lock(LOCK.read_text())
    for requirement in daemon_requirements():
        entry = lock.get(canonicalize_name(requirement.name))
        assert entry is not None, f"{requirement} is not in {LOCK.name}; refresh it ({REFRESH})"
        assert requirement.specifier.contains(entry.version, prereleases=True), (
            f"{LOCK.name} has {requirement.name}=={entry.version}, which {requirement} excludes; refresh it ({REFRESH})"
        )


def test_the_lock_roots_are_exactly_the_daemon_extra() -> None:
    """What the lock says pyproject.toml asked for is the daemon extra, no more (a dropped dependency
    shows) and no less."""
    lock = parse_lock(LOCK.read_text())
    roots = {name for name, entry in lock.items() if FROM_PYPROJECT in entry.via}
    wanted = {canonicalize_name(r.name) for r in daemon_requirements()}
    assert roots == wanted, f"{LOCK.name} is stale; refresh it ({REFRESH})"


def test_every_package_is_pinned_with_hashes() -> None:
    """pip --require-hashes needs a sha256 for every package; the lock has them all."""
    lock = parse_lock(LOCK.read_text())
    assert len(lock) > len(daemon_requirements())  # the transitive dependencies are there too
    for name, entry in lock.items():
        assert entry.hashes, f"{name} has no hash in {LOCK.name}"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in entry.hashes), name


def test_the_lock_was_made_for_the_vm() -> None:
    """The VM runs Debian 12's CPython 3.11 on x86_64: the lock says it was compiled for that."""
    header = LOCK.read_text().splitlines()[1]
    for flag in ("--extra daemon", "--generate-hashes", "--python-version 3.11", "--python-platform x86_64-manylinux"):
        assert flag in header, f"{LOCK.name} was not compiled with {flag}; refresh it ({REFRESH})"


def test_the_parser_sees_a_stale_lock() -> None:
    """A lock entry outside a specifier, or missing, is reported by the checks above (their input)."""
    text = "anyio==3.0.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via launch-supervisor (pyproject.toml)\n"
    lock = parse_lock(text)
    assert lock["anyio"].version == Version("3.0.0")
    assert lock["anyio"].via == [FROM_PYPROJECT]
    anyio = next(r for r in daemon_requirements() if r.name == "anyio")
    assert not anyio.specifier.contains(lock["anyio"].version)
