"""The watchdog's verdicts on what the real agent wrote: recorded transcripts, replayed with no network.

Each folder under `transcripts/` holds one scenario recorded from the unmodified `wandb launch-agent`
(`transcripts/record.py`; how each was produced is in its `scenario.json`). The replay writes every
recorded chunk to the stream or log file it came from, in the recorded order, through the real
launch-watchdog, and the verdict must be the one the scenario expects.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Agent, Run

TRANSCRIPTS = Path(__file__).parent / "transcripts"
SCENARIOS = sorted(p.name for p in TRANSCRIPTS.iterdir() if (p / "scenario.json").exists())
MAX_GAP = 0.3
"""Recorded silences are replayed up to this long: the order is kept, the waiting is not."""
CORE_LOG = "core-debug-20261201_120000.log"


def scenario(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((TRANSCRIPTS / name / "scenario.json").read_text())
    return loaded


def timeline(name: str) -> list[dict[str, Any]]:
    lines = (TRANSCRIPTS / name / "timeline.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def replay_steps(name: str, home: Path, until: float | None = None) -> tuple[list[dict[str, Any]], float]:
    """The scripted agent's steps that write the transcript again, and how long they take."""
    steps: list[dict[str, Any]] = []
    last = total = 0.0
    for chunk in timeline(name):
        if until is not None and chunk["t"] >= until:
            break
        gap = min(chunk["t"] - last, MAX_GAP)
        if gap > 0.005:
            steps.append({"sleep": gap})
            total += gap
        last = chunk["t"]
        source, text = chunk["source"], chunk["text"]
        if source == "stdout":
            steps.append({"out": text})
        elif source == "stderr":
            steps.append({"err": text})
        elif source == "core-debug.log":
            steps.append({"write": str(home / ".cache" / "wandb" / "logs" / CORE_LOG), "text": text})
        else:
            steps.append({"log": "debug-cli.root.log" if source == "debug-cli.log" else source, "text": text})
    return steps, total


def verdict(run: Run) -> dict[str, Any]:
    exited = run.event("watchdog.exited")
    found: dict[str, Any] = {"outcome": exited["reason"], "exit_code": run.code}
    if "watchdog.bailout" in run.names:
        found["outcome"] = "bailout"
        found["category"] = run.event("watchdog.bailout")["category"]
    return found


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_verdict_on_each_real_transcript(agent: Agent, tmp_path: Path, name: str) -> None:
    """Replayed as recorded, each transcript gets the verdict its scenario names."""
    meta = scenario(name)
    home = tmp_path / "home"
    steps, _ = replay_steps(name, home)
    if meta["ended_by"] == "itself":
        steps.append({"exit": meta["agent_exit_code"]})
    run = agent.run(steps, args=["--grace", "2", "--idle-timeout", "60"], env={"HOME": str(home)})
    assert verdict(run) == meta["expected"], run.stderr[-3000:]


def test_transcripts_cover_every_scenario() -> None:
    """Success, each Vertex refusal, each start-up failure (a key refused in each of W&B's wordings),
    Google and W&B unreachable."""
    assert {
        "happy",
        "quota",
        "permission",
        "machine_type",
        "no_gcp_credentials",
        "vertex_unreachable",
        "queue_missing",
        "bad_key",
        "bad_key_permission_denied",
        "wandb_down",
        "run_stopped_status_error",
        "wandb_outage_after_submit",
    } <= set(SCENARIOS)
    for name in SCENARIOS:
        files = {p.name for p in (TRANSCRIPTS / name).iterdir()}
        assert {"stdout.txt", "stderr.txt", "debug-cli.log", "timeline.jsonl"} <= files, name
        # A log the agent never wrote is named as such, not silently missing.
        assert set(scenario(name)["not_written"]) == {"debug.log", "core-debug.log"} - files, name


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_stream_file_is_its_part_of_the_timeline(name: str) -> None:
    """stdout.txt, stderr.txt and the logs hold exactly what the timeline says each source wrote."""
    written: dict[str, str] = {}
    for chunk in timeline(name):
        written[chunk["source"]] = written.get(chunk["source"], "") + chunk["text"]
    for source in ("stdout", "stderr", "debug-cli.log", "debug.log", "core-debug.log"):
        path = TRANSCRIPTS / name / (source if source.endswith(".log") else f"{source}.txt")
        if path.exists():
            assert path.read_text() == written.get(source, ""), (name, source)


@pytest.mark.parametrize("name", ["happy", "run_stopped_status_error", "wandb_outage_after_submit"])
def test_what_the_agent_logs_after_its_submission_is_no_bailout(agent: Agent, tmp_path: Path, name: str) -> None:
    """With --on-submit keep the whole transcript is read after the submission, handled tracebacks
    in debug.log and the CLI log included: the submission is reported, and no bailout."""
    home = tmp_path / "home"
    steps, seconds = replay_steps(name, home)
    proc = agent.start(
        steps, args=["--grace", "2", "--idle-timeout", "60", "--on-submit", "keep"], env={"HOME": str(home)}
    )
    time.sleep(seconds + 1.5)
    assert proc.poll() is None, "the watchdog ended a run it was told to keep"
    os.killpg(proc.pid, signal.SIGTERM)
    run = agent.finish(proc)
    assert "watchdog.submitted" in run.names
    assert "watchdog.bailout" not in run.names, run.stderr[-3000:]
    assert run.event("watchdog.exited")["reason"] == "signal"


def test_wandb_unreachable_at_the_idle_timeout_is_a_network_bailout(agent: Agent, tmp_path: Path) -> None:
    """The first seconds of the W&B-down transcript (before the agent gives up): the agent never
    started polling, and wandb-core's log says why."""
    home = tmp_path / "home"
    give_up = next(c["t"] for c in timeline("wandb_down") if "Failed to verify credentials" in c["text"])
    steps, _ = replay_steps("wandb_down", home, until=give_up)
    run = agent.run(steps, then="wait", args=["--grace", "2", "--idle-timeout", "2"], env={"HOME": str(home)})
    assert verdict(run) == {"outcome": "bailout", "category": "network", "exit_code": 1}
    assert run.event("watchdog.bailout")["rule"] == "agent_start_timeout"
