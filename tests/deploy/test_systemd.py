"""The systemd unit: runs the installed command, reloads with SIGHUP, outwaits the drain."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

from supervisor.daemon.shell import DRAIN_SECONDS

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "launch-supervisor.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


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
