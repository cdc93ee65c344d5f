"""launch-watchdog end to end: the agent's environment, every ending, and nothing left running.

The scripted agent (tests/watchdog/agent.py) plays what wandb 0.31 was seen to do: wandb-core in a
session of its own ignoring SIGTERM, fatal start-up errors it exits 1 with, a start that never
reaches polling, handled tracebacks in debug.log, a traceback written in several pieces.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from launch_watchdog.agent_startup import DIRECTORY
from tests.conftest import Agent, pid_alive, wait_for, watchdog_exe
from tests.watchdog import agent_lines

FAST = ["--grace", "0.3", "--idle-timeout", "30"]
CORE_LOG = "core-debug-20261128_100000.log"


def received(item: str = "UnVuUXVldWVJdGVtOjQy") -> dict[str, str]:
    return {"err": agent_lines.payload(item)}


# -- the agent's environment ------------------------------------------------------------------


def test_the_agent_environment_keeps_the_users_settings(agent: Agent, tmp_path: Path) -> None:
    """A user's WANDB_DIR gets its `wandb/` before the agent starts; the hook goes first on their PYTHONPATH."""
    wandb_dir = tmp_path / "fresh"
    code = (
        "import logging, os, time\n"
        "print('pythonpath', os.environ['PYTHONPATH'], flush=True)\n"
        "print('google handlers', len(logging.getLogger('google').handlers), flush=True)\n"
        "assert os.path.isdir(os.path.join(os.environ['WANDB_DIR'], 'wandb'))\n"
        "log = os.path.join(os.environ['WANDB_DIR'], 'wandb', 'debug-cli.u.log')\n"
        f"open(log, 'w').write({agent_lines.SUBMITTED_LOG!r})\n"
        "time.sleep(30)\n"
    )
    env = agent.env({"WANDB_DIR": str(wandb_dir), "PYTHONPATH": "/opt/user-lib"})
    proc = subprocess.run(
        [watchdog_exe(), *FAST, "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"pythonpath {DIRECTORY}{os.pathsep}/opt/user-lib\n" in proc.stdout
    assert "google handlers 1\n" in proc.stdout
    assert wandb_dir.is_dir()  # the user's directory is theirs: never removed


def test_the_success_line_from_the_startup_hook_on_stderr(agent: Agent) -> None:
    """The hook's plain stderr form of aiplatform's record ends the run like the CLI log does."""
    line = f"INFO google.cloud.aiplatform.base: CustomJob created. Resource name: {agent_lines.SUBMITTED_RESOURCE}\n"
    run = agent.run([received(), {"err": line}], args=FAST)
    assert run.code == 0, run.stderr
    assert run.event("watchdog.submitted")["custom_job"] == agent_lines.SUBMITTED_RESOURCE


# -- nothing outlives the watchdog ------------------------------------------------------------


def _leftover_steps(tmp_path: Path) -> tuple[list[dict[str, str]], list[Path]]:
    core, daemon = tmp_path / "core.pid", tmp_path / "daemon.pid"
    return [{"session_child": str(core)}, {"daemon": str(daemon)}], [core, daemon]


@pytest.mark.parametrize(
    ("ending", "code"),
    [
        ([received(), {"err": agent_lines.FIRING["quota_exceeded"]}], 1),
        ([received(), {"log": "debug-cli.root.log", "text": agent_lines.SUBMITTED_LOG}], 0),
        ([{"exit": 0}], 0),
        ([{"err": agent_lines.QUEUES_MISSING}, {"exit": 1}], 1),
    ],
    ids=["bailout", "submitted", "agent-exits", "agent-fails"],
)
def test_no_process_outlives_the_watchdog(
    agent: Agent, tmp_path: Path, ending: list[dict[str, str]], code: int
) -> None:
    """A setsid child ignoring SIGTERM (like wandb-core) and a double-forked daemon are stopped too."""
    steps, pidfiles = _leftover_steps(tmp_path)
    run = agent.run([*steps, *ending], args=FAST)
    assert run.code == code, run.stderr
    pids = [int(p.read_text()) for p in pidfiles]
    assert not [pid for pid in pids if pid_alive(pid)]
    assert "process(es) the agent left running" in run.stderr


def test_leftovers_are_stopped_when_the_watchdog_is_signalled(agent: Agent, tmp_path: Path) -> None:
    """SIGTERM to the watchdog: the agent stops, then what it left behind, then the watchdog exits 143."""
    steps, pidfiles = _leftover_steps(tmp_path)
    proc = agent.start([*steps, received()], args=FAST)
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"watchdog.claimed"' in line:
            break
    proc.send_signal(signal.SIGTERM)
    run = agent.finish(proc)
    assert run.code == 143
    assert not [pid for pid in (int(p.read_text()) for p in pidfiles) if pid_alive(pid)]


def test_a_second_signal_kills_leftovers_at_once(agent: Agent, tmp_path: Path) -> None:
    """With a long grace, a second SIGTERM skips it for the leftovers too."""
    steps, pidfiles = _leftover_steps(tmp_path)
    proc = agent.start([*steps, received()], args=["--grace", "60", "--idle-timeout", "30"])
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"watchdog.claimed"' in line:
            break
    proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: not pid_alive(agent_pid(proc.pid)), timeout=10)
    proc.send_signal(signal.SIGTERM)
    run = agent.finish(proc, timeout=20)
    assert run.code == 143
    assert not [pid for pid in (int(p.read_text()) for p in pidfiles) if pid_alive(pid)]


def agent_pid(watchdog: int) -> int:
    """The agent: the watchdog's child running agent.py (0 once it is gone)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == watchdog and b"agent.py" in cmdline:
            return int(entry.name)
    return 0


# -- the agent exits by itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "rule", "category"),
    [
        (agent_lines.QUEUES_MISSING, "queue_not_found", "not_found"),
        (agent_lines.CREDENTIALS_REJECTED, "wandb_credentials_rejected", "permission"),
        (agent_lines.CREDENTIALS_DENIED, "wandb_credentials_rejected", "permission"),
        (agent_lines.WANDB_UNREACHABLE, "wandb_unreachable", "network"),
    ],
)
def test_fatal_start_errors_are_classified(agent: Agent, line: str, rule: str, category: str) -> None:
    """What the agent prints before exiting 1 names the category; the exit code is 1 either way."""
    run = agent.run([{"err": "wandb: launch: Starting launch agent ✨\n"}, {"err": line}, {"exit": 1}], args=FAST)
    assert run.code == 1, run.stderr
    bailout = run.event("watchdog.bailout")
    assert (bailout["rule"], bailout["category"]) == (rule, category)
    # Read before the exit, the line stops the agent (reason bailout); read after, it classifies the exit.
    assert run.event("watchdog.exited")["reason"] in ("bailout", "agent_exited")


def test_an_unrecognised_exit_is_an_agent_exit_crash(agent: Agent) -> None:
    """Exit 3 after a line no rule knows: bailout `agent_exit` (crash), the agent's code, reason agent_exited."""
    run = agent.run([{"err": "Error: something nobody anticipated\n"}, {"exit": 3}], args=FAST)
    assert run.code == 3
    bailout = run.event("watchdog.bailout")
    assert (bailout["rule"], bailout["category"], bailout["lines"]) == ("agent_exit", "crash", [])
    assert "the agent exited by itself: crash (agent_exit)" in run.stderr
    exited = run.event("watchdog.exited")
    assert (exited["reason"], exited["agent_exit_code"]) == ("agent_exited", 3)


def test_an_exit_after_connection_failures_is_network(agent: Agent) -> None:
    """The explain rule's hints give the category of an exit no stop rule explains."""
    steps = [{"err": "urllib3: Retrying after connection broken by NewConnectionError: Connection refused\n"}]
    run = agent.run([*steps, {"exit": 2}], args=FAST)
    assert run.code == 2
    bailout = run.event("watchdog.bailout")
    assert (bailout["rule"], bailout["category"], bailout["rules"]) == (
        "agent_exit",
        "network",
        ["wandb_connection_failing"],
    )


def test_a_clean_exit_is_no_bailout(agent: Agent) -> None:
    """Exit 0 by itself: nothing to explain."""
    run = agent.run([{"err": "wandb: launch: agent stopped by the UI\n"}, {"exit": 0}], args=FAST)
    assert run.code == 0
    assert "watchdog.bailout" not in run.names


# -- not started is not idle ------------------------------------------------------------------


NEVER_POLLS = [{"err": "wandb: launch: Starting launch agent ✨\n"}, {"sleep": 30}]


def test_an_agent_that_never_polls_is_a_start_timeout(agent: Agent) -> None:
    """No polling line by the idle timeout and nothing to say why: bailout timeout, exit 1."""
    run = agent.run(NEVER_POLLS, args=["--idle-timeout", "0.5", "--grace", "0.3"])
    assert run.code == 1, run.stderr
    bailout = run.event("watchdog.bailout")
    assert (bailout["rule"], bailout["category"]) == ("agent_start_timeout", "timeout")
    assert run.event("watchdog.exited")["reason"] == "bailout"
    assert "watchdog.idle_exit" not in run.names
    assert run.signals[0][0] == signal.SIGINT


def test_wandb_core_retrying_makes_the_start_timeout_network(agent: Agent, tmp_path: Path) -> None:
    """wandb-core's own log (the newest core-debug-*.log that appeared) says W&B refuses connections."""
    home = tmp_path / "home"
    logs = home / ".cache" / "wandb" / "logs"
    logs.mkdir(parents=True)
    (logs / "core-debug-20200101_000000.log").write_text("old run: " + agent_lines.FIRING["quota_exceeded"])
    steps = [{"write": str(logs / CORE_LOG), "text": agent_lines.CORE_RETRYING}, *NEVER_POLLS]
    run = agent.run(steps, args=["--idle-timeout", "1", "--grace", "0.3"], env={"HOME": str(home)})
    assert run.code == 1, run.stderr
    bailout = run.event("watchdog.bailout")
    assert (bailout["rule"], bailout["category"]) == ("agent_start_timeout", "network")
    assert [line["source"] for line in bailout["lines"]] == [CORE_LOG]
    assert "retrying error" in bailout["lines"][0]["text"]


def test_an_old_core_log_tells_nothing(agent: Agent, tmp_path: Path) -> None:
    """A core log that was there before the start is not this run's: the category stays timeout."""
    logs = tmp_path / "cache" / "wandb" / "logs"
    logs.mkdir(parents=True)
    (logs / CORE_LOG).write_text(agent_lines.CORE_RETRYING)
    run = agent.run(
        [*NEVER_POLLS[:1], {"write": str(logs / CORE_LOG), "text": agent_lines.CORE_RETRYING}, {"sleep": 30}],
        args=["--idle-timeout", "0.8", "--grace", "0.3"],
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert run.event("watchdog.bailout")["category"] == "timeout"


def test_a_polling_agent_is_idle_not_stuck(agent: Agent) -> None:
    """Once the polling line was seen, the idle timeout is an idle exit, exit 0."""
    run = agent.run([{"err": agent_lines.STATUS}, {"sleep": 30}], args=["--idle-timeout", "0.5", "--grace", "0.3"])
    assert run.code == 0
    assert run.event("watchdog.exited")["reason"] == "idle"
    assert "watchdog.bailout" not in run.names


# -- blocks and log files ---------------------------------------------------------------------


def test_a_traceback_written_in_pieces_is_judged_whole(agent: Agent) -> None:
    """`Error running job:` now, its traceback over the next 0.4 s: the last line decides (invalid_spec)."""
    text = agent_lines.chained_grpc_traceback(
        "google.api_core.exceptions.InvalidArgument: 400 List of found errors: 1.Field: machine_type"
    )
    head, rest = text.split("\n", 1)
    middle = rest.index("wandb: ERROR The above")
    steps = [
        received(),
        {"err": head + "\n"},
        {"sleep": 0.2},
        {"err": rest[:middle]},
        {"sleep": 0.2},
        {"err": rest[middle:]},
    ]
    run = agent.run(steps, args=FAST)
    assert run.code == 1, run.stderr
    bailout = run.event("watchdog.bailout")
    assert (bailout["rule"], bailout["category"], bailout["trigger_rule"]) == (
        "invalid_argument",
        "invalid_spec",
        "launch_job_error",
    )
    assert [s for s, _ in run.signals] == [signal.SIGINT]  # signalled once, after the last piece


def test_handled_tracebacks_in_debug_log_are_not_a_bailout(agent: Agent) -> None:
    """A RunStoppedStatus failure logged with its traceback in debug.log, then the job is created: submitted."""
    handled = (
        "2026-11-28 10:00:02,000 ERROR   MainThread:1 [job_status_tracker.py:check_wandb_run_stopped():58] "
        "CommError when checking if wandb run stopped\n"
        "Traceback (most recent call last):\n"
        '  File "/usr/local/lib/python3.11/site-packages/wandb/apis/normalize.py", line 41, in wrapper\n'
        "wandb.errors.errors.CommError: failed to query RunStoppedStatus: Name or service not known\n"
    )
    steps = [
        received(),
        {"log": "debug.log", "text": handled},
        {"log": "debug-cli.root.log", "text": handled},
        {"sleep": 0.3},
        {"log": "debug-cli.root.log", "text": agent_lines.SUBMITTED_LOG},
    ]
    run = agent.run(steps, args=FAST)
    assert run.code == 0, run.stderr
    assert "watchdog.bailout" not in run.names
    assert run.event("watchdog.exited")["reason"] == "submitted"


def test_a_wandb_outage_while_polling_is_no_crash(agent: Agent) -> None:
    """wandb logs the retries of an outage in debug.log; the polling agent ends idle, not as a crash."""
    outage = (
        "Traceback (most recent call last):\n"
        '  File "/usr/local/lib/python3.11/site-packages/requests/adapters.py", line 700, in send\n'
        "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.wandb.ai', port=443): Max retries "
        "exceeded (Caused by NewConnectionError('Failed to establish a new connection: "
        "[Errno 111] Connection refused'))\n"
    )
    steps = [{"err": agent_lines.STATUS}, {"log": "debug.log", "text": outage * 3}, {"sleep": 30}]
    run = agent.run(steps, args=["--idle-timeout", "0.8", "--grace", "0.3"])
    assert run.code == 0, run.stderr
    assert run.event("watchdog.exited")["reason"] == "idle"
