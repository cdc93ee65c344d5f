"""Reading the agent's output: cleaned, passed through, kept for context, scanned; and read ahead."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from launch_watchdog.follow import FileFollower, LogDirectory
from launch_watchdog.output import BLOCK_QUIET_SECONDS, AgentOutput
from launch_watchdog.redact import Redactor
from launch_watchdog.rules import load_rules
from launch_watchdog.scanner import BlockEnded, Finding, Fired, Scanner, Started, Submitted
from tests.watchdog import agent_lines

RULES = load_rules()
KEY = "0123456789abcdef0123456789abcdef01234567"


class Reader:
    """An `AgentOutput` over one pipe, recording what it passes through and finds."""

    def __init__(self, context_lines: int = 100) -> None:
        self.echoed: list[str] = []
        self.seen: list[Finding | str] = []
        """Findings, and "caught up" when the output read ahead has been scanned."""
        self.on_fired = lambda: None
        self.output = AgentOutput(
            Scanner(RULES), Redactor({"WANDB_API_KEY": KEY}), context_lines, self._found, self._caught_up
        )
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.output.add_pipe("stderr", self.read_fd, self.echoed.append)

    def _found(self, finding: Finding, read_at: float) -> None:
        self.seen.append(finding)
        if isinstance(finding, Fired):
            self.on_fired()

    def _caught_up(self) -> None:
        self.seen.append("caught up")

    def write(self, text: str) -> None:
        os.write(self.write_fd, text.encode())

    def close(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1
        self.output.close()
        os.close(self.read_fd)


@pytest.fixture
def reader() -> Iterator[Reader]:
    reader = Reader()
    yield reader
    reader.close()


def test_pipe_lines_are_cleaned_passed_through_kept_and_scanned(reader: Reader) -> None:
    """Terminal escapes dropped and secrets redacted before anything sees the text."""
    reader.write(f"\x1b[32m{agent_lines.STATUS.rstrip()}\x1b[0m\nkey={KEY}\n")
    assert reader.output.read(reader.read_fd)
    clean = f"{agent_lines.STATUS}key=[REDACTED:WANDB_API_KEY]\n"
    assert reader.echoed == [clean]
    assert list(reader.output.context) == clean.splitlines()
    assert [type(f) for f in reader.seen] == [Started]
    assert not reader.output.read(reader.read_fd)  # nothing more for now


def test_context_keeps_only_the_last_lines() -> None:
    reader = Reader(context_lines=2)
    try:
        reader.write("one\ntwo\nthree\n")
        reader.output.read(reader.read_fd)
        assert list(reader.output.context) == ["two", "three"]
    finally:
        reader.close()


def test_at_the_pipes_end_its_last_line_counts_and_its_block_ends(reader: Reader) -> None:
    """A line without a newline is scanned at EOF, and a block open on the stream ends there."""
    reader.write(agent_lines.job_error_traceback("ValueError: boom").rstrip("\n"))
    os.close(reader.write_fd)
    reader.write_fd = -1
    while reader.output.read(reader.read_fd):
        pass
    assert [type(f) for f in reader.seen] == [Fired, Fired, BlockEnded]  # the block's head, the traceback
    ended = reader.seen[-1]
    assert isinstance(ended, BlockEnded)
    assert ended.reason == "end"
    assert reader.echoed[-1].endswith("ValueError: boom\n")


def test_a_quiet_stream_ends_the_block_an_incident_waits_for(reader: Reader) -> None:
    reader.write(agent_lines.job_error_traceback("ValueError: boom"))
    reader.output.read(reader.read_fd)
    assert reader.output.quiet_deadline(None) is None
    quiet_at = reader.output.quiet_deadline("stderr")
    assert quiet_at is not None
    reader.output.end_quiet_block("stderr", quiet_at - BLOCK_QUIET_SECONDS / 2)
    assert not any(isinstance(f, BlockEnded) for f in reader.seen)
    reader.output.end_quiet_block("stderr", quiet_at)
    assert reader.seen[-1] == BlockEnded("stderr", "quiet")


def test_output_read_ahead_joins_before_the_incident_closes(reader: Reader) -> None:
    """What was written when the rule fired is read at once, scanned after the current text, and
    only then is the incident closed; what comes after that is scanned as usual."""

    def read_ahead() -> None:
        reader.write(agent_lines.STATUS)  # already written when the watchdog would signal
        reader.output.read_ahead()

    reader.on_fired = read_ahead
    reader.write(agent_lines.QUEUES_MISSING)
    reader.output.read(reader.read_fd)
    assert [f if isinstance(f, str) else type(f) for f in reader.seen] == [Fired, Started, "caught up"]
    assert reader.echoed == [agent_lines.QUEUES_MISSING, agent_lines.STATUS]
    assert not reader.output.read(reader.read_fd)  # nothing left behind in the pipe
    reader.on_fired = lambda: None
    reader.write(agent_lines.STATUS)
    reader.output.read(reader.read_fd)
    assert reader.seen[-1] != "caught up"


def test_files_are_scanned_but_not_passed_through(reader: Reader, tmp_path: Path) -> None:
    """New log files in a watched directory are found; a followed file is read from its end."""
    followed = tmp_path / "extra.log"
    followed.write_text("old\n")
    reader.output.add_file(FileFollower(followed, from_end=True), "follow")
    logs = tmp_path / "wandb"
    logs.mkdir()
    reader.output.watch_directory(LogDirectory(logs), None)
    (logs / "debug-cli.root.log").write_text(agent_lines.SUBMITTED_LOG)
    reader.output.poll_files()
    assert [type(f) for f in reader.seen] == [Submitted]
    assert reader.echoed == []
    assert list(reader.output.context) == []


def test_the_final_drain_reads_to_the_end_of_everything(reader: Reader, tmp_path: Path) -> None:
    """Pipes to EOF (or the drain's deadline), and the last unfinished line of every file."""
    log = tmp_path / "debug-cli.root.log"
    log.write_text("")
    reader.output.add_file(FileFollower(log, from_end=False), None)
    reader.write(agent_lines.STATUS)
    os.close(reader.write_fd)
    reader.write_fd = -1
    with log.open("a") as f:
        f.write(agent_lines.SUBMITTED_LOG.rstrip("\n"))
    reader.output.final_drain()
    assert [type(f) for f in reader.seen] == [Started, Submitted]
    assert reader.echoed == [agent_lines.STATUS]
