"""Faults of the daemon itself, run as a real process (`launch-supervisor run --config FILE`) against the
stand-ins: SIGKILL mid-burst and a restart, SIGTERM during a dispatch, SIGHUP with a broken config, its
log on a full disk, and the wall clock jumping."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from launch_supervisor.daemon.shell import DRAIN_SECONDS
from launch_supervisor.sandbox.faults import Fault
from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher
from launch_supervisor.sandbox.stack import ENTITY, Stack, stand_ins
from launch_supervisor.sandbox.summary import settled
from tests.faults.daemon_support import (
    after,
    answers_ready,
    bare_daemon,
    faketime_env,
    faketime_library,
    logged,
    remove_faketime_shm,
    settle_within,
    supervised,
    write_config,
)
from tests.faults.harness import Figures, Record, figures, record_figures, settle, wait

pytestmark = pytest.mark.anyio
AREA = "Daemon"

SEEDS = tuple(int(s) for s in os.environ.get("FAULTS_KILL_SEEDS", "").split(",") if s) or tuple(range(1, 21))
"""One trial per seed; FAULTS_KILL_SEEDS=7,12 runs only those (to replay a failing one)."""
AT_ONCE = 3
"""Trials run side by side, each with its own stand-ins and daemon: 20 one after the other is minutes."""
KILL_SETTINGS = "max_inflight = 3\nstranded_after = 2\nbreaker = { threshold = 1000 }"
"""`stopped` items are failed as stranded (without Pub/Sub nothing else names them), 2 s after they are
seen CLAIMED; the breaker is kept shut, or the mix of bailouts would open it and hold the burst."""


def planned(outcomes: list[str]) -> Callable[[Any, Any], SimulatedLauncher]:
    """A launcher whose n-th claiming execution follows outcomes[n] (then `submit`)."""

    def make(w: Any, v: Any) -> SimulatedLauncher:
        return SimulatedLauncher(
            w, v, plan=lambda n: Plan(outcome=outcomes[n] if n < len(outcomes) else "submit", category="crash")
        )

    return make


@dataclass(frozen=True)
class Trial:
    seed: int
    figures: Figures
    mid_burst: bool
    """Some item was not terminal yet when the daemon was killed."""
    restarts: int
    unheard: int
    """Executions the killed daemon created but never heard of (its RunJob's answer was pending)."""
    error: str = ""
    """What went wrong in the trial itself (a wait that timed out, a restart that did not answer)."""


async def kill_trial(seed: int, work: Path) -> Trial:
    """One burst with a random mix of outcomes; SIGKILL at a random RunJob of it (some answered late)
    plus up to 0.25 s, never after the burst's last RunJob; the unit restarts the daemon; every item
    must end once."""
    rng = random.Random(seed)  # noqa: S311  (a replayable mix, not a secret)
    n = rng.randint(4, 7)
    outcomes = ["bailout", "stopped", *rng.choices(("submit", "bailout", "stopped"), weights=(4, 1, 1), k=n - 2)]
    rng.shuffle(outcomes)
    ids: list[str] = []
    recover: float | None = None
    mid_burst, restarts, error = False, 0, ""
    async with stand_ins(["q"], behaviour=planned(outcomes)) as stack:
        stack.wandb.known_queues.add("q")
        for _ in range(2 * n):  # some RunJobs create their execution, then answer up to 0.5 s late
            late = rng.random() < 0.3
            stack.cloudrun.faults.add("RunJob", Fault(delay=rng.uniform(0.05, 0.5), late=True) if late else Fault())
        at_runjob, then = rng.randint(0, n), rng.uniform(0.0, 0.25)
        runjobs = stack.cloudrun.faults.calls
        try:
            async with supervised(stack, work, KILL_SETTINGS) as daemon:
                ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(n)]
                await wait(lambda: runjobs["RunJob"] >= at_runjob, timeout=60)
                with anyio.move_on_after(then):  # the last RunJob comes before its item can end
                    await wait(lambda: runjobs["RunJob"] >= n, timeout=60)
                mid_burst = not settled(stack, ids)
                killed = daemon.process
                killed.send_signal(signal.SIGKILL)
                at = time.monotonic()
                await daemon.restarted(killed)
                settled_in = await settle_within(stack, ids, timeout=60)
                recover = None if settled_in is None else time.monotonic() - at
                restarts = daemon.unit.restarts
        except* Exception as raised:  # noqa: BLE001  (reported with the trial's seed, and fails the test)
            error = "; ".join(f"{type(e).__name__}: {e}" for e in leaves(raised))
    heard = {line["execution"] for line in logged(work / "daemon.log", "dispatch.started")}
    fig = figures(stack, ids, recover, area=AREA, scenario=f"seed {seed}")
    return Trial(seed, fig, mid_burst, restarts, len(set(stack.cloudrun.executions) - heard), error)


def leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    found: list[Exception] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def combined(trials: list[Trial], scenario: str, note: str) -> Figures:
    """One row for all trials: counts added up, the worst item and the slowest recovery."""
    rows = [t.figures for t in trials]
    recovered = [r.recover_s for r in rows]
    return Figures(
        scenario=scenario,
        area=AREA,
        items=sum(r.items for r in rows),
        terminal=sum(r.terminal for r in rows),
        executions=sum(r.executions for r in rows),
        max_executions_per_item=max(r.max_executions_per_item for r in rows),
        max_jobs_per_item=max(r.max_jobs_per_item for r in rows),
        duplicates=sum(r.duplicates for r in rows),
        lost=sum(r.lost for r in rows),
        recover_s=None if None in recovered else max(r for r in recovered if r is not None),
        note=note,
    )


async def test_sigkill_at_random_points_of_a_burst_then_a_restart(record: Record, tmp_path: Path) -> None:
    """SIGKILL at a random point of a burst, then the unit's restart, once per seed: no item lost or doubled."""
    trials: list[Trial] = []
    limiter = anyio.CapacityLimiter(AT_ONCE)

    async def run(seed: int) -> None:
        async with limiter:
            trials.append(await kill_trial(seed, tmp_path / f"seed-{seed}"))

    async with anyio.create_task_group() as tg:
        for seed in SEEDS:
            tg.start_soon(run, seed)
    trials.sort(key=lambda t: t.seed)
    bad = [t for t in trials if t.error or t.figures.lost or t.figures.duplicates]
    unheard = sum(t.unheard for t in trials)
    note = (
        f"{len(trials)} trials, seeds {SEEDS[0]}-{SEEDS[-1]} (FAULTS_KILL_SEEDS=N replays one): killed at a random"
        f" RunJob of the burst + 0-0.25 s, plans submit/bailout/stopped; {unheard} executions the killed daemon"
        " never heard of; recover s: worst trial, from the kill (the 1 s restart delay included)"
    )
    if bad:
        note += "; FAILS in seeds " + ", ".join(str(t.seed) for t in bad)
    fig = combined(trials, f"SIGKILL at a random point of a burst, then a restart ({len(trials)} trials)", note)
    record(fig)
    assert not bad, "\n".join(f"seed {t.seed}: {t.error or t.figures} ({tmp_path}/seed-{t.seed})" for t in bad)
    fig.check()
    assert fig.max_executions_per_item == 1
    assert all(t.restarts == 1 for t in trials)
    assert all(t.mid_burst for t in trials), [t.seed for t in trials if not t.mid_burst]


async def test_sigterm_during_a_dispatch_drains_and_a_restart_doubles_nothing(record: Record, tmp_path: Path) -> None:
    """SIGTERM while RunJob is slow: the daemon takes in the answer, exits 0 within its drain bound, and
    the daemon started after it dispatches every other item once, the drained one not again."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.known_queues.add("q")
        stack.cloudrun.faults.add("RunJob", Fault(delay=1.0))  # answered within the 2 s deadline
        async with supervised(stack, tmp_path / "first", "max_inflight = 2") as first:
            ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(4)]
            await wait(lambda: stack.cloudrun.faults.calls["RunJob"] >= 1)
            first.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            with anyio.fail_after(DRAIN_SECONDS + 30):
                code = await first.process.wait()
            drained = len(stack.cloudrun.executions)
        async with supervised(stack, tmp_path / "second", "max_inflight = 2") as second:
            await settle(stack, ids)
            recover = time.monotonic() - signalled
    fig = record_figures(
        record, stack, ids, recover, area=AREA, scenario="SIGTERM during a slow RunJob: drain, exit 0, restart"
    )
    assert code == 0
    assert any("clean stop" in said for said in first.said)  # the unit does not restart it
    assert logged(first.log, "supervisor.stopped")
    assert not logged(first.log, "supervisor.drain_timeout")  # drained within DRAIN_SECONDS
    assert len(after(first.log, "supervisor.stopping", "dispatch.started")) == 1  # the answer, taken in
    assert drained == 1  # and nothing started after the signal
    assert fig.max_executions_per_item == 1
    assert fig.executions == len(ids)  # the restart started one per other item, none for the drained one
    assert len(logged(second.log, "dispatch.started")) == len(ids) - 1


async def test_sighup_with_an_invalid_config_keeps_the_old_one(record: Record, tmp_path: Path) -> None:
    """SIGHUP after a broken config (bad TOML, then a bad value) was written over the file: each reload
    is rejected and logged, the daemon goes on with the config it has, and the burst completes."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.known_queues.add("q")
        async with supervised(stack, tmp_path, "max_inflight = 2") as daemon:
            good = daemon.config.read_text()
            ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(3)]
            await wait(lambda: len(stack.cloudrun.executions) >= 1)
            await daemon.reload("[wandb\nentity = ", answer="config.reload_rejected")  # cut short mid-write
            await daemon.reload(good.replace("max_inflight = 2", "max_inflight = 0"), answer="config.reload_rejected")
            rejected = time.monotonic()
            ids += [stack.wandb.enqueue(ENTITY, "q") for _ in range(3)]
            await settle(stack, ids)
            recover = time.monotonic() - rejected
            await daemon.reload(good, answer="config.reloaded")  # and a good one is still taken
            running = daemon.process.returncode is None
    record_figures(
        record, stack, ids, recover, area=AREA, scenario="SIGHUP with an invalid config written over the file"
    )
    assert running
    assert daemon.unit.restarts == 0
    problems = [line["problems"] for line in logged(daemon.log, "config.reload_rejected")]
    assert problems[0][0].startswith("not valid TOML")
    assert any("max_inflight" in p for p in problems[1])
    assert len(after(daemon.log, "config.reload_rejected", "dispatch.started")) >= 3  # dispatching went on


async def test_its_log_on_a_full_disk(record: Record, tmp_path: Path) -> None:
    """Its stdout and stderr, where it logs, on /dev/full (every write fails with ENOSPC): it must go on
    dispatching, without its log."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.known_queues.add("q")
        config = tmp_path / "config.toml"
        url = write_config(stack, config, "max_inflight = 2")
        async with bare_daemon(stack, config, Path("/dev/full")) as daemon:
            ready = await answers_ready(url, daemon)
            ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(6)]
            started = time.monotonic()
            settled_in = await settle_within(stack, ids, 30, give_up=lambda: daemon.returncode is not None)
            recover = None if settled_in is None else time.monotonic() - started
            code = daemon.returncode
    note = ""
    if code is not None:
        what = "before it was ready" if not ready else f"after {len(stack.cloudrun.executions)} dispatches"
        note = (
            f"FAILS: the daemon exited with {code} {what}: a log write that fails (OSError ENOSPC from structlog's"
            " PrintLogger) is not caught, so a full log disk stops all dispatching"
        )
    record_figures(
        record, stack, ids, recover, area=AREA, scenario="its log (stderr) on a full disk (/dev/full)", note=note
    )
    assert code is None, note


CLOCK_SCENARIO = "the wall clock jumps 2 h forward, then back, mid-burst (libfaketime)"


async def test_the_wall_clock_jumps_forward_then_back(record: Record, tmp_path: Path) -> None:
    """Under libfaketime, the daemon's wall clock jumps 2 h forward mid-burst, then back to the true
    time (its monotonic clock untouched, as in an NTP step): every item still runs once."""
    library = faketime_library()
    if library is None:
        missing = "libfaketime is not installed (Debian package `faketime`: apt-get install -y faketime)"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    offsets = tmp_path / "faketime.rc"
    offsets.write_text("+0\n")
    async with stand_ins(["q"]) as stack:
        stack.wandb.known_queues.add("q")
        env = faketime_env(library, offsets)
        async with supervised(stack, tmp_path, "max_inflight = 2", env=env, level="debug") as daemon:
            pid = daemon.process.pid
            ids = [stack.wandb.enqueue(ENTITY, "q") for _ in range(8)]
            await wait(lambda: len(stack.cloudrun.executions) >= 2)
            offsets.write_text("+2h\n")
            with anyio.move_on_after(10):  # dispatching may stop: the jump back comes all the same
                await wait(lambda: len(stack.cloudrun.executions) >= 5, timeout=60)
            offsets.write_text("+0\n")
            back = time.monotonic()
            settled_in = await settle_within(stack, ids, 20)  # a hold of hours shows within seconds
            recover = None if settled_in is None else time.monotonic() - back
    remove_faketime_shm(pid)
    fig = record_figures(
        record, stack, ids, recover, area=AREA, scenario=CLOCK_SCENARIO, note=clock_note(stack, ids, daemon.log)
    )
    assert fig.max_executions_per_item == 1


def clock_note(stack: Stack, ids: list[str], log: Path) -> str:
    """Why the jumps did what they did, from the daemon's log: executions that succeeded yet were counted
    as bailouts, the breaker, and what held dispatching at the end."""
    ended = {line["execution"]: line["outcome"] for line in logged(log, "execution.finished")}
    succeeded = [n for n in stack.cloudrun.executions if stack.cloudrun.status(n) == "succeeded"]
    miscounted = [n for n in succeeded if ended.get(n) in ("timeout", "failed")]
    opened = logged(log, "breaker.opened")
    pending = sum(1 for i in ids if stack.wandb.items[i].state == "PENDING")
    decisions = logged(log, "dispatch.decision")
    parts = []
    if miscounted:
        parts.append(
            f"{len(miscounted)} executions that succeeded were counted as bailouts: after the jump forward,"
            " ListExecutions' horizon (now - retention.finished_seconds) hides every execution that ends, so each"
            " one vanishes"
        )
    if opened:
        parts.append(f"the breaker opened ({opened[0]['reason']})")
    if pending:
        why = decisions[-1]["why"] if decisions else "unknown"
        parts.append(
            f"{pending} items left PENDING, dispatch held (why={why}): times taken while the clock was ahead"
            " stay in the future after the jump back, for 2 h"
        )
    return ("FAILS: " if pending else "") + "; ".join(parts)
