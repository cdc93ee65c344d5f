"""End to end over the sandbox: stand-ins, the real daemon process, and per execution the launcher
image's entrypoint (the real launch-watchdog over the real, unmodified `wandb launch-agent`), with
Pub/Sub on Google's emulator. These are the slowest tests: each run starts dozens of processes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from launch_supervisor.sandbox.emulator import free_port
from launch_supervisor.sandbox.session import QUEUE, SUMMARY_KEYS, Options, Sandbox, SandboxError
from launch_supervisor.sandbox.summary import jobs_by_item, watchdog_events
from tests.emulator import require_emulator

pytestmark = pytest.mark.anyio


def sandbox(tmp_path: Path, **options: Any) -> Sandbox:
    settings: dict[str, Any] = {
        "work_dir": tmp_path / "work",
        "http": f"127.0.0.1:{free_port()}",
        "live": False,
        "duration": 150.0,
        "enqueue_every": 0.5,
        **options,
    }
    return Sandbox(Options(**settings), out=io.StringIO())


async def run_alongside(box: Sandbox, check: Callable[[Sandbox], Awaitable[None]]) -> dict[str, Any]:
    """Run the sandbox to its end while `check` acts on it."""
    result: dict[str, Any] = {}

    async def run() -> None:
        result.update(await box.run())

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(120):
            while box.stack is None or box.daemon is None:
                await anyio.sleep(0.05)
        await check(box)
    return result


async def until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(0.1)
        return
    pytest.fail(f"no {what} within {timeout:g}s")


async def until_ready(box: Sandbox, what: str, timeout: float = 60.0) -> None:
    """Until the daemon answers /readyz (queues polled, executions listed)."""
    async with httpx.AsyncClient(timeout=2) as client:
        with anyio.move_on_after(timeout):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{box.url}/readyz")).status_code == 200:
                        return
                await anyio.sleep(0.1)
    pytest.fail(f"no {what} within {timeout:g}s")


async def status(box: Sandbox) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        answer: dict[str, Any] = (await client.get(f"{box.url}/status", timeout=5)).json()
        return answer


async def test_every_item_becomes_one_custom_job(tmp_path: Path) -> None:
    """happy: N items → N CustomJobs and no duplicate, with events over the emulator."""
    require_emulator()
    box = sandbox(tmp_path, items=3)
    summary = await box.run()
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["items_submitted"] == summary["items_terminal"] == 3
    assert summary["vertex_jobs_created"] == 3
    assert summary["duplicates"] == 0
    assert summary["max_executions_per_item"] == 1
    assert summary["outcomes"] == {"submitted": 3}
    assert summary["dispatch_mode"] == "pubsub"
    assert 0 < summary["submit_latency_p50_s"] <= summary["submit_latency_p95_s"]
    assert box.stack is not None
    assert len(box.stack.wandb.agents) == 3  # each real agent registered itself
    assert_no_unknown_requests(box)
    # One-shot, not the daemon's backstop, ended every execution within a few seconds of its
    # CustomJob (about 1 s here, 1.5 s with two cores busy: the submit grace and the agent's exit).
    assert box.stack.cloudrun.cancels == []
    post_submit = box.post_submit_seconds(box.stack)
    assert len(post_submit) == 3
    assert all(0 < seconds < 5 for seconds in post_submit), post_submit


async def test_the_daemon_cancels_an_execution_whose_watchdog_does_not_stop_it(tmp_path: Path) -> None:
    """With the watchdogs told to keep their agents (--on-submit keep), the daemon's backstop
    cancels each execution once, `stop_after_submit` seconds after its CustomJob was created."""
    require_emulator()
    box = sandbox(tmp_path, items=2, on_submit="keep", stop_after_submit=3.0)
    await assert_each_execution_cancelled_once(box, 2)
    assert box.stack is not None
    assert all(3.0 <= seconds < 30 for seconds in box.post_submit_seconds(box.stack))
    assert_no_unknown_requests(box)


async def test_the_daemon_cancels_an_execution_whose_watchdog_misses_the_submission(tmp_path: Path) -> None:
    """The agent started as `python -I -m wandb launch-agent`: isolated mode ignores PYTHONPATH, so the
    watchdog's start-up hook is not loaded and aiplatform's `CustomJob created` record is lost (the
    production failure the hook fixes). The watchdog, told to stop on submit, never sees the
    submission; the daemon's backstop cancels each execution once, `stop_after_submit` seconds after
    its CustomJob was created, going by the item the execution said it claimed."""
    require_emulator()
    agent = (sys.executable, "-I", "-m", "wandb", "launch-agent")
    box = sandbox(tmp_path, items=2, agent=agent, stop_after_submit=3.0)
    await assert_each_execution_cancelled_once(box, 2)
    assert box.stack is not None
    executions = tmp_path / "work" / "executions"
    jobs = jobs_by_item(box.stack)
    post_submit = []
    for name, execution in box.stack.cloudrun.executions.items():
        events = watchdog_events(executions, name)
        assert [e for e in events if e["event"] == "watchdog.submitted"] == []
        short = name.rsplit("/", 1)[-1]
        for stream in ("stdout", "stderr"):  # the agent's output as the watchdog passed it on
            assert "CustomJob created" not in (executions / f"{short}.{stream}.log").read_text(errors="replace")
        [claimed] = [e["item_id"] for e in events if e["event"] == "watchdog.claimed"]
        [job] = jobs[claimed]
        post_submit.append(execution.completion_time.timestamp() - job.create_time.timestamp())
    assert box.post_submit_seconds(box.stack) == []  # no execution reported a submission
    assert len(post_submit) == 2
    assert all(3.0 <= seconds < 30 for seconds in post_submit), post_submit
    assert_no_unknown_requests(box)


async def assert_each_execution_cancelled_once(box: Sandbox, items: int) -> None:
    """Run the sandbox: one CustomJob per item, no duplicate, and the daemon cancelled every
    execution exactly once (the watchdog then forwarded Cloud Run's SIGTERM to its agent)."""
    summary = await box.run()
    assert summary["vertex_jobs_created"] == items
    assert summary["duplicates"] == 0
    assert box.stack is not None
    cancels = box.stack.cloudrun.cancels
    assert sorted(cancels) == sorted(set(cancels))
    assert sorted(cancels) == sorted(box.stack.cloudrun.executions)
    assert all(box.stack.cloudrun.status(name) == "cancelled" for name in cancels)
    assert summary["outcomes"] == {"signal": items}


def assert_no_unknown_requests(box: Sandbox) -> None:
    """The real agent asked nothing the stand-ins could not answer."""
    assert box.stack is not None
    assert box.stack.wandb.unknown == []
    assert box.stack.google.unknown == []


async def test_mixed_failures_are_classified_and_the_breaker_is_resumed(tmp_path: Path) -> None:
    """mixed: the watchdog names each bailout's category, a permission bailout opens the breaker,
    `resume` closes it, items whose CustomJob failed on Vertex are FAILED with Vertex's message, and
    the run stopped in W&B (its code ignores the stop) has its CustomJob cancelled once and its item
    failed."""
    require_emulator()
    box = sandbox(tmp_path, items=10, scenario="mixed", breaker_cooldown=600.0)

    resumed: list[str] = []

    async def resume_when_open(box: Sandbox) -> None:
        while not box.stopping:
            try:
                breaker = (await status(box))["queues"][QUEUE]["breaker"]["state"]
            except httpx.HTTPError:
                breaker = "unknown"  # the daemon is stopping at the end of the run
            if breaker == "open":
                done = await anyio.run_process(
                    ["launch-supervisor", "resume", QUEUE, "--url", box.url], check=False, stderr=subprocess.STDOUT
                )
                assert done.returncode == 0, done.stdout.decode()
                resumed.append(done.stdout.decode().strip())
            await anyio.sleep(0.2)

    summary = await run_alongside(box, resume_when_open)
    assert resumed
    assert resumed[0] == f"{QUEUE}: breaker closed (was open)"
    assert summary["bailouts"] == {"invalid_spec": 1, "permission": 1, "quota": 1}
    assert summary["outcomes"] == {"bailout": 3, "submitted": 7}
    assert summary["items_non_terminal"] == 0
    assert summary["duplicates"] == 0
    assert summary["runs_stopped_in_wandb"] == summary["cancelled_stopped_in_wandb"] == 1
    assert box.stack is not None
    failed = {i.id: i for i in box.stack.wandb.items.values() if i.state == "FAILED"}
    assert len(failed) == 6  # three refused by Vertex, two that failed on Vertex, one stopped in W&B
    by_supervisor = [i for i in failed.values() if any(by.startswith("launch-supervisor") for by in i.failed_by)]
    messages = [m for i in by_supervisor for m, stage in i.failures if stage == "run"]
    assert any(m.startswith("Failed to pull image") for m in messages)
    assert any("exited with a non-zero status of 1" in m for m in messages)
    [(stopped_item, run_id)] = box.stopped.items()
    assert any("stopped in W&B" in m for m, _ in box.stack.wandb.items[stopped_item].failures)
    [job] = jobs_by_item(box.stack)[stopped_item]
    assert box.stack.vertex.cancels == [job.name]  # cancelled once
    assert job.state.name == "JOB_STATE_CANCELLED"
    assert [run.stopped for run in box.stack.wandb.runs_named(run_id)] == [True]
    assert_no_unknown_requests(box)


async def test_an_execution_that_finds_no_item_exits_idle(tmp_path: Path) -> None:
    """Another agent takes the item first: the execution started for it finds nothing and the
    watchdog ends it at its idle timeout; the daemon counts it idle."""
    require_emulator()
    # Long enough for the agent to print its polling line on a loaded machine: one that has not by
    # the idle timeout is a start that hung (a bailout), not an idle agent.
    box = sandbox(tmp_path, items=1, idle_timeout=10.0)

    async def take_the_item_first(box: Sandbox) -> None:
        stack = box.stack
        assert stack is not None
        await until(lambda: bool(stack.cloudrun.executions), what="a RunJob")
        item = stack.wandb.pop("sandbox-team", QUEUE)  # before the execution's agent has started
        assert item is not None
        stack.wandb.ack(item.id, "elsewhere")
        stack.wandb.fail(item.id, "taken by another agent", "agent")

    summary = await run_alongside(box, take_the_item_first)
    assert summary["outcomes"] == {"idle": 1}
    assert summary["vertex_jobs_created"] == 0
    log = (tmp_path / "work" / "daemon.log").read_text()
    finished = [json.loads(line) for line in log.splitlines() if '"execution.finished"' in line]
    assert [f["outcome"] for f in finished] == ["idle"]


async def test_the_daemon_killed_mid_run_is_restarted_without_duplicates(tmp_path: Path) -> None:
    """SIGKILL to the daemon with executions in flight: it is started again, adopts them, and every
    item still becomes exactly one CustomJob."""
    require_emulator()
    box = sandbox(tmp_path, items=6, scenario="burst")

    async def kill_the_daemon(box: Sandbox) -> None:
        stack = box.stack
        assert stack is not None
        await until(lambda: len(stack.cloudrun.executions) >= 3, what="executions in flight")
        assert box.daemon is not None
        os.kill(box.daemon.pid, signal.SIGKILL)

    summary = await run_alongside(box, kill_the_daemon)
    assert box.daemon_restarts == 1
    assert_one_custom_job_per_item_after_adoption(summary, 6, tmp_path)


async def test_the_daemon_killed_again_after_each_restart_is_restarted_each_time(tmp_path: Path) -> None:
    """SIGKILL to the daemon three times, each time once its restart is ready: it is started again
    every time, as systemd would, and every item still becomes exactly one CustomJob."""
    require_emulator()
    box = sandbox(tmp_path, items=6, scenario="burst", duration=240.0)

    async def kill_three_times(box: Sandbox) -> None:
        stack = box.stack
        assert stack is not None
        await until(lambda: len(stack.cloudrun.executions) >= 1, what="an execution in flight")
        for kill in range(1, 4):
            killed = box.daemon
            assert killed is not None
            assert not box.stopping, f"the run ended before kill {kill}"
            os.kill(killed.pid, signal.SIGKILL)
            await until(lambda killed=killed: box.daemon is not killed, what=f"restart {kill}")
            assert box.daemon_restarts == kill
            await until_ready(box, what=f"restart {kill} ready")

    summary = await run_alongside(box, kill_three_times)
    assert box.daemon_restarts == 3
    assert_one_custom_job_per_item_after_adoption(summary, 6, tmp_path)


def assert_one_custom_job_per_item_after_adoption(summary: dict[str, Any], items: int, tmp_path: Path) -> None:
    """Every item terminal with exactly one CustomJob and one execution, and a restarted daemon
    adopted the executions in flight."""
    assert summary["items_terminal"] == items
    assert summary["vertex_jobs_created"] == items
    assert summary["duplicates"] == 0
    assert summary["max_executions_per_item"] == 1
    log = (tmp_path / "work" / "daemon.log").read_text()
    assert '"execution.adopted"' in log


async def test_a_daemon_that_keeps_dying_ends_the_sandbox_at_the_start_limit(tmp_path: Path) -> None:
    """Killed at once every time it is started again: past systemd's start limit (5 starts within
    10 s) it is not started again, and the sandbox ends with an error that says so."""
    box = sandbox(tmp_path, items=1, pubsub=False)

    async def kill_every_start() -> None:
        await until(lambda: bool(box.kinds), what="the first start")  # traffic follows a ready daemon
        while True:
            killed = box.daemon
            assert killed is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(killed.pid, signal.SIGKILL)
            await until(lambda killed=killed: box.daemon is not killed, what="a restart", timeout=30)

    async with anyio.create_task_group() as tg:
        tg.start_soon(kill_every_start)
        with pytest.raises(SandboxError, match="start limit") as raised:
            await box.run()
        tg.cancel_scope.cancel()
    assert "was killed by SIGKILL after 5 starts within 10 s" in str(raised.value)
    assert 4 <= box.daemon_restarts <= 5  # the first start counts too, when it was under 10 s ago


def test_the_command_runs_polling_only_and_writes_the_summary(tmp_path: Path) -> None:
    """`launch-supervisor sandbox --no-pubsub`: says once that it polls, writes exactly the summary keys."""
    out = tmp_path / "summary.json"
    result = subprocess.run(
        [
            "launch-supervisor",
            "sandbox",
            "--items",
            "2",
            "--no-pubsub",
            "--http",
            f"127.0.0.1:{free_port()}",
            "--summary-json",
            str(out),
            "--duration",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("polling only") >= 1
    assert result.stdout.count("Pub/Sub: off") == 1
    summary = json.loads(out.read_text())
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["dispatch_mode"] == "polling"
    assert summary["items_terminal"] == 2
    assert summary["duplicates"] == 0
    assert "summary:" in result.stdout


def test_a_busy_http_address_is_a_clear_error() -> None:
    """The daemon cannot listen: one clear error naming --http, exit 1, nothing left running."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            ["launch-supervisor", "sandbox", "--no-pubsub", "--http", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    assert "--http" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_stops_everything_and_prints_the_summary(tmp_path: Path) -> None:
    """SIGINT mid-run (Ctrl+C): the daemon is stopped in order, every execution's processes are
    gone, the summary covers what happened so far, exit 0. The no-process-left guard checks the rest."""
    out = tmp_path / "summary.json"
    command = ["launch-supervisor", "sandbox", "--items", "8", "--scenario", "burst", "--no-pubsub"]
    command += ["--http", f"127.0.0.1:{free_port()}", "--summary-json", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if "in flight:" in line and not line.split("in flight:")[1].strip().startswith("none"):
                break  # executions are in flight now (the view is drawn every 5 s off a terminal)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopping" in rest
    summary = json.loads(out.read_text())
    assert summary["executions_started"] >= 1
    assert summary["items_submitted"] == 8


def test_jobs_run_for_job_seconds_which_must_outlast_their_start() -> None:
    """`--job-seconds` sets how long each CustomJob runs (time to stop a run by hand); a CustomJob
    runs from 3 s, so no more is refused before anything starts."""
    result = sandbox_command("--job-seconds", "3")
    assert result.returncode == 2
    assert "--job-seconds" in result.stderr


def sandbox_command(*options: str) -> subprocess.CompletedProcess[str]:
    """`launch-supervisor sandbox --no-pubsub OPTIONS` as a user runs it, for options it refuses."""
    argv = ["launch-supervisor", "sandbox", *options, "--no-pubsub"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


async def test_an_unknown_listing_order_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """`--listing` takes the stand-in's orders only (the command's choices are the same)."""
    with pytest.raises(SandboxError, match="--listing 'newest_first': choose one of waiting_first, oldest_first"):
        await sandbox(tmp_path, listing="newest_first").run()
    result = sandbox_command("--listing", "newest_first")
    assert result.returncode == 2
    assert "'waiting_first', 'oldest_first'" in result.stderr


async def test_a_run_stopped_in_wandb_has_its_custom_job_cancelled_after_the_grace(tmp_path: Path) -> None:
    """With the real agent: a user stops the run (over the stand-in's HTTP, as from the W&B UI) while
    its CustomJob runs and its code ignores the stop. The daemon cancels the job once, not before
    `stop_grace` and within `stop_grace` plus one Vertex tick of seeing the run stopped; the job ends
    CANCELLED and the item is FAILED once, with the stop's message."""
    require_emulator()
    grace, vertex_tick = 5.0, 2.0  # the sandbox's config: stop_grace, vertex_interval
    box = sandbox(tmp_path, items=1, job_seconds=120.0, stop_grace=grace)
    seen: dict[str, Any] = {}

    async def stop_the_run(box: Sandbox) -> None:
        assert box.stack is not None
        wandb, vertex = box.stack.wandb, box.stack.vertex
        await until(lambda: any(r.state == "running" for r in wandb.runs.values()), "run started by the job", 90)
        [(_, _, run_id)] = list(wandb.runs)
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.post(f"{box.stack.wandb_url}/sandbox/runs/{run_id}/stop")
        assert answer.status_code == 200, answer.text
        seen["stopped_at"] = time.time()
        while not vertex.cancels:
            for job in (await status(box))["vertex_jobs"]:
                if job["run"] == run_id and job["stopped_in_wandb_since"] is not None:
                    seen["daemon_saw_it"] = job["stopped_in_wandb_since"]
            await anyio.sleep(0.1)

    summary = await run_alongside(box, stop_the_run)
    assert box.stack is not None
    [name] = box.stack.vertex.cancels  # once
    job = box.stack.vertex.jobs[name]
    assert job.job.state.name == "JOB_STATE_CANCELLED"
    assert job.cancelled_at is not None
    cancelled = job.cancelled_at.timestamp()
    assert cancelled - seen["stopped_at"] >= grace  # never before the grace
    assert cancelled - seen["daemon_saw_it"] <= grace + vertex_tick + 1.0  # jitter and the call itself
    [item] = box.stack.wandb.items.values()
    assert item.state == "FAILED"
    assert item.failures == [("stopped in W&B; CustomJob cancelled", "run")]
    assert summary["cancelled_stopped_in_wandb"] == 1
    assert summary["duplicates"] == 0
    assert_no_unknown_requests(box)


@pytest.mark.parametrize("scenario", ["burst", "mixed"])
async def test_items_behind_a_long_history_listed_oldest_first_all_end_once(tmp_path: Path, scenario: str) -> None:
    """The W&B stand-in lists every item oldest first and keeps its history, with 300 finished items
    in the queue before the scenario's: each listing pages through them, every item ends terminal,
    none is run twice, and the history is left as it was."""
    require_emulator()
    box = sandbox(tmp_path, items=10, scenario=scenario, listing="oldest_first", history=300, duration=240.0)
    summary = await box.run()
    assert summary["items_submitted"] == summary["items_terminal"] == 10
    assert summary["items_non_terminal"] == 0
    assert summary["duplicates"] == 0
    assert summary["max_executions_per_item"] == 1
    assert box.stack is not None
    wandb = box.stack.wandb
    history = [i for i in wandb.items.values() if i.id not in box.kinds]
    assert len(history) == 300
    assert all(i.failures in ([], [("history", "run")]) and i.leases == 0 for i in history)
    requests, listings = wandb.faults.calls["GetRunQueueItems"], wandb.item_listings
    # 300 finished items and up to 10 more: three full pages and a fourth, or three when none is listed yet.
    assert 3 * listings <= requests <= 4 * listings
    print(f"{scenario}, oldest_first, 300 past items: {requests / listings:.2f} GraphQL requests per listing")
    assert_no_unknown_requests(box)
