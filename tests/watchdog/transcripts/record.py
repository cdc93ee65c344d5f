"""Record what the real `wandb launch-agent` writes, scenario by scenario, as test fixtures.

    python3 tests/watchdog/transcripts/record.py [SCENARIO ...]

Each scenario runs the unmodified agent (the image's pin) against the sandbox's stand-ins, with the
environment launch-watchdog gives it (`$WANDB_DIR/wandb` made beforehand, its start-up hook first on
PYTHONPATH) but without the watchdog, so nothing stops it early: the transcript is the agent's own.
Everything it writes is kept in the order it was read, each chunk with its time since the start:

    timeline.jsonl   {"t": seconds, "source": "stdout"|"stderr"|"debug-cli.log"|"debug.log"|
                      "core-debug.log", "text": ...}
    stdout.txt, stderr.txt (always, empty when nothing was written: the agent logs to stderr)
    debug-cli.log, debug.log, core-debug.log (when written; debug.log only once a run started)
    scenario.json    what was done, how it ended, the logs the agent did not write, and the
                     watchdog's expected verdict

The stand-in's API key and the temporary paths are replaced by placeholders. The rule tests
(`tests/watchdog/test_transcripts.py`) replay these files through the real watchdog with no network.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[3]
sys.path.append(str(ROOT))  # for `tests`; after site-packages, so the folders never shadow

from launch_supervisor.sandbox import traffic  # noqa: E402
from launch_supervisor.sandbox.emulator import free_port  # noqa: E402
from launch_supervisor.sandbox.faults import Fault  # noqa: E402
from launch_supervisor.sandbox.session import LAUNCH_CONFIG  # noqa: E402
from launch_supervisor.sandbox.stack import ENTITY, Stack, stand_ins  # noqa: E402
from launch_watchdog.agent_startup import DIRECTORY as AGENT_STARTUP  # noqa: E402
from tests.conftest import descendants  # noqa: E402

HERE = Path(__file__).resolve().parent
STOP_WAIT = 5.0
"""Seconds the agent gets to exit after SIGINT before SIGTERM (once it watches a job, it may not)."""
QUEUE = "sandbox"
AFTER = 4.0
"""Seconds the agent is left running after the scenario's decisive moment, then sent SIGINT."""


@dataclass
class Scenario:
    name: str
    note: str
    expected: dict[str, Any]
    """The watchdog's verdict on this transcript: outcome, category, exit code."""
    kind: traffic.Kind | None = traffic.OK
    queue: str = QUEUE
    env: Callable[[Stack], dict[str, str]] = field(default_factory=lambda: lambda stack: {})
    prepare: Callable[[Stack], None] = field(default_factory=lambda: lambda stack: None)
    done: Callable[[Stack, str], bool] | None = None
    """When the scenario has happened (None: when the agent exits by itself)."""
    during: Callable[[Stack], Awaitable[None]] | None = None


def _nowhere(stack: Stack) -> str:
    return f"127.0.0.1:{free_port()}"


def _job_created(stack: Stack, stderr: str) -> bool:
    return bool(stack.vertex.jobs)


def _job_error(stack: Stack, stderr: str) -> bool:
    return "Error running job:" in stderr


async def _outage_after_submit(stack: Stack) -> None:
    while not stack.vertex.jobs:
        await anyio.sleep(0.05)
    stack.wandb.outage = 503


def _bad_key(name: str, wording: str, issues: str) -> Scenario:
    """A WANDB_API_KEY W&B refuses, answered 401 with one of W&B's wordings (`REFUSALS`)."""
    return Scenario(
        name,
        f"A WANDB_API_KEY W&B refuses: 401 `{wording}`, as W&B words it (wandb issues {issues}). "
        "The agent exits 1 by itself at start.",
        {"outcome": "bailout", "category": "permission", "exit_code": 1},
        kind=None,
        env=lambda stack: {"WANDB_API_KEY": "0" * 40},
        prepare=lambda stack: setattr(stack.wandb, "refusal", wording),
    )


SCENARIOS = [
    Scenario(
        "happy",
        "An image job the Vertex stand-in accepts. The agent creates the CustomJob and goes on watching it; "
        "its RunState queries meet a run W&B has not heard of yet, which it logs at INFO as "
        "'did not have associated run'. It did not exit on SIGINT while watching its job.",
        {"outcome": "submitted", "exit_code": 0},
        done=_job_created,
    ),
    Scenario(
        "quota",
        "8 H100s against a quota of 0: CreateCustomJob answers RESOURCE_EXHAUSTED.",
        {"outcome": "bailout", "category": "quota", "exit_code": 1},
        kind=next(k for k in traffic.FAILURES if k.name == "quota"),
        done=_job_error,
    ),
    Scenario(
        "permission",
        "`vertex.run.service_account` the caller may not act as: CreateCustomJob answers PERMISSION_DENIED.",
        {"outcome": "bailout", "category": "permission", "exit_code": 1},
        kind=next(k for k in traffic.FAILURES if k.name == "permission"),
        done=_job_error,
    ),
    Scenario(
        "machine_type",
        "A machine type that does not take the accelerator: CreateCustomJob answers INVALID_ARGUMENT.",
        {"outcome": "bailout", "category": "invalid_spec", "exit_code": 1},
        kind=next(k for k in traffic.FAILURES if k.name == "machine_type"),
        done=_job_error,
    ),
    Scenario(
        "no_gcp_credentials",
        "No metadata server (GCE_METADATA_HOST and GCE_METADATA_IP point at a closed port) and no ADC file.",
        {"outcome": "bailout", "category": "permission", "exit_code": 1},
        env=lambda stack: {"GCE_METADATA_HOST": _nowhere(stack), "GCE_METADATA_IP": _nowhere(stack)},
        done=_job_error,
    ),
    Scenario(
        "vertex_unreachable",
        "The CONNECT proxy joins Vertex's host to a closed port: the channel never becomes ready.",
        {"outcome": "bailout", "category": "network", "exit_code": 1},
        prepare=lambda stack: setattr(stack.google, "vertex_tls_address", _nowhere(stack)),
        done=_job_error,
    ),
    Scenario(
        "queue_missing",
        "`-q no-such-queue`: the agent exits 1 by itself at start.",
        {"outcome": "bailout", "category": "not_found", "exit_code": 1},
        kind=None,
        queue="no-such-queue",
    ),
    _bad_key("bad_key", "user is not logged in", "#7118, #5319"),
    _bad_key("bad_key_permission_denied", "permission denied", "#2966, #2657"),
    Scenario(
        "wandb_down",
        "WANDB_BASE_URL is a closed port: nothing on the console for about 20 s while wandb-core retries "
        "(core-debug.log), then the agent exits 1 by itself.",
        {"outcome": "bailout", "category": "network", "exit_code": 1},
        kind=None,
        env=lambda stack: {"WANDB_BASE_URL": f"http://{_nowhere(stack)}"},
    ),
    Scenario(
        "run_stopped_status_error",
        "The CustomJob is created, then every RunStoppedStatus query answers a GraphQL error: the agent handles "
        "the error and logs its traceback to debug.log and the CLI log. The verdict is the submission.",
        {"outcome": "submitted", "exit_code": 0},
        prepare=lambda stack: stack.wandb.faults.add("RunStoppedStatus", Fault(status=200), times=1000),
        done=lambda stack, stderr: bool(stack.vertex.jobs) and stack.wandb.faults.calls["RunStoppedStatus"] > 1,
    ),
    Scenario(
        "wandb_outage_after_submit",
        "The CustomJob is created, then every W&B request answers 503: the agent prints "
        "'503 encountered …, retrying request' and goes on. The verdict is the submission.",
        {"outcome": "submitted", "exit_code": 0},
        done=lambda stack, stderr: bool(stack.vertex.jobs) and stack.wandb.outage is not None,
        during=_outage_after_submit,
    ),
]


class Recorder:
    """Reads the agent's pipes and polls its log files, keeping every chunk with its time."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.started = time.monotonic()
        self.timeline: list[dict[str, Any]] = []
        self.text: dict[str, str] = {}
        self._files = files
        self._offsets: dict[str, int] = dict.fromkeys(files, 0)

    def add(self, source: str, text: str) -> None:
        if text:
            self.timeline.append({"t": round(time.monotonic() - self.started, 3), "source": source, "text": text})
            self.text[source] = self.text.get(source, "") + text

    def poll_files(self) -> None:
        for source, pattern in self._files.items():
            matches = sorted(pattern.parent.glob(pattern.name)) if pattern.parent.exists() else []
            if not matches:
                continue
            data = matches[-1].read_bytes()
            new = data[self._offsets[source] :]
            if new:
                self._offsets[source] = len(data)
                self.add(source, new.decode(errors="replace"))


def _read_pipes(proc: subprocess.Popen[bytes], recorder: Recorder, timeout: float) -> None:
    assert proc.stdout is not None
    assert proc.stderr is not None
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    while streams:
        ready, _, _ = select.select(list(streams), [], [], min(timeout, 0.05))
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                recorder.add(streams[fd], data.decode(errors="replace"))
            else:
                del streams[fd]
        recorder.poll_files()


async def record(scenario: Scenario, out: Path) -> dict[str, Any]:
    async with stand_ins([QUEUE]) as stack:
        stack.wandb.known_queues.add(QUEUE)
        if scenario.kind is not None:
            stack.wandb.enqueue(ENTITY, QUEUE, traffic.run_spec(scenario.kind, ENTITY, 0))
        scenario.prepare(stack)
        with tempfile.TemporaryDirectory(prefix="transcript-") as tmp_name:
            tmp = Path(tmp_name)
            home = tmp / "home"
            (home / ".config" / "wandb").mkdir(parents=True)
            shutil.copyfile(LAUNCH_CONFIG, home / ".config" / "wandb" / "launch-config.yaml")
            wandb_dir = tmp / "wandb-dir"
            (wandb_dir / "wandb").mkdir(parents=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "LAUNCH_WATCHDOG_"))}
            env.pop("PUBSUB_EMULATOR_HOST", None)
            env.update(stack.agent_env())
            env.update({"HOME": str(home), "WANDB_DIR": str(wandb_dir), "PYTHONPATH": str(AGENT_STARTUP)})
            env.update(scenario.env(stack))
            recorder = Recorder(
                {
                    "debug-cli.log": wandb_dir / "wandb" / f"debug-cli.{getpass.getuser()}.log",
                    "debug.log": wandb_dir / "wandb" / "debug.log",
                    "core-debug.log": home / ".cache" / "wandb" / "logs" / "core-debug-*.log",
                }
            )
            wandb = str(Path(sys.executable).with_name("wandb"))
            argv = [wandb, "launch-agent", "-q", scenario.queue, "-e", ENTITY, "--max-jobs", "1"]
            proc = subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
            reader = anyio.to_thread.run_sync(_read_pipes, proc, recorder, 0.05)
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: reader)
                if scenario.during is not None:
                    tg.start_soon(scenario.during, stack)
                deadline = time.monotonic() + 90
                decided_at: float | None = None
                while proc.poll() is None and time.monotonic() < deadline:
                    if decided_at is None and scenario.done and scenario.done(stack, recorder.text.get("stderr", "")):
                        decided_at = time.monotonic()
                    if decided_at is not None and time.monotonic() - decided_at > AFTER:
                        break
                    await anyio.sleep(0.05)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGINT)
                    with anyio.move_on_after(STOP_WAIT):
                        while proc.poll() is None:
                            await anyio.sleep(0.05)
                _stop_everything(proc)
                tg.cancel_scope.cancel()
            recorder.poll_files()
            code = proc.wait()
            return _write(scenario, out, recorder, code, api_key=stack.api_key, tmp=tmp)


def _stop_everything(proc: subprocess.Popen[bytes]) -> None:
    """The agent's group, and wandb-core and wandb-symon in sessions of their own."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in [*descendants(proc.pid), proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        time.sleep(0.5)


LOGS = ("debug-cli.log", "debug.log", "core-debug.log")
"""The agent's log files a transcript keeps, when the agent writes them."""


def _scrub(text: str, api_key: str, tmp: Path) -> str:
    return text.replace(api_key, "[SANDBOX_API_KEY]").replace(str(tmp), "$TMP")


def _write(scenario: Scenario, out: Path, recorder: Recorder, code: int, *, api_key: str, tmp: Path) -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with (out / "timeline.jsonl").open("w") as f:
        for chunk in recorder.timeline:
            f.write(json.dumps({**chunk, "text": _scrub(chunk["text"], api_key, tmp)}) + "\n")
    texts = {"stdout": "", "stderr": "", **recorder.text}
    for source, text in texts.items():
        name = source if source.endswith(".log") else f"{source}.txt"
        (out / name).write_text(_scrub(text, api_key, tmp))
    meta = {
        "scenario": scenario.name,
        "note": scenario.note,
        "agent": "wandb launch-agent 0.31.0, unmodified, against the sandbox's stand-ins",
        "command": f"wandb launch-agent -q {scenario.queue} -e {ENTITY} --max-jobs 1",
        "agent_exit_code": code,
        "ended_by": "itself"
        if scenario.done is None
        else f"SIGINT {AFTER:g} s after the scenario happened, SIGTERM {STOP_WAIT:g} s later if still running",
        "not_written": sorted(set(LOGS) - set(texts)),
        "expected": scenario.expected,
    }
    (out / "scenario.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main() -> None:
    wanted = set(sys.argv[1:])
    for scenario in SCENARIOS:
        if wanted and scenario.name not in wanted:
            continue
        meta = anyio.run(record, scenario, HERE / scenario.name)
        print(f"{scenario.name}: agent exit {meta['agent_exit_code']}, {meta['ended_by']}")


if __name__ == "__main__":
    main()
