"""The real launch-watchdog in every Cloud Run execution, over a scripted agent that misbehaves.

`Watchdogs` is the Cloud Run stand-in's behaviour: each execution runs `launch-watchdog -- python
watchdog_support.py WORK TEMPLATE -q Q -e E --max-jobs 1` as a process (`ProcessLauncher`), so the
daemon, Pub/Sub and the stand-ins see what they would see of the launcher image.

The agent it runs is the scripted one (tests/watchdog/agent.py), which cannot speak to W&B. So this
file, run as a script, is the start of that agent and does what the real agent does first, over
HTTP against the W&B stand-in: it prints the polling line, pops the first pending item
(popFromRunQueue, LEASED) and acks it with a run id (ackRunQueueItem, CLAIMED). Then it writes the
agent's script, naming the item in the job payload (ITEM), and execs agent.py with it, which plays
the rest. A script with a success line (JOB) needs a CustomJob: the agent cannot call Vertex either,
so the test process creates it (with the item as trace id, as the agent's Vertex runner does) as
soon as the agent has written down its claim, and the agent waits for its name. The agent never fails its own item:
when the watchdog stops it at a fatal line, the daemon has to (`execution_ended`).

Only the standard library is imported at the top: the agent's start must stay fast.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launch_supervisor.sandbox.cloudrun_server import ExecutionHandle
    from launch_supervisor.sandbox.stack import Stack
    from launch_supervisor.sandbox.vertex_server import VertexStandIn
    from launch_supervisor.sandbox.wandb_server import WandbStandIn
    from tests.faults.harness import Figures, Record

AREA = "Watchdog"
"""The scenarios' area in the fault suite's table."""
AGENT = Path(__file__).resolve().parents[1] / "watchdog" / "agent.py"
ITEM = "@ITEM@"
"""In a script: replaced by the id of the item the agent claimed."""
JOB = "@JOB@"
"""In a script: replaced by the resource name of the item's CustomJob (the agent waits for it)."""
MARK = "LAUNCH_WATCHDOG_FAULT_RUN"
"""Set in every execution's environment, so everything it starts can be found in /proc."""
STATUS = "wandb: launch: agent 8x7y polling on queues {queue}, running 0 out of a maximum of 1 jobs\n"
POP = (
    "mutation popFromRunQueue($queueName: String!, $entity: String!) {\n"
    "  popFromRunQueue(input: {queueName: $queueName, entityName: $entity}) { runQueueItemId runSpec }\n}"
)
ACK = (
    "mutation ackRunQueueItem($itemId: ID!, $runId: String!) {\n"
    "  ackRunQueueItem(input: {runQueueItemId: $itemId, runName: $runId}) { success }\n}"
)


def hook_line(resource: str) -> str:
    """aiplatform's success record as the watchdog's start-up hook writes it to stderr."""
    return f"INFO google.cloud.aiplatform.base: CustomJob created. Resource name: {resource}\n"


# -- the start of the scripted agent (run as a script, in the execution) -------------------------


def _arg(args: Sequence[str], *flags: str) -> str:
    for i, arg in enumerate(args[:-1]):
        if arg in flags:
            return args[i + 1]
    raise SystemExit(f"the agent needs {flags[0]}")


def _graphql(url: str, key: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    auth = base64.b64encode(f"api:{key}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - the W&B stand-in's http:// URL, from the test
        f"{url}/graphql",
        json.dumps({"query": query, "variables": variables}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Basic {auth}", "User-Agent": "scripted-agent"},
    )
    for attempt in range(5):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                data: dict[str, Any] = json.loads(response.read())["data"]
                return data
        except OSError:
            if attempt == 4:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _write(path: Path, text: str) -> None:
    """Whole or not at all, for a reader polling the file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def claim_and_play(argv: Sequence[str]) -> None:
    """WORK TEMPLATE AGENT_ARGS...: claim an item, then become agent.py playing TEMPLATE.

    The template is agent.py's script, with keys of this start's own: `pop_after` (seconds before
    the first pop), `job_after` (seconds from the ack to the CustomJob), `play_after` (seconds from
    the ack to the job payload, at least `job_after`) and `by_item` (item id → the script to play
    instead, when that item is the one claimed)."""
    work, args = Path(argv[0]), list(argv[2:])
    template: dict[str, Any] = json.loads(Path(argv[1]).read_text())
    queue, entity = _arg(args, "-q", "--queue"), _arg(args, "-e", "--entity")
    url, key = os.environ["WANDB_BASE_URL"], os.environ["WANDB_API_KEY"]

    def aborted(signum: int, frame: object) -> None:  # what click does on SIGINT
        sys.stderr.write("Aborted!\n")
        sys.stderr.flush()
        os._exit(1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, aborted)
    sys.stderr.write(STATUS.format(queue=queue))
    sys.stderr.flush()
    time.sleep(template.get("pop_after", 0))
    while True:  # like the real agent: poll until an item comes (the watchdog's idle timeout ends it)
        popped = _graphql(url, key, POP, {"queueName": queue, "entity": entity})["popFromRunQueue"]
        if popped:
            break
        time.sleep(0.2)
        sys.stderr.write(STATUS.format(queue=queue))
        sys.stderr.flush()
    item_id = str(popped["runQueueItemId"])
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    if not _graphql(url, key, ACK, {"itemId": item_id, "runId": run_id})["ackRunQueueItem"]["success"]:
        raise SystemExit(f"ackRunQueueItem refused {item_id}")
    acked = time.monotonic()
    chosen = template.get("by_item", {}).get(item_id, template)
    text = json.dumps(chosen).replace(ITEM, item_id)
    time.sleep(template.get("job_after", 0))
    _write(work / "claim.json", json.dumps({"item_id": item_id, "run_id": run_id, "queue": queue, "job": JOB in text}))
    if JOB in text:
        job = work / "job"
        deadline = time.monotonic() + 30
        while not job.exists():
            if time.monotonic() > deadline:
                raise SystemExit("no CustomJob was made for the claim")
            time.sleep(0.01)
        text = text.replace(JOB, job.read_text())
    time.sleep(max(0.0, acked + template.get("play_after", 0) - time.monotonic()))
    script = work / "script.json"
    script.write_text(text)
    os.execv(sys.executable, [sys.executable, str(AGENT), str(script), *args])  # noqa: S606


# -- the behaviour (in the test process) ---------------------------------------------------------


@dataclass
class Run:
    """One execution, as the test saw it."""

    name: str
    work: Path
    needs_job: bool = False
    """Its script reports a CustomJob (known once it claimed)."""
    ended: float | None = None
    """time.monotonic() when the watchdog process had exited."""
    item_id: str | None = None
    job: str | None = None
    left: list[str] = field(default_factory=list)
    """Processes of this execution still alive once its watchdog had exited."""

    @property
    def signal_log(self) -> Path:
        return self.work / "signals.log"

    def signals(self) -> list[tuple[int, float]]:
        """(signal, CLOCK_MONOTONIC seconds) as the agent received them."""
        if not self.signal_log.exists():
            return []
        lines = self.signal_log.read_text().split()
        return [(int(lines[i]), int(lines[i + 1]) / 1e9) for i in range(0, len(lines), 2)]


Script = Callable[[int, Path], dict[str, Any]]
"""The agent's script for the n-th execution (0-based), given its work directory."""


@dataclass
class Watchdogs:
    """Runs every execution as `launch-watchdog` over the scripted agent; remembers each `Run`."""

    wandb: WandbStandIn
    vertex: VertexStandIn
    root: Path
    script: Script
    topic: str
    options: Sequence[str] = ("--grace", "1", "--idle-timeout", "5")
    prefix: Callable[[Path], list[str]] = lambda work: []
    """Put before the watchdog's command line (a mount namespace, say)."""
    env: Mapping[str, str] = field(default_factory=dict)
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    runs: dict[str, Run] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def claimed(self) -> list[Run]:
        return [r for r in self.runs.values() if r.item_id is not None]

    def output(self, run: Run) -> tuple[str, str]:
        """The watchdog's stdout and stderr."""
        out, err = ((self.logs / f"{run.name}.{s}.log").read_text(errors="replace") for s in ("stdout", "stderr"))
        return out, err

    def events(self, run: Run, name: str) -> list[dict[str, Any]]:
        from launch_supervisor.sandbox.summary import watchdog_events

        return [e for e in watchdog_events(self.logs, run.name) if e["event"] == name]

    async def run(self, handle: ExecutionHandle) -> None:
        import anyio

        from launch_supervisor.sandbox.process_launcher import ProcessLauncher

        short = handle.name.rsplit("/", 1)[-1]
        work = self.root / short
        work.mkdir(parents=True)
        template = work / "template.json"
        template.write_text(json.dumps(self.script(len(self.runs), work)))
        run = self.runs[short] = Run(short, work)
        watchdog = shutil.which("launch-watchdog") or "launch-watchdog"
        argv = [
            *self.prefix(work),
            watchdog,
            *self.options,
            "--events-topic",
            self.topic,
            "--",
            sys.executable,
            str(Path(__file__).resolve()),
            str(work),
            str(template),
            *handle.args,
        ]
        env = {
            "WANDB_BASE_URL": self.wandb.base_url,
            "WANDB_API_KEY": self.wandb.api_key,
            "WANDB_DIR": str(work / "wandb-dir"),
            MARK: self.token,
            **self.env,
        }
        launcher = ProcessLauncher(lambda h: argv, env=env, log_dir=self.logs, grace=2.0, homes=self.root / "homes")
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._submit_when_claimed, run)
                try:
                    await launcher.run(handle)
                finally:
                    run.ended = time.monotonic()
                    tg.cancel_scope.cancel()
        finally:
            run.left = marked(self.token, short, work)
            if run.item_id is None and (work / "claim.json").exists():  # claimed just before the end
                run.item_id = json.loads((work / "claim.json").read_text())["item_id"]

    async def _submit_when_claimed(self, run: Run) -> None:
        """Note the item the agent claimed; make its CustomJob if its script reports one."""
        import anyio

        from launch_supervisor.sandbox.simulated import custom_job

        claim = run.work / "claim.json"
        while not claim.exists():
            await anyio.sleep(0.01)
        claimed = json.loads(claim.read_text())
        run.item_id, run.needs_job = claimed["item_id"], claimed["job"]
        if run.needs_job:
            job = self.vertex.create(custom_job(claimed["queue"], claimed["item_id"], claimed["run_id"]))
            run.job = job.name
            _write(run.work / "job", job.name)


@dataclass
class Burst:
    """Items enqueued at once and run through the daemon, as a scenario left them."""

    stack: Stack
    ids: list[str]
    recover: float | None
    """None: it never settled."""
    watchdogs: Watchdogs
    seen: dict[str, tuple[str, str | None, str | None]]
    """Execution → (phase, category, bailout rule), as the daemon has it at the end."""
    why: list[str]
    """For each item left non-terminal: who claimed it, and what the daemon made of it."""


def record_burst(record: Record, done: Burst, scenario: str, note: str, *, check: bool = True) -> Figures:
    """The burst's figures, recorded for the table, then checked (see `harness.record_figures`)."""
    from tests.faults.harness import record_figures

    return record_figures(
        record, done.stack, done.ids, done.recover, area=AREA, scenario=scenario, note=note, check=check
    )


def marked(token: str, execution: str, work: Path) -> list[str]:
    """Living processes of one execution: its marks in their environment, or its work directory
    among their arguments (the pid files of what the agent starts are there). `pid command`."""
    found = []
    mark = f"{MARK}={token}".encode()
    name = f"CLOUD_RUN_EXECUTION={execution}".encode()
    inside = str(work)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
            args = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if (mark in environ and name in environ) or any(a == inside or a.startswith(inside + "/") for a in args):
            found.append(f"{entry.name} {' '.join(args)[:160]}")
    return found


# -- a full filesystem, in a mount namespace of the execution's own -------------------------------

FILL = r"""set -eu
mode=$1 full=$2
shift 2
mount -t tmpfs -o size=64k,nr_inodes=16,mode=1777 launch-watchdog-full "$full"
cat /dev/zero > "$full/blocks" 2>/dev/null || true
i=0
while touch "$full/inode-$i" 2>/dev/null; do i=$((i+1)); done
if touch "$full/probe" 2>/dev/null || mkdir "$full/probe.d" 2>/dev/null; then
  echo "fill: $full is not full" >&2
  exit 99
fi
if [ "$mode" = tmp ]; then
  [ -d /var/tmp ] && mount --bind "$full" /var/tmp
  unset WANDB_DIR TMPDIR TEMP TMP
  cd "$full"
else
  export TMPDIR="$full" WANDB_DIR="$full/wandb-dir"
fi
exec "$@"
"""
"""`sh -c FILL sh MODE FULL COMMAND...`: mount a 64 KiB tmpfs on FULL, fill its blocks and inodes,
then run COMMAND. MODE `dir`: TMPDIR and WANDB_DIR point there. MODE `tmp` (FULL is /tmp): /var/tmp
is the same full filesystem, the working directory too, and WANDB_DIR and TMPDIR are unset, as in
the launcher image, so that no temporary directory is left to fall back to."""


def namespace() -> list[str] | None:
    """How to start a process in a mount namespace of its own where it may mount a tmpfs: as root
    `unshare -m`, else in a user namespace (`unshare -Urm`); None when neither works here."""
    if shutil.which("unshare") is None:
        return None
    candidates = [["unshare", "-m", "--propagation", "private"]] if os.geteuid() == 0 else []
    candidates.append(["unshare", "-Urm", "--propagation", "private"])
    with tempfile.TemporaryDirectory(prefix="namespace-probe-") as probe:  # the mount dies with the probe
        for prefix in candidates:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                test = 'mount -t tmpfs -o size=64k probe "$1" && touch "$1/x"'
                result = subprocess.run(  # noqa: PLW1510 - the exit code is the answer
                    [*prefix, "sh", "-c", test, "sh", probe], capture_output=True, timeout=10
                )
                if result.returncode == 0:
                    return prefix
    return None


if __name__ == "__main__":
    claim_and_play(sys.argv[1:])
