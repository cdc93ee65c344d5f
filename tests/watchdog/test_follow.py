"""Which log files are followed, and from where."""

from __future__ import annotations

from pathlib import Path

from launch_watchdog.follow import LogDirectory


def test_wandb_logs_that_existed_are_read_from_their_end(tmp_path: Path) -> None:
    """In $WANDB_DIR/wandb an old CLI log is followed (the CLI appends to it), from its end."""
    (tmp_path / "debug-cli.root.log").write_text("old\n")
    directory = LogDirectory(tmp_path)
    (tmp_path / "debug.log").write_text("new\n")
    followers = {f.path.name: f for f in directory.new_files()}
    assert sorted(followers) == ["debug-cli.root.log", "debug.log"]
    assert followers["debug-cli.root.log"].poll() == b""
    assert followers["debug.log"].poll() == b"new\n"


def test_core_logs_only_the_newest_that_appeared(tmp_path: Path) -> None:
    """wandb-core's logs: an old one is ignored; of those that appear, the newest is followed."""
    (tmp_path / "core-debug-20200101_000000.log").write_text("old run\n")
    directory = LogDirectory(tmp_path, prefix="core-debug-", newest_only=True)
    assert directory.new_files() == []
    (tmp_path / "core-debug-20261128_100000.log").write_text("a\n")
    (tmp_path / "core-debug-20261128_100001.log").write_text("b\n")
    (tmp_path / "debug.log").write_text("not a core log\n")
    followers = directory.new_files()
    assert [f.path.name for f in followers] == ["core-debug-20261128_100001.log"]
    assert followers[0].poll() == b"b\n"
    (tmp_path / "core-debug-20261128_100002.log").write_text("c\n")
    assert [f.path.name for f in directory.new_files()] == ["core-debug-20261128_100002.log"]


def test_a_directory_that_appears_later_is_listed(tmp_path: Path) -> None:
    """$HOME/.cache/wandb/logs usually does not exist before wandb-core starts."""
    logs = tmp_path / "logs"
    directory = LogDirectory(logs, prefix="core-debug-", newest_only=True)
    assert directory.new_files() == []
    logs.mkdir()
    (logs / "core-debug-1.log").write_text("x\n")
    assert [f.path.name for f in directory.new_files()] == ["core-debug-1.log"]
