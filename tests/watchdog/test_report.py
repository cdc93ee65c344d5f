"""A bailout's report: the event for machines, the block on stderr for people."""

from __future__ import annotations

import os
from pathlib import Path

from launch_watchdog.console import Console
from launch_watchdog.incident import Verdict
from launch_watchdog.report import RULE, report_bailout
from launch_watchdog.scanner import Line
from tests.watchdog.fakes import Events

LINES = (Line("stderr", 7, "google.api_core.exceptions.ResourceExhausted: 429 Quota exceeded"),)
VERDICT = Verdict("quota_exceeded", "quota", "Quota exhausted", "launch_job_error", ("launch_job_error",), LINES)


def report(tmp_path: Path, stopped: bool) -> tuple[Events, str]:
    events, path = Events(), tmp_path / "stderr"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        report_bailout(
            events,  # type: ignore[arg-type]
            Console(err_fd=fd),
            VERDICT,
            stopped=stopped,
            detection_ms=1.23456,
            item_id="item-1",
            context=["one", "two"],
            context_lines=100,
        )
    finally:
        os.close(fd)
    return events, path.read_text()


def test_a_stopping_bailout_is_an_event_then_a_block(tmp_path: Path) -> None:
    events, stderr = report(tmp_path, stopped=True)
    ((name, message, data),) = events.emitted
    assert name == "watchdog.bailout"
    assert message == "bailout: Quota exhausted (quota); stopping the agent"
    assert data == {
        "rule": "quota_exceeded",
        "category": "quota",
        "trigger_rule": "launch_job_error",
        "rules": ["launch_job_error"],
        "lines": [{"source": "stderr", "line": 7, "text": LINES[0].text}],
        "detection_ms": 1.235,
        "item_id": "item-1",
    }
    assert stderr.splitlines() == [
        RULE,
        "BAILOUT TRIGGER: Quota exhausted",
        "  rule quota_exceeded, category quota (first signalled by launch_job_error)",
        RULE,
        "",
        "Matching lines:",
        f"  ► 7 [stderr]: {LINES[0].text}",
        "",
        "━━━ Last 2 of up to 100 agent lines ━━━",
        "one",
        "two",
        RULE,
        "launch-watchdog stopped the agent: quota (quota_exceeded)",
    ]


def test_a_bailout_that_explains_an_exit_says_the_agent_exited(tmp_path: Path) -> None:
    events, stderr = report(tmp_path, stopped=False)
    assert events.emitted[0][1] == "bailout: Quota exhausted (quota); the agent exited by itself"
    assert stderr.splitlines()[-1] == "the agent exited by itself: quota (quota_exceeded)"
