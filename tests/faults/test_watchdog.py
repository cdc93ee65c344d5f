"""launch-watchdog faults, end to end through the daemon: every Cloud Run execution runs the real
watchdog over an agent that misbehaves (ignores the stop signals, leaves processes in sessions of
their own, floods its output, writes binary, finds its disk full). The agent claims its item over
HTTP like the real one (see watchdog_support); the watchdogs publish to the Pub/Sub emulator."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

import launch_watchdog
from launch_supervisor.sandbox.stack import ENTITY, Stack, stand_ins
from launch_supervisor.sandbox.summary import is_terminal, jobs_by_item, settled
from launch_watchdog.runner import PUBLISH_FLUSH_SECONDS
from tests.emulator import Emulator
from tests.faults.harness import Record
from tests.faults.watchdog_support import (
    FILL,
    ITEM,
    JOB,
    MARK,
    Burst,
    Run,
    Script,
    Watchdogs,
    hook_line,
    marked,
    namespace,
    record_burst,
)
from tests.supervisor.daemon.test_events import Bus, make_topic
from tests.supervisor.daemon.test_shell import running
from tests.watchdog import agent_lines

pytestmark = pytest.mark.anyio
GRACE = 1.0
"""The watchdog's --grace: SIGINT, SIGTERM after it, SIGKILL after another."""
SETTINGS = "max_inflight = 3\n[queues.breaker]\nthreshold = 1000"
"""The breaker is not under test here (its own scenarios count bailouts): every item gets to run."""
ONE_AT_A_TIME = SETTINGS.replace("max_inflight = 3", "max_inflight = 1")
"""For bursts that mix bailouts and submissions: with several executions in flight the daemon can
pair a claim wrongly and never fail the item of an agent that bailed out (see
test_bailouts_and_submissions_with_claims_listed_first); one at a time, the pairing is never wrong."""
PAYLOAD = {"err": agent_lines.payload(ITEM)}
FATAL = agent_lines.job_error_traceback("google.api_core.exceptions.ResourceExhausted: 429 Quota exceeded")
SUBMIT = [
    {"log": "debug-cli.root.log", "text": agent_lines.SUBMITTED_LOG.replace(agent_lines.SUBMITTED_RESOURCE, JOB)},
    {"err": hook_line(JOB)},
]
"""The success line, in the CLI log and on stderr (the start-up hook's copy), as the real agent writes it."""
WATCHDOG_FRAMES = f'File "{Path(launch_watchdog.__file__).resolve().parent}'
"""A traceback through the watchdog's own code: it crashed."""


@pytest.fixture
def bus(pubsub_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Bus:
    """A topic the watchdogs publish to and the daemon's subscription, on the session's emulator."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    topic, subscription = make_topic(pubsub_emulator.host, "faults-" + request.node.name.replace("_", "-")[:60])
    return Bus(topic, subscription)


async def burst(
    bus: Bus,
    root: Path,
    script: Script,
    *,
    items: int,
    settings: str = SETTINGS,
    until: Callable[[Stack, Watchdogs, list[str]], Awaitable[float | None]] | None = None,
    ids: list[str] | None = None,
    **options: Any,
) -> Burst:
    """Enqueue `items` at once (their ids also go to `ids`) and run the daemon until they settle,
    or nothing has run for a while without that (or until `until` returns)."""
    made: list[Watchdogs] = []
    ids = [] if ids is None else ids

    def behaviour(w: Any, v: Any) -> Watchdogs:
        made.append(Watchdogs(w, v, root, script, bus.topic, **options))
        return made[0]

    async with stand_ins(["q"], behaviour=behaviour) as stack:
        ids += [stack.wandb.enqueue(ENTITY, "q") for _ in range(items)]
        async with running(bus.config(stack, settings, poll=0.2)) as (daemon, _):
            watchdogs = made[0]
            recover = await (until or settle_all)(stack, watchdogs, ids)
            state = daemon.state.queues["q"]
            bailed = {r.name for r in watchdogs.runs.values() if watchdogs.events(r, "watchdog.bailout")}
            with anyio.move_on_after(15):  # the bailout events may trail the listing that saw the end
                while any(e.phase.value != "bailout" for n, e in state.executions.items() if short(n) in bailed):
                    await anyio.sleep(0.05)
            seen = {short(n): (e.phase.value, e.category, e.bailout_rule) for n, e in state.executions.items()}
            jobs = jobs_by_item(stack)
            why = [lost(stack, watchdogs, state.items.get(i), i) for i in ids if not is_terminal(stack, i, jobs)]
    return Burst(stack, ids, recover, watchdogs, seen, why)


async def settle_all(stack: Stack, watchdogs: Watchdogs, ids: list[str]) -> float | None:
    """The seconds until every item is terminal and no execution runs; None once nothing has run for
    15 s without that (the daemon had every chance to end the items), or after 3 minutes."""
    started = time.monotonic()
    quiet = started
    with anyio.move_on_after(180):
        while not settled(stack, ids):
            now = time.monotonic()
            if any(stack.cloudrun.status(n) in ("pending", "running") for n in stack.cloudrun.executions):
                quiet = now
            elif now - quiet > 15:
                return None
            await anyio.sleep(0.05)
        return time.monotonic() - started
    return None


def lost(stack: Stack, watchdogs: Watchdogs, item: Any, item_id: str) -> str:
    """Why an item is not terminal: W&B's state, the execution that claimed it, and the daemon's view."""
    holder = next((r for r in watchdogs.runs.values() if r.item_id == item_id), None)
    told = "" if holder is None else f" by {holder.name} ({exited_reason(watchdogs, holder)})"
    text = f"item {item_id} {stack.wandb.items[item_id].state}{told}"
    if item is None:
        return text + ", unknown to the daemon"
    mine = {j.name for j in jobs_by_item(stack).get(item_id, [])}
    job = item.vertex_job or "none"
    if item.vertex_job and item.vertex_job not in mine:
        job += " (another item's)"
    return text + f"; the daemon pairs it with {short(item.claimed_by or '-')} and CustomJob {short(job)}"


def exited_reason(watchdogs: Watchdogs, run: Run) -> str:
    found = watchdogs.events(run, "watchdog.exited")
    return found[0]["reason"] if found else "no exit event"


def short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def exited(watchdogs: Watchdogs, run: Run) -> dict[str, Any]:
    """The run's `watchdog.exited` event: there is one unless the watchdog crashed."""
    found = watchdogs.events(run, "watchdog.exited")
    assert len(found) == 1, f"{run.name}: no watchdog.exited\n{watchdogs.output(run)[1][-3000:]}"
    return found[0]


def when(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"]).timestamp()


def clean_exit(watchdogs: Watchdogs) -> None:
    """No watchdog crashed and nothing of any execution outlived it."""
    for run in watchdogs.runs.values():
        assert WATCHDOG_FRAMES not in watchdogs.output(run)[1], f"{run.name}: launch-watchdog crashed"
        assert run.left == [], f"{run.name} left {run.left}"


async def test_an_agent_that_ignores_sigint_and_sigterm(bus: Bus, tmp_path: Path, record: Record) -> None:
    """After a fatal line the agent ignores SIGINT and SIGTERM: the watchdog SIGKILLs it within its grace
    bound, the execution ends, and the daemon fails the item the agent never failed."""

    def script(n: int, work: Path) -> dict[str, Any]:
        return {"steps": [PAYLOAD, {"err": FATAL}], "on_signal": "ignore", "signal_log": str(work / "signals.log")}

    done = await burst(bus, tmp_path, script, items=4)
    runs = done.watchdogs.claimed()
    stops, waits = [], []
    for run in runs:
        sent = run.signals()
        assert [s for s, _ in sent] == [signal.SIGINT, signal.SIGTERM], f"{run.name}: {sent}"
        assert run.ended is not None
        stops.append(run.ended - sent[0][1])
        bailout, end = done.watchdogs.events(run, "watchdog.bailout"), done.watchdogs.events(run, "watchdog.exited")
        waits.append(when(end[0]) - when(bailout[0]) if bailout and end else float("nan"))
    record_burst(
        record,
        done,
        "agent ignores SIGINT and SIGTERM after a fatal line",
        f"SIGKILL 2 graces ({2 * GRACE:g} s) after SIGINT: watchdog.exited ≤ {max(waits):.1f} s after the "
        f"bailout, process gone ≤ {max(stops):.1f} s after SIGINT (the rest is the Pub/Sub flush)",
    )
    assert len(runs) == len(done.ids)
    bound = 2 * GRACE + PUBLISH_FLUSH_SECONDS + 1.0  # SIGKILL after two graces; the last events flushed
    for run, stop in zip(runs, stops, strict=True):
        assert stop <= bound, f"{run.name} ended {stop:.1f} s after SIGINT, beyond the {bound:g} s bound"
        ended = exited(done.watchdogs, run)
        assert (ended["reason"], ended["exit_code"], ended["agent_exit_code"]) == ("bailout", 1, 128 + signal.SIGKILL)
        assert done.seen[run.name][1:] == ("quota", "quota_exceeded")
    for item in (done.stack.wandb.items[i] for i in done.ids):
        assert item.state == "FAILED"
        assert item.failed_by == ["launch-supervisor"]  # once, by the daemon: the agent never failed it
        assert "before it created a Vertex AI job" in item.failures[0][0]
    clean_exit(done.watchdogs)


async def test_an_agent_that_leaves_processes_in_other_sessions(bus: Bus, tmp_path: Path, record: Record) -> None:
    """The agent starts children that ignore SIGINT and SIGTERM in its group, in new sessions holding
    its pipes, and double-forked daemons: once the watchdog exits, no process of the execution is left."""
    probe = subprocess.Popen(  # the scan below must see a marked process in a session of its own
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, MARK: "probe", "CLOUD_RUN_EXECUTION": "probe"},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10  # the probe's environment shows once it has exec'd
        while not marked("probe", "probe", tmp_path / "none") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(marked("probe", "probe", tmp_path / "none")) == 1
    finally:
        probe.kill()
        probe.wait()

    def script(n: int, work: Path) -> dict[str, Any]:
        spawn = [
            {kind: str(work / f"{kind}-{i}.pid")} for kind in ("grandchild", "session_child", "daemon") for i in (1, 2)
        ]
        end = SUBMIT if n % 2 == 0 else [{"err": FATAL}]
        return {"steps": [PAYLOAD, *spawn, {"sleep": 0.5}, *end]}

    done = await burst(bus, tmp_path, script, items=4, settings=ONE_AT_A_TIME)
    runs = done.watchdogs.claimed()
    pids = {run.name: [int(p.read_text()) for p in sorted(run.work.glob("*.pid"))] for run in runs}
    record_burst(
        record,
        done,
        "agent leaves children, new sessions and daemons behind",
        "6 per execution (2 in its group, 2 setsid, 2 double-forked); none left after the watchdog exited",
    )
    assert len(runs) == len(done.ids)
    for run in runs:
        assert len(pids[run.name]) == 6
        assert not [p for p in pids[run.name] if alive(p)]
        assert "the agent left running" in done.watchdogs.output(run)[1]  # the sweep, beyond the group
        reason = exited(done.watchdogs, run)["reason"]
        assert reason == ("submitted" if run.needs_job else "bailout")
    assert {done.stack.wandb.items[i].state for i in done.ids} == {"CLAIMED", "FAILED"}
    clean_exit(done.watchdogs)


FLOOD_LINE = "wandb: launch: pulling layer 3f2a9c0d: shard 000123 of 004096 at 12.3 MiB/s " + "." * 40 + "\n"
FLOOD_LINES = 40_000
"""Of FLOOD_LINE (120 bytes) on each of stderr and stdout: 9.6 MB, plus one line of 1 MiB."""


async def test_an_agent_that_floods_its_output(bus: Bus, tmp_path: Path, record: Record) -> None:
    """Megabytes of lines (and one line of a MiB) before the success or the fatal line: the verdict
    still comes at once, and every item ends."""

    def script(n: int, work: Path) -> dict[str, Any]:
        flood = [
            {"repeat": FLOOD_LINE, "times": FLOOD_LINES, "stream": "err"},
            {"repeat": "x", "times": 1 << 20, "stream": "err"},
            {"err": "\n"},
            {"repeat": FLOOD_LINE, "times": FLOOD_LINES, "stream": "out"},
            {"write": str(work / "flooded"), "text": "done\n"},
        ]
        return {"steps": [PAYLOAD, *flood, *(SUBMIT if n % 2 == 0 else [{"err": FATAL}])]}

    done = await burst(bus, tmp_path, script, items=4, settings=ONE_AT_A_TIME)
    runs = done.watchdogs.claimed()
    size = (2 * FLOOD_LINES * len(FLOOD_LINE) + (1 << 20)) / 1e6
    through, verdicts = [], []
    for run in runs:
        claimed = done.watchdogs.events(run, "watchdog.claimed")[0]
        verdict = done.watchdogs.events(run, "watchdog.submitted" if run.needs_job else "watchdog.bailout")
        assert len(verdict) == 1, f"{run.name}: no verdict"
        flooded = (run.work / "flooded").stat().st_mtime
        through.append(size / max(flooded - when(claimed), 1e-3))
        verdicts.append(when(verdict[0]) - flooded)
    record_burst(
        record,
        done,
        "agent floods its output before the verdict line",
        f"{size:.1f} MB per execution, read at ≥ {min(through):.0f} MB/s; "
        f"verdict ≤ {max(verdicts):.2f} s after the last flood line",
    )
    assert len(runs) == len(done.ids)
    for run in runs:
        out, err = done.watchdogs.output(run)
        assert err.count(FLOOD_LINE) >= FLOOD_LINES  # passed through, every line (a bailout block repeats some)
        assert out.count(FLOOD_LINE) == FLOOD_LINES
        assert "[... line truncated by launch-watchdog]" in err
        if not run.needs_job:
            assert done.seen[run.name][1] == "quota"
    clean_exit(done.watchdogs)


JUNK = b"\x00\x00\xff\xfe binary \xc3\x28 \xed\xa0\x80 \x1b[31m\x00 \xf0\x9f\x98\n"
FATAL_BYTES = FATAL.replace("ResourceExhausted", "\x00\x01ResourceExhausted").encode().replace(b"429", b"429 \xff\xfe")


async def test_an_agent_that_writes_binary(bus: Bus, tmp_path: Path, record: Record) -> None:
    """Invalid UTF-8, NULs, escapes and a character split across writes, around a fatal line that has
    them too: the watchdog does not crash and reports the right category."""

    def script(n: int, work: Path) -> dict[str, Any]:
        binary = [
            {"out_bytes": (JUNK * 200).hex()},
            {"err_bytes": JUNK.hex()},
            {"err_bytes": "e282"},  # the first bytes of a €, the rest in a later read
            {"sleep": 0.1},
            {"err_bytes": "ac2073706c69740a"},
            {"err_bytes": FATAL_BYTES.hex()},
            {"out_bytes": (b"\xff" * 5000).hex()},  # no newline: the end of the stream ends it
        ]
        return {"steps": [PAYLOAD, *binary]}

    done = await burst(bus, tmp_path, script, items=4)
    runs = done.watchdogs.claimed()
    record_burst(
        record,
        done,
        "agent writes binary (invalid UTF-8, NULs) around a fatal line",
        "category quota from the watchdog and in the daemon, each time",
    )
    assert len(runs) == len(done.ids)
    for run in runs:
        bailout = done.watchdogs.events(run, "watchdog.bailout")
        assert [(b["category"], b["rule"]) for b in bailout] == [("quota", "quota_exceeded")]
        assert exited(done.watchdogs, run)["reason"] == "bailout"
        assert done.seen[run.name] == ("bailout", "quota", "quota_exceeded")
        assert "€ split" in done.watchdogs.output(run)[1]
    assert {done.stack.wandb.items[i].state for i in done.ids} == {"FAILED"}
    clean_exit(done.watchdogs)


@pytest.fixture
def unshare() -> list[str]:
    """How to give an execution a mount namespace of its own (to mount a small full tmpfs in it)."""
    prefix = namespace()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs in a mount namespace here (neither `unshare -m` as root nor `unshare -Urm`)")
    return prefix


async def test_tmpdir_and_wandb_dir_on_a_full_filesystem(
    bus: Bus, tmp_path: Path, unshare: list[str], record: Record
) -> None:
    """TMPDIR and WANDB_DIR on a full tmpfs: the watchdog cannot make the agent's log directory, says
    so and runs the agent; the success line still comes on stderr, and an agent that dies of ENOSPC
    is a `crash` bailout whose item the daemon fails."""

    def full(work: Path) -> list[str]:
        (work / "full").mkdir()
        return [*unshare, "--", "sh", "-c", FILL, "sh", "dir", str(work / "full")]

    def script(n: int, work: Path) -> dict[str, Any]:
        if n % 2 == 0:
            return {"steps": [PAYLOAD, {"err": hook_line(JOB)}]}
        return {"steps": [PAYLOAD, {"log": "debug-cli.root.log", "text": "writing the CLI log\n"}]}

    done = await burst(bus, tmp_path, script, items=4, settings=ONE_AT_A_TIME, prefix=full)
    runs = done.watchdogs.claimed()
    record_burst(
        record,
        done,
        "TMPDIR and WANDB_DIR on a full filesystem",
        "64 KiB tmpfs, blocks and inodes full; success seen on stderr; ENOSPC in the agent is a crash bailout",
    )
    assert len(runs) == len(done.ids)
    for run in runs:
        err = done.watchdogs.output(run)[1]
        assert "cannot create" in err
        assert "No space left on device" in err
        reason = exited(done.watchdogs, run)["reason"]
        if run.needs_job:
            assert reason == "submitted"
        else:  # the traceback may be read before or after the agent's exit is noticed
            assert reason in ("bailout", "agent_exited")
            assert done.seen[run.name][1:] == ("crash", "unhandled_exception")
    clean_exit(done.watchdogs)


@contextlib.contextmanager
def off_tmp() -> Iterator[Path]:
    """A work directory not under /tmp (which the executions' namespaces cover with a full tmpfs)."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm for a work directory outside /tmp")
    needed = [Path(sys.executable).resolve(), Path(__file__).resolve(), Path(shutil.which("launch-watchdog") or "/")]
    if any(p.is_relative_to("/tmp") for p in needed):
        pytest.skip(f"the interpreter or the code is under /tmp, which the full tmpfs hides: {needed}")
    root = Path(tempfile.mkdtemp(prefix="watchdog-faults-", dir=shm))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_a_full_tmp(bus: Bus, unshare: list[str], record: Record) -> None:
    """/tmp full (and /var/tmp and the working directory, one in-memory filesystem as on Cloud Run),
    WANDB_DIR unset as in the launcher image: the watchdog still runs the agent, which submits."""

    def script(n: int, work: Path) -> dict[str, Any]:
        return {"steps": [PAYLOAD, {"err": hook_line(JOB)}]}

    async def until(stack: Stack, watchdogs: Watchdogs, ids: list[str]) -> float | None:
        """Settled, or every item offered to two executions that ended without settling it."""
        started = time.monotonic()
        with anyio.move_on_after(60):
            while not settled(stack, ids):
                if sum(1 for r in watchdogs.runs.values() if r.ended is not None) >= 2 * len(ids):
                    return None
                await anyio.sleep(0.05)
            return time.monotonic() - started
        return None

    with off_tmp() as root:
        done = await burst(
            bus,
            root,
            script,
            items=3,
            until=until,
            prefix=lambda work: [*unshare, "--", "sh", "-c", FILL, "sh", "tmp", "/tmp"],
        )
        runs = list(done.watchdogs.runs.values())
        crashed = [r for r in runs if "Traceback" in done.watchdogs.output(r)[1]]
        reported = [r for r in runs if "cannot make a WANDB_DIR" in done.watchdogs.output(r)[1]]
        note = "WANDB_DIR unset; /tmp, /var/tmp and the working directory on one full 64 KiB tmpfs"
        if crashed:
            note = (
                f"FAILS: launch-watchdog crashed before starting the agent in {len(crashed)} of {len(runs)} "
                "executions, so no item was ever claimed"
            )
        record_burst(record, done, "a full /tmp, WANDB_DIR unset", note)
        assert (crashed, len(reported)) == ([], len(runs))  # said once per execution, and carried on
        for run in runs:
            assert exited(done.watchdogs, run)["reason"] in ("submitted", "idle")
        clean_exit(done.watchdogs)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_bailouts_and_submissions_with_claims_listed_first(bus: Bus, tmp_path: Path, record: Record) -> None:
    """Three executions at once; the youngest claims first and the oldest last, and each watchdog's
    `claimed` event comes after the listings showed its claim and its CustomJob (slow events): the
    daemon first pairs by counting, wrongly, then learns the truth. The agent that bails out still
    has its item failed."""
    ids: list[str] = []

    def script(n: int, work: Path) -> dict[str, Any]:
        ends = [SUBMIT, SUBMIT, [{"err": FATAL}]]  # by the item claimed: the last one enqueued fails
        by_item = {item: {"steps": [PAYLOAD, *end]} for item, end in zip(ids, ends, strict=True)}
        # The item listing (every 0.2 s) sees each claim, then the Vertex listing (every 0.3 s) the
        # CustomJob, a second later; the claimed event comes 1.5 s after that.
        return {"pop_after": (2 - n) * 1.5, "job_after": 1.0, "play_after": 2.5, "by_item": by_item}

    done = await burst(bus, tmp_path, script, items=3, ids=ids, options=("--grace", "1", "--idle-timeout", "30"))
    runs = list(done.watchdogs.runs.values())
    fig = record_burst(
        record,
        done,
        "bailouts and submissions at once, claims listed before the events",
        (
            "FAILS: the daemon keeps a CustomJob it linked by inference when the claimed event corrects the "
            "pairing, so it never fails the item of the agent that bailed out: " + "; ".join(done.why)
            if done.why
            else "pairings inferred wrongly, then corrected by the events"
        ),
        check=False,  # the arrangement first: when it did not happen, the figures say little
    )
    assert [r.item_id for r in runs[:3]] == ids[::-1]  # as arranged: the oldest execution claimed last
    fig.check()
    failed = done.stack.wandb.items[ids[2]]
    assert (failed.state, failed.failed_by) == ("FAILED", ["launch-supervisor"])
    clean_exit(done.watchdogs)
