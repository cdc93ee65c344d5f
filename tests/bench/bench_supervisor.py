"""launch-supervisor benchmarks; each figure with a baseline measured in the same run.

    python3 tests/bench/bench_supervisor.py

1. Reconcile cost per tick at 10, 100 and 1,000 executions in flight: CPU of one tick of the model
   (observe the listing, settle, decide, prune), and API calls per tick of a live daemon against
   the stand-ins. Baseline: the 10-execution figures.
2. Memory after 10,000 items have gone through (dispatched, claimed, submitted, finished), the
   state and metrics paths the daemon uses, as RSS growth. Baseline: RSS before.
3. Start to ready: `launch-supervisor run` until /readyz answers 200, against the stand-ins.
   Baseline: `launch-supervisor --version` (interpreter start and imports).
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # for `tests`, after site-packages: the folders never shadow

from launch_supervisor.daemon.shell import Daemon  # noqa: E402
from launch_supervisor.logs import configure  # noqa: E402
from launch_supervisor.model.items import ItemState  # noqa: E402
from launch_supervisor.model.observations import ExecutionSeen, ItemSeen  # noqa: E402
from launch_supervisor.model.policy import QueuePolicy  # noqa: E402
from launch_supervisor.model.queue import QueueState  # noqa: E402
from launch_supervisor.model.retention import prune  # noqa: E402
from launch_supervisor.sandbox.cloudrun_server import ExecutionHandle  # noqa: E402
from launch_supervisor.sandbox.stack import ENTITY, launcher_job, stand_ins  # noqa: E402
from launch_supervisor.surface.metrics import Metrics  # noqa: E402
from launch_supervisor.surface.report import report  # noqa: E402

JOB = "projects/p/locations/r/jobs/launcher"


def policy(max_inflight: int = 10_000) -> QueuePolicy:
    return QueuePolicy("q", "e", JOB, max_inflight, 100_000, 180.0, 1800.0, 3, 600.0, 60.0, 1800.0, 3600.0, 1000)


def model_tick_cpu(n: int, ticks: int = 50) -> float:
    """CPU seconds of one tick with n executions in flight."""
    state = QueueState(policy())
    now = time.time()
    for i in range(n):
        state.dispatched(f"{JOB}/executions/x{i}", now)
    seen = [ExecutionSeen(f"{JOB}/executions/x{i}", "running", now, now, None) for i in range(n)]
    items = [ItemSeen(f"i{i}", ItemState.CLAIMED, f"r{i}") for i in range(min(n, 100))]
    state.observe_items(items, now)
    start = time.process_time()
    for tick in range(ticks):
        t = now + tick
        state.observe_executions(seen, t)
        state.settle(t)
        state.decide(t)
        prune(state, t)
    return (time.process_time() - start) / ticks


class Hold:
    """A launcher behaviour that stays running, so executions stay in flight."""

    async def run(self, handle: ExecutionHandle) -> None:
        handle.running()
        await anyio.sleep_forever()


async def live_calls_per_tick(n: int, seconds: float = 3.0) -> dict[str, float]:
    """API calls per loop tick of a daemon with n executions in flight."""
    async with stand_ins(["q"], behaviour=lambda w, v: Hold()) as stack:
        stack.wandb.known_queues.add("q")
        config = stack.config(f"max_inflight = {n + 10}")
        from launch_supervisor.clients import build_clients

        clients = build_clients(config)
        for i in range(n):
            await clients.dispatcher.run(launcher_job("q"), "q", ENTITY, f"seed{i}", 3600)
        await clients.aclose()
        calls_before = dict(stack.cloudrun.faults.calls)
        daemon = Daemon(config)
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            wandb0 = stack.wandb.faults.calls["GetRunQueueItems"]
            list0 = stack.cloudrun.faults.calls["ListExecutions"]
            vertex0 = stack.vertex.faults.calls["ListCustomJobs"]
            await anyio.sleep(seconds)
            poll = config.poll
            ticks = {
                "queue": seconds / poll.queue_interval,
                "executions": seconds / poll.executions_interval,
                "vertex": seconds / poll.vertex_interval,
            }
            result = {
                "GetRunQueueItems per queue tick": (stack.wandb.faults.calls["GetRunQueueItems"] - wandb0)
                / ticks["queue"],
                "ListExecutions per executions tick": (stack.cloudrun.faults.calls["ListExecutions"] - list0)
                / ticks["executions"],
                "ListCustomJobs per vertex tick": (stack.vertex.faults.calls["ListCustomJobs"] - vertex0)
                / ticks["vertex"],
                "RunJob while steady": stack.cloudrun.faults.calls["RunJob"] - calls_before.get("RunJob", 0),
                "adopted": sum(1 for e in daemon.state.queues["q"].executions.values() if e.recovered),
            }
            daemon.stop("bench")
        return result


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory_after(items: int) -> float:
    """RSS growth (MB) after `items` go through the state and metrics paths."""
    gc.collect()
    before = rss_mb()
    state = QueueState(policy(max_inflight=50))
    metrics = Metrics("bench")
    metrics.add_queue("q")
    state.observe_executions([], 0.0)
    now = time.time()
    for i in range(items):
        t = now + i
        item = ItemSeen(f"item-{i:06d}", ItemState.PENDING, None)
        state.observe_items([item], t)
        name = f"{JOB}/executions/launcher-{i:06d}"
        state.dispatched(name, t)
        report(metrics, state.observe_items([ItemSeen(item.id, ItemState.CLAIMED, f"run-{i}")], t + 0.5))
        report(metrics, state.observe_executions([ExecutionSeen(name, "succeeded", t, t, t + 1)], t + 1))
        prune(state, t + 1)
    gc.collect()
    assert len(state.executions) <= 1000
    return rss_mb() - before


def start_to_ready() -> tuple[float, float]:
    async def measure() -> tuple[float, float]:
        async with stand_ins(["q"]) as stack:
            stack.wandb.known_queues.add("q")
            with tempfile.TemporaryDirectory() as tmp:
                config = Path(tmp) / "config.toml"
                config.write_text(stack.config_toml().replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:19464"'))
                env = {**os.environ, "WANDB_API_KEY": stack.api_key, "NO_GCE_CHECK": "true"}
                started = time.monotonic()
                await anyio.run_process(["launch-supervisor", "--version"])
                version = time.monotonic() - started
                started = time.monotonic()
                log = Path(tmp) / "daemon.log"
                with log.open("wb") as err:
                    process = await anyio.open_process(
                        ["launch-supervisor", "run", "--config", str(config)], env=env, stderr=err
                    )
                try:
                    async with httpx.AsyncClient() as client:
                        with anyio.fail_after(30):
                            while True:
                                try:
                                    if (await client.get("http://127.0.0.1:19464/readyz")).status_code == 200:
                                        break
                                except httpx.HTTPError:
                                    pass
                                await anyio.sleep(0.01)
                except TimeoutError:
                    process.kill()
                    await process.wait()
                    raise SystemExit(f"the daemon did not become ready:\n{log.read_text()[-3000:]}") from None
                ready = time.monotonic() - started
                process.terminate()
                await process.wait()
                return ready, version

    return anyio.run(measure)


def main() -> None:
    configure("console", "error")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    base_cpu = model_tick_cpu(10)
    for n in (10, 100, 1000):
        cpu = model_tick_cpu(n)
        print(f"model tick at {n:>5} in flight: {cpu * 1e3:.3f} ms CPU  (x{cpu / base_cpu:.1f} of 10)")
    base_calls = None
    for n in (10, 100, 1000):
        calls = anyio.run(live_calls_per_tick, n)
        base_calls = base_calls or calls
        shown = ", ".join(f"{k} {v:.2f}" for k, v in calls.items())
        per_tick = calls["ListExecutions per executions tick"] / base_calls["ListExecutions per executions tick"]
        print(f"live daemon at {n:>5} in flight: {shown}  (ListExecutions x{per_tick:.2f} of 10)")
    grown = memory_after(10_000)
    print(f"RSS growth after 10,000 items: {grown:+.1f} MB (goal: <= +20 MB)")
    ready, version = start_to_ready()
    print(f"start to ready: {ready:.2f} s; --version: {version:.2f} s; ratio {ready / version:.1f}x (goal: <= 3 s)")


if __name__ == "__main__":
    main()
