"""The agent's environment: a WANDB_DIR whose log directory exists, and the start-up hook first on its path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from launch_watchdog.agent_startup import DIRECTORY
from launch_watchdog.environment import child_env, core_log_dir, log_directories, wandb_log_dir


def test_a_wandb_dir_is_made_when_the_user_sets_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It is the watchdog's own (to remove at the end), with the `wandb` directory the CLI logs to."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    reports: list[str] = []
    env, owned = child_env({"PATH": "/bin"}, reports.append)
    assert owned is not None
    assert owned.parent == tmp_path
    assert owned.name.startswith("launch-watchdog-")
    assert env["WANDB_DIR"] == str(owned)
    assert (owned / "wandb").is_dir()
    assert env["PYTHONPATH"] == str(DIRECTORY)
    assert env["PATH"] == "/bin"
    assert reports == []


def test_the_users_wandb_dir_and_pythonpath_are_kept(tmp_path: Path) -> None:
    """The start-up hook goes first on PYTHONPATH; the user's entries follow it."""
    env, owned = child_env({"WANDB_DIR": str(tmp_path), "PYTHONPATH": "/mine"}, [].append)
    assert owned is None
    assert env["WANDB_DIR"] == str(tmp_path)
    assert (tmp_path / "wandb").is_dir()
    assert env["PYTHONPATH"] == f"{DIRECTORY}{os.pathsep}/mine"


def test_a_log_directory_that_cannot_be_made_is_reported(tmp_path: Path) -> None:
    """The agent still starts; its CLI log goes to $TMPDIR, and the report says so."""
    (tmp_path / "wandb").write_text("a file where the directory should be\n")
    reports: list[str] = []
    env, _ = child_env({"WANDB_DIR": str(tmp_path)}, reports.append)
    assert env["WANDB_DIR"] == str(tmp_path)
    assert len(reports) == 1
    assert reports[0].startswith(f"cannot create {tmp_path / 'wandb'}")
    assert "$TMPDIR" in reports[0]


def test_no_temporary_directory_is_reported_and_the_agent_still_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full /tmp (no temporary directory can be made): no WANDB_DIR, a report, and only wandb-core's
    logs to follow, instead of a crash before the agent starts."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    reports: list[str] = []
    env, owned = child_env({"HOME": str(tmp_path)}, reports.append)
    assert owned is None
    assert "WANDB_DIR" not in env
    assert len(reports) == 1
    assert reports[0].startswith("cannot make a WANDB_DIR")
    assert [kind for _, kind in log_directories(env)] == ["core_log"]


def test_wandb_logs_go_to_a_hidden_directory_when_it_exists(tmp_path: Path) -> None:
    assert wandb_log_dir(tmp_path) == tmp_path / "wandb"
    (tmp_path / ".wandb").mkdir()
    assert wandb_log_dir(tmp_path) == tmp_path / ".wandb"


def test_core_logs_are_in_the_user_cache_directory() -> None:
    """XDG_CACHE_HOME when it is absolute (as the XDG spec says), else ~/.cache; no HOME: none."""
    assert core_log_dir({"XDG_CACHE_HOME": "/cache", "HOME": "/home/u"}) == Path("/cache/wandb/logs")
    assert core_log_dir({"XDG_CACHE_HOME": "relative", "HOME": "/home/u"}) == Path("/home/u/.cache/wandb/logs")
    assert core_log_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/wandb/logs")
    assert core_log_dir({}) is None


def test_log_directories_are_wandbs_and_wandb_cores(tmp_path: Path) -> None:
    """wandb's logs are told apart by name; everything in wandb-core's directory is its log."""
    found = log_directories({"WANDB_DIR": str(tmp_path), "HOME": str(tmp_path / "home")})
    assert [(d.directory, kind) for d, kind in found] == [
        (tmp_path / "wandb", None),
        (tmp_path / "home" / ".cache" / "wandb" / "logs", "core_log"),
    ]
    assert [d.directory for d, _ in log_directories({"WANDB_DIR": str(tmp_path)})] == [tmp_path / "wandb"]
