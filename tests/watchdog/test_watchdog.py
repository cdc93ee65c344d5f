"""launch-watchdog end to end: the installed command over real agent processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Agent, pid_alive, wait_for, watchdog_exe
from tests.watchdog import agent_lines

FAST = ["--grace", "2", "--idle-timeout", "30"]


def received(item: str = "UnVuUXVldWVJdGVtOjQy") -> dict[str, str]:
    return {"err": agent_lines.payload(item)}


def test_submission_in_the_cli_log_stops_the_agent(agent: Agent) -> None:
    """The success line in debug-cli.<user>.log ends the run: SIGINT to the agent, exit 0, events."""
    run = agent.run(
        [received(), {"sleep": 0.2}, {"log": "debug-cli.root.log", "text": agent_lines.SUBMITTED_LOG}],
        args=FAST,
    )
    assert run.code == 0, run.stderr
    assert run.names == ["watchdog.started", "watchdog.claimed", "watchdog.submitted", "watchdog.exited"]
    assert run.event("watchdog.claimed")["item_id"] == "UnVuUXVldWVJdGVtOjQy"
    submitted = run.event("watchdog.submitted")
    assert submitted["custom_job"] == agent_lines.SUBMITTED_RESOURCE
    assert submitted["item_id"] == "UnVuUXVldWVJdGVtOjQy"
    assert run.event("watchdog.exited")["reason"] == "submitted"
    assert [s for s, _ in run.signals] == [signal.SIGINT]
    for event in run.events:
        assert event["queue"] == "vertex-ai-queue"
        assert event["entity"] == "team-ml"
        assert event["schema"] == "launch-supervisor/1"
        assert {"severity", "message", "time", "execution"} <= set(event)


def test_after_a_submission_the_agent_gets_the_short_submit_grace(agent: Agent) -> None:
    """Once the CustomJob exists, an agent that does not answer SIGINT gets SIGTERM after the submit
    grace, not after --grace: its work is done and the execution is paid by the second."""
    steps = [received(), {"sleep": 0.2}, {"log": "debug-cli.root.log", "text": agent_lines.SUBMITTED_LOG}]
    run = agent.run(steps, args=["--grace", "60", "--submit-grace", "0.5", "--idle-timeout", "30"], on_signal="ignore")
    assert run.code == 0, run.stderr
    assert [s for s, _ in run.signals] == [signal.SIGINT, signal.SIGTERM]
    (_, sigint), (_, sigterm) = run.signals
    assert (sigterm - sigint) / 1e9 < 30  # the submit grace, nowhere near --grace


def test_on_submit_keep_reports_the_submission_and_leaves_the_agent(agent: Agent) -> None:
    """--on-submit keep: watchdog.submitted is reported, the agent keeps running until stopped from
    outside (here SIGTERM, as Cloud Run's cancel sends), and no idle timeout ends it."""
    steps = [received(), {"sleep": 0.2}, {"log": "debug-cli.root.log", "text": agent_lines.SUBMITTED_LOG}]
    proc = agent.start(steps, args=["--grace", "2", "--idle-timeout", "1", "--on-submit", "keep"])
    assert wait_for(lambda: agent.wandb_dir.joinpath("wandb", "debug-cli.root.log").exists())
    time.sleep(2.0)  # past the idle timeout
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGTERM)
    run = agent.finish(proc)
    assert run.code == 128 + signal.SIGTERM
    assert run.event("watchdog.submitted")["custom_job"] == agent_lines.SUBMITTED_RESOURCE
    assert run.event("watchdog.exited")["reason"] == "signal"


def test_a_log_that_existed_before_the_start_is_not_a_submission(agent: Agent) -> None:
    """An old CLI log announcing an old job is read from its end, so it cannot end a new run."""
    old = agent.wandb_dir / "wandb"
    old.mkdir(parents=True)
    (old / "debug-cli.root.log").write_text(agent_lines.SUBMITTED_LOG)
    run = agent.run([], args=["--idle-timeout", "0.5", "--grace", "2"])
    assert run.code == 0
    assert "watchdog.submitted" not in run.names
    assert run.event("watchdog.exited")["reason"] == "idle"


def test_log_file_that_appears_late_and_is_truncated(agent: Agent) -> None:
    """A log created after a while, then truncated and rewritten, is still followed."""
    log = agent.wandb_dir / "wandb" / "debug-internal.log"
    steps = [
        received(),
        {"sleep": 0.3},
        {"log": "debug-internal.log", "text": "line one\n" * 50},
        {"sleep": 0.2},
        {"truncate": str(log)},
        {"sleep": 0.1},
        {"log": "debug-internal.log", "text": agent_lines.SUBMITTED_LOG},
    ]
    run = agent.run(steps, args=FAST)
    assert run.code == 0, run.stderr
    assert run.event("watchdog.submitted")["custom_job"] == agent_lines.SUBMITTED_RESOURCE


def test_follow_option_reads_another_file(agent: Agent, tmp_path: Path) -> None:
    """--follow PATH is scanned like the agent's own logs."""
    other = tmp_path / "other.log"
    steps = [received(), {"sleep": 0.2}, {"truncate": str(other)}, {"sleep": 0.1}]
    proc = agent.start(steps, args=[*FAST, "--follow", str(other)])
    assert wait_for(other.exists)
    with other.open("a") as f:
        f.write(agent_lines.SUBMITTED_LOG)
    run = agent.finish(proc)
    assert run.code == 0
    assert "watchdog.submitted" in run.names


def test_wandb_dir_is_provided_when_unset(agent: Agent) -> None:
    """Without WANDB_DIR the watchdog makes one (with `wandb/` in it), follows it, and removes it afterwards."""
    env = agent.env()
    del env["WANDB_DIR"]
    argv = [watchdog_exe(), *FAST, "--"]
    script = [
        sys.executable,
        "-c",
        "import os,sys,time;print('dir', os.environ['WANDB_DIR'], flush=True);"
        "assert os.path.isdir(os.environ['WANDB_DIR']+'/wandb');"
        f"open(os.environ['WANDB_DIR']+'/wandb/debug-cli.u.log','w').write({agent_lines.SUBMITTED_LOG!r});"
        "time.sleep(30)",
    ]
    proc = subprocess.run([*argv, *script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    made = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("dir "))
    assert "launch-watchdog-" in made
    assert not Path(made).exists()


def test_idle_exit(agent: Agent) -> None:
    """No job within the idle timeout: idle_exit event, the agent stopped, exit 0."""
    run = agent.run([], args=["--idle-timeout", "0.5", "--grace", "2"])
    assert run.code == 0
    assert run.names == ["watchdog.started", "watchdog.idle_exit", "watchdog.exited"]
    assert run.event("watchdog.idle_exit")["idle_seconds"] >= 0.5
    assert [s for s, _ in run.signals] == [signal.SIGINT]


def test_received_job_cancels_the_idle_timeout(agent: Agent) -> None:
    """Once a job is received, idleness no longer ends the run."""
    steps = [
        received(),
        {"sleep": 1.0},
        {"log": "debug-cli.root.log", "text": agent_lines.SUBMITTED_LOG},
    ]
    run = agent.run(steps, args=["--idle-timeout", "0.3", "--grace", "2"])
    assert run.event("watchdog.exited")["reason"] == "submitted"


@pytest.mark.parametrize("code", [0, 3])
def test_agent_exit_code_passes_through(agent: Agent, code: int) -> None:
    """An agent that exits by itself decides the exit code."""
    run = agent.run([{"err": "wandb: launch: starting\n"}, {"exit": code}], args=FAST)
    assert run.code == code
    exited = run.event("watchdog.exited")
    assert (exited["reason"], exited["agent_exit_code"]) == ("agent_exited", code)


@pytest.mark.parametrize(
    ("rule_id", "category"),
    [
        ("permission_denied", "permission"),
        ("quota_exceeded", "quota"),
        ("machine_type_unsupported", "invalid_spec"),
        ("image_pull_failed", "image_pull"),
        ("network_retry_loop", "network"),
        ("queue_pop_error", "wandb"),
        ("repeated_failures", "repeated_failure"),
        ("unhandled_exception", "crash"),
        ("start_timeout", "timeout"),
        ("http_error", "http"),
    ],
)
def test_fatal_lines_stop_the_agent(agent: Agent, rule_id: str, category: str) -> None:
    """A fatal line: SIGINT at once, bailout event and block, exit 1."""
    text = agent_lines.FIRING[rule_id] * agent_lines.TIMES.get(rule_id, 1)
    step = {"out": text} if rule_id == "queue_pop_error" else {"err": text}
    run = agent.run([received(), step], args=FAST)
    assert run.code == 1, run.stderr
    bailout = run.event("watchdog.bailout")
    assert (bailout["rule"], bailout["category"]) == (rule_id, category)
    assert bailout["lines"]
    assert bailout["item_id"] == "UnVuUXVldWVJdGVtOjQy"
    assert bailout["detection_ms"] >= 0
    assert run.event("watchdog.exited")["reason"] == "bailout"
    assert run.signals[0][0] == signal.SIGINT
    assert "BAILOUT TRIGGER:" in run.stderr


def test_most_specific_category_wins(agent: Agent) -> None:
    """`Error running job: Traceback…` then `PermissionDenied: 403` is one incident: permission."""
    run = agent.run(
        [received(), {"err": agent_lines.job_error_traceback("google.api_core.exceptions.PermissionDenied: 403 x")}],
        args=FAST,
    )
    bailout = run.event("watchdog.bailout")
    assert bailout["category"] == "permission"
    assert bailout["trigger_rule"] == "launch_job_error"
    assert [line["line"] for line in bailout["lines"]] == [12, 15]


def test_what_the_agent_prints_after_the_signal_does_not_change_the_verdict(agent: Agent) -> None:
    """A crash, then on SIGINT a line that would be a (more specific) wandb failure: still crash."""
    run = agent.run(
        [received(), {"err": agent_lines.FIRING["unhandled_exception"]}],
        args=FAST,
        signal_text="wandb: ERROR Failed to update agent status to KILLED\n",
    )
    bailout = run.event("watchdog.bailout")
    assert (bailout["rule"], bailout["category"]) == ("unhandled_exception", "crash")
    assert "Failed to update agent status" in run.stderr  # passed through all the same
    assert "Failed to update agent status" not in json.dumps(bailout)


def test_image_pull_beats_the_broad_wandb_pattern(agent: Agent) -> None:
    """`wandb: ERROR … Failed to pull image` matches both; image_pull is more specific."""
    run = agent.run([received(), {"err": "wandb: ERROR launch: Failed to pull image gcr.io/x/y:1\n"}], args=FAST)
    assert run.event("watchdog.bailout")["category"] == "image_pull"


def test_payload_values_do_not_fire(agent: Agent) -> None:
    """A payload full of error-looking config, then success: no bailout."""
    extra = ",\n wandb:                                           'note': 'PermissionDenied: 403 QuotaExceeded FAILED'"
    steps = [
        {"err": agent_lines.payload("item-1", extra.replace(" wandb:", "wandb:"))},
        {"err": '127.0.0.1 "POST /graphql HTTP/1.1" 503 -\n'},
        {"sleep": 0.1},
        {"log": "debug-cli.root.log", "text": agent_lines.SUBMITTED_LOG},
    ]
    run = agent.run(steps, args=FAST)
    assert run.code == 0, run.stderr
    assert "watchdog.bailout" not in run.names


def test_bailout_block_has_matches_and_context(agent: Agent) -> None:
    """The block names the trigger, lists matching lines with numbers, and the last N lines."""
    steps = [
        received(),
        {"err": "".join(f"progress {i}\n" for i in range(20))},
        {"err": agent_lines.FIRING["not_found"]},
    ]
    run = agent.run(steps, args=[*FAST, "--context-lines", "5"])
    block = run.stderr[run.stderr.index("BAILOUT TRIGGER") :]
    assert "rule not_found, category not_found" in block
    assert "► 32 [stderr]: google.api_core.exceptions.NotFound: 404" in block
    context = block.split("agent lines ━━━\n", 1)[1].split("━" * 10, 1)[0].splitlines()
    assert context[-1].startswith("google.api_core.exceptions.NotFound")
    assert len(context) <= 5
    assert "progress 19" in context


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_are_forwarded(agent: Agent, signum: int, code: int) -> None:
    """SIGTERM/SIGINT to the watchdog reach the agent; the watchdog exits 128+N."""
    proc = agent.start([received()], args=FAST)
    assert proc.stdout is not None
    for line in proc.stdout:  # the agent is up, its handlers installed, once it has printed the job
        if '"watchdog.claimed"' in line:
            break
    proc.send_signal(signum)
    run = agent.finish(proc)
    assert run.code == code
    assert [s for s, _ in run.signals] == [signum]
    assert f"received {signal.Signals(signum).name}" in run.stderr


def test_escalation_and_group_cleanup(agent: Agent, tmp_path: Path) -> None:
    """An agent ignoring SIGINT/SIGTERM, with a grandchild doing the same: both are killed."""
    pidfile = tmp_path / "grandchild.pid"
    steps = [{"grandchild": str(pidfile)}, received(), {"err": agent_lines.FIRING["quota_exceeded"]}]
    run = agent.run(steps, args=["--grace", "0.3"], on_signal="ignore")
    assert run.code == 1
    assert [s for s, _ in run.signals] == [signal.SIGINT, signal.SIGTERM]  # then SIGKILL, which cannot be seen
    grandchild = int(pidfile.read_text())
    assert not pid_alive(grandchild)


def test_grandchild_left_behind_by_an_exiting_agent_is_stopped(agent: Agent, tmp_path: Path) -> None:
    """The agent exits but leaves a process in its group: the watchdog stops it before exiting."""
    pidfile = tmp_path / "grandchild.pid"
    run = agent.run([{"grandchild": str(pidfile)}, {"exit": 0}], args=["--grace", "0.2"])
    assert run.code == 0
    assert not pid_alive(int(pidfile.read_text()))


def test_secrets_never_reach_the_output(agent: Agent) -> None:
    """Secret env values and token shapes are redacted in passthrough, events and the bailout block."""
    key = "0123456789abcdef0123456789abcdef01234567"
    text = (
        f"wandb: using key {key}\nAuthorization: Bearer ya29.a0AfH6SMBxyz\n"
        f"google.api_core.exceptions.PermissionDenied: 403 caller {key} lacks permission\n"
    )
    run = agent.run([received(), {"out": f"stdout {key}\n"}, {"err": text}], args=FAST, env={"WANDB_API_KEY": key})
    assert key not in run.stdout
    assert key not in run.stderr
    assert "ya29.a0AfH6" not in run.stderr
    assert "[REDACTED:WANDB_API_KEY]" in run.stdout
    assert "[REDACTED:WANDB_API_KEY]" in run.event("watchdog.bailout")["lines"][0]["text"]


def test_invalid_bytes_and_huge_lines(agent: Agent) -> None:
    """Invalid UTF-8 and a 40 MB line without newline pass; the fatal line after them is caught."""
    steps = [
        received(),
        {"err_bytes": "ff fe 0a".replace(" ", "")},
        {"repeat": "x" * 65536, "times": 640, "stream": "err"},
        {"err": "\n" + agent_lines.FIRING["quota_exceeded"]},
    ]
    code = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    argv = [sys.executable, "-c", code, watchdog_exe(), *FAST, "--", *agent.command(steps)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=agent.env(), timeout=120, check=False)
    exit_code, max_rss_kb = (int(x) for x in proc.stdout.split())
    assert exit_code == 1
    # 40 MB kept in memory would push the watchdog far past this; it runs in about 20 MB.
    assert max_rss_kb < 60_000, f"max RSS {max_rss_kb} kB: the 40 MB line was kept"


def test_a_burst_of_lines_all_passes_through(agent: Agent) -> None:
    """200,000 lines in one burst are all passed through, in order, before the fatal one is caught."""
    steps = [received(), {"repeat": "wandb: launch: step output line\n", "times": 200_000, "stream": "err"}]
    steps.append({"err": agent_lines.FIRING["quota_exceeded"]})
    run = agent.run(steps, args=FAST)
    assert run.code == 1
    passthrough = run.stderr.split("━", 1)[0]
    assert passthrough.count("wandb: launch: step output line\n") == 200_000
    assert run.event("watchdog.bailout")["category"] == "quota"


def test_extra_rules_file(agent: Agent, tmp_path: Path) -> None:
    """--rules adds a rule that then stops the agent."""
    rules = tmp_path / "rules.toml"
    rules.write_text("[[rules]]\nid = 'oom'\ncategory = 'crash'\npattern = 'OOMKilled'\n")
    run = agent.run([received(), {"err": "container OOMKilled\n"}], args=[*FAST, "--rules", str(rules)])
    assert run.event("watchdog.bailout")["rule"] == "oom"


def test_options_from_the_environment(agent: Agent) -> None:
    """LAUNCH_WATCHDOG_* variables set options the command line does not."""
    run = agent.run([], env={"LAUNCH_WATCHDOG_IDLE_TIMEOUT": "0.4", "LAUNCH_WATCHDOG_GRACE": "1"})
    started = run.event("watchdog.started")
    assert (started["idle_timeout_s"], started["grace_s"]) == (0.4, 1.0)
    assert run.event("watchdog.exited")["reason"] == "idle"


def test_execution_name_from_cloud_run(agent: Agent) -> None:
    """Every event carries CLOUD_RUN_EXECUTION."""
    run = agent.run([], args=["--idle-timeout", "0.2"], env={"CLOUD_RUN_EXECUTION": "vertex-ai-launcher-abc12"})
    assert {e["execution"] for e in run.events} == {"vertex-ai-launcher-abc12"}


def test_command_that_cannot_start(tmp_path: Path) -> None:
    """A missing agent binary: a clear error, an exited event, exit 127."""
    proc = subprocess.run(
        [watchdog_exe(), "--", str(tmp_path / "no-such-agent")], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 127
    assert "cannot start" in proc.stderr
    assert '"reason":"spawn_failed"' in proc.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--grace", "soon", "--", "true"], {}, "--grace (LAUNCH_WATCHDOG_GRACE) must be a number of seconds"),
        (["--", "true"], {"LAUNCH_WATCHDOG_IDLE_TIMEOUT": "-1"}, "must be >= 0"),
        (["--context-lines", "1.5", "--", "true"], {}, "must be a whole number"),
        (["--events-topic", "my-topic", "--", "true"], {}, "must look like projects/PROJECT/topics/TOPIC"),
        (["--idle-timeout", "3"], {}, "no agent command: put it after --"),
        (["--rules", "/nonexistent/rules.toml", "--", "true"], {}, "cannot read the rules file"),
        (["--", "true"], {"LAUNCH_WATCHDOG_ON_SUBMIT": "later"}, "must be stop or keep"),
    ],
)
def test_usage_errors(args: list[str], env: dict[str, str], message: str) -> None:
    """Bad options exit 2 with a message naming the option, its variable and the fix."""
    proc = subprocess.run(
        [watchdog_exe(), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
