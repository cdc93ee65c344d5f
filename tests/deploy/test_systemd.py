"""The systemd unit: runs the installed command, reloads with SIGHUP, outwaits the drain, speaks the
notify protocol with a watchdog, hands over the W&B key as a credential, and is sandboxed (checked
with `systemd-analyze verify` and `systemd-analyze security`)."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from launch_supervisor.config import ENV_PREFIX, PollConfig, parse_config
from launch_supervisor.daemon.shell import DRAIN_SECONDS

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "launch-supervisor.service"


MAX_EXPOSURE = 2.0
INSTALL_HINT = "needs systemd-analyze with --offline (systemd >= 250): apt-get install -y systemd"
INSTALLED = "/opt/launch-supervisor/bin/launch-supervisor"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def _environment(path: Path) -> dict[str, str]:
    """Every Environment= of a unit (systemd takes them all; configparser would keep the last)."""
    lines = path.read_text().splitlines()
    return dict(line.removeprefix("Environment=").split("=", 1) for line in lines if line.startswith("Environment="))


def _systemd_analyze() -> str:
    """systemd-analyze, when it can review a unit file offline; skip without, except under CI."""
    found = shutil.which("systemd-analyze")
    if found is not None:
        helped = subprocess.run([found, "security", "--help"], capture_output=True, text=True, timeout=30, check=False)
        if "--offline" in helped.stdout:
            return found
    if os.environ.get("CI") == "true":
        pytest.fail(INSTALL_HINT)
    pytest.skip(INSTALL_HINT)


def _unit_here(tmp_path: Path) -> Path:
    """The unit with the console script installed here in place of /opt/…: verify needs it to exist."""
    exe = shutil.which("launch-supervisor")
    if exe is None:
        pytest.fail("launch-supervisor is not installed; run: pip install -e '.[dev]'")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED, exe))
    return unit


def test_service_runs_the_console_script_with_a_config() -> None:
    """ExecStart is `launch-supervisor run --config …`, a console script of this distribution."""
    service = _unit()["Service"]
    argv = service["ExecStart"].split()
    assert argv[0].endswith("/launch-supervisor")
    assert argv[1:3] == ["run", "--config"]
    assert "launch-supervisor" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "check-config" in service["ExecStartPre"]


def test_stop_and_reload_fit_the_daemon() -> None:
    """SIGTERM to stop, SIGHUP to reload, and systemd waits longer than the drain."""
    service = _unit()["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert "-HUP" in service["ExecReload"]
    assert float(service["TimeoutStopSec"]) > DRAIN_SECONDS
    assert service["User"] != "root"


def test_notify_with_a_watchdog_the_loops_can_feed() -> None:
    """Type=notify from the main process only; WatchdogSec above the slowest default poll interval, at most 60 s."""
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    watchdog = re.fullmatch(r"(\d+)s", service["WatchdogSec"])
    assert watchdog is not None
    assert PollConfig().vertex_interval < float(watchdog.group(1)) <= 60
    assert service["Restart"] in ("on-failure", "always")


def test_the_wandb_key_is_a_credential_the_config_points_at(tmp_path: Path) -> None:
    """LoadCredential= hands over the key; wandb.api_key_file, set from the environment, reads it at %d/."""
    service = _unit()["Service"]
    name, _, source = service["LoadCredential"].partition(":")
    assert source.startswith("/etc/launch-supervisor/")
    variable = f"{ENV_PREFIX}WANDB__API_KEY_FILE"
    value = _environment(UNIT)[variable]
    assert value == f"%d/{name}"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / name).write_text("k" * 40 + "\n")
    text = (
        '[wandb]\nentity = "e"\n[gcp]\nproject = "p"\nregion = "r"\n'
        '[[queues]]\nname = "q"\nlauncher_job = "projects/p/locations/r/jobs/j"\n'
    )
    environ = {variable: value.replace("%d", str(credentials))}
    config = parse_config(text, "test", environ, home=tmp_path)
    assert config.wandb.api_key is not None
    assert config.wandb.api_key.get_secret_value() == "k" * 40


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    """`systemd-analyze verify` has nothing to say about the unit."""
    analyze = _systemd_analyze()
    result = subprocess.run(
        [analyze, "verify", str(_unit_here(tmp_path))], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_exposure_is_at_most_two(tmp_path: Path) -> None:
    """`systemd-analyze security --offline=true`: overall exposure at most 2.0."""
    analyze = _systemd_analyze()
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found is not None, result.stdout
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_every_directive_left_out_is_named_with_a_reason() -> None:
    """What the security review still flags (but ProtectClock's DeviceAllow) is named in the unit's comments."""
    comments = "\n".join(line for line in UNIT.read_text().splitlines() if line.startswith("#"))
    for directive in ("PrivateNetwork=", "IPAddressDeny=", "AF_UNIX", "ProcSubset=", "RootDirectory="):
        assert directive in comments


def test_the_allocator_keeps_two_arenas() -> None:
    """MALLOC_ARENA_MAX=2: the threads share two malloc arenas (docs/reliability.md, Soak)."""
    assert _environment(UNIT)["MALLOC_ARENA_MAX"] == "2"
