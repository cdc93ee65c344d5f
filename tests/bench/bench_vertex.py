"""Vertex AI at production size, and floods of hints; each figure with a baseline from the same run.

    python3 tests/bench/bench_vertex.py [--seconds 30] [--sizes 100,1000,10000]

0. The parse of one CustomJob, agent-shaped (labels, 16 env variables): proto-plus field access,
   as the tracker read each job before, against `parse_job` on the raw protobuf message.
1. The Vertex loop as CustomJobs accumulate: the real daemon (`launch-supervisor run`, a process of
   its own, so its CPU is its own) against the stand-ins, the Vertex stand-in preloaded with 100,
   1,000 and 10,000 ended CustomJobs shaped like the agent's and 5 live ones. `vertex_interval` is
   1 s (15x the default's rate, so a short run holds many ticks). For each size: the daemon's CPU per
   minute, ListCustomJobs/GetCustomJob calls per tick, start to ready and start to the first Vertex
   listing. "before" lists the whole lookback at every tick (`vertex_full_interval` below the
   interval: what every tick did before); "after" is the default. Baseline: the 100-job figure of
   the same mode. Goals: after, CPU at 10,000 at most 1.5x the figure at 100; calls per tick at most
   2 plus the jobs that ended since the last tick (none end here); start to ready at most 5 s
   (baseline: `launch-supervisor --version`, the interpreter and its imports).
2. 100 hints a second for 10 s to each of the queue, executions and Vertex loops of a daemon (in
   this process, messages handed to it as the Pub/Sub consumer does), counting each loop's listings.
   Baseline: the same 10 s without hints. Goal: at most 10 / min_gap + 1 listings per loop.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
from google.cloud import aiplatform_v1

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # for `tests`, after site-packages: the folders never shadow

from launch_supervisor.config import parse_config  # noqa: E402
from launch_supervisor.daemon.shell import Daemon  # noqa: E402
from launch_supervisor.engines.trackers.vertex import LIVE_FILTER, parse_job  # noqa: E402
from launch_supervisor.logs import configure  # noqa: E402
from launch_supervisor.model.events import item_added  # noqa: E402
from launch_supervisor.sandbox.simulated import agent_job, custom_job  # noqa: E402
from launch_supervisor.sandbox.stack import ENTITY, Stack, stand_ins  # noqa: E402

LIVE = 5
FIXTURES = ROOT / "tests" / "supervisor" / "model" / "logentries"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def parse_cost(jobs: int = 1000) -> tuple[float, float]:
    """CPU seconds per job: proto-plus access of the fields the tracker reads, and parse_job."""
    response = aiplatform_v1.ListCustomJobsResponse(
        custom_jobs=[agent_job("q", f"item-{n}", f"run-{n}", ENTITY) for n in range(jobs)]
    )
    wire = aiplatform_v1.ListCustomJobsResponse.serialize(response)

    def proto_plus() -> None:
        for job in aiplatform_v1.ListCustomJobsResponse.deserialize(wire).custom_jobs:
            env = {e.name: e.value for pool in job.job_spec.worker_pool_specs for e in pool.container_spec.env}
            (job.name, job.labels.get("wandb-run-id"), aiplatform_v1.JobState(job.state).name)
            (job.create_time, job.end_time, job.error.message, env.get("WANDB_LAUNCH_TRACE_ID"))

    def raw() -> None:
        page = aiplatform_v1.ListCustomJobsResponse.deserialize(wire)
        for job in aiplatform_v1.ListCustomJobsResponse.pb(page).custom_jobs:
            parse_job(job)

    costs = []
    for body in (proto_plus, raw):
        started = time.process_time()
        for _ in range(3):
            body()
        costs.append((time.process_time() - started) / 3 / jobs)
    return costs[0], costs[1]


async def version_seconds() -> float:
    started = time.monotonic()
    await anyio.run_process(["launch-supervisor", "--version"])
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return int(free.getsockname()[1])


def preload(stack: Stack, ended: int) -> None:
    stack.vertex.preload(agent_job("q", f"old-item-{n}", f"old-run-{n}", ENTITY) for n in range(ended))
    for n in range(LIVE):
        stack.vertex.create(
            custom_job("q", f"live-item-{n}", f"live-run-{n}", entity=ENTITY, args=["--sandbox-run-for=86400"])
        )


async def vertex_tick(ended: int, full_interval: float, seconds: float) -> dict[str, float]:
    """One daemon process over `ended` ended jobs and LIVE live ones."""
    async with stand_ins(["q"]) as stack:
        stack.wandb.known_queues.add("q")
        preload(stack, ended)
        port = free_port()
        poll = f"vertex_interval = 1\nvertex_full_interval = {full_interval}\njitter = 0"
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.toml"
            config.write_text(stack.config_toml(poll=poll, listen=f"127.0.0.1:{port}"))
            env = {**os.environ, "WANDB_API_KEY": stack.api_key, "NO_GCE_CHECK": "true"}
            log = Path(tmp) / "daemon.log"
            started = time.monotonic()
            with log.open("wb") as err:
                process = await anyio.open_process(
                    ["launch-supervisor", "run", "--config", str(config)], env=env, stderr=err
                )
            try:
                ready = listed = None
                async with httpx.AsyncClient() as http:
                    with anyio.fail_after(120):
                        while ready is None or listed is None:
                            try:
                                if (
                                    ready is None
                                    and (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                                ):
                                    ready = time.monotonic() - started
                            except httpx.HTTPError:
                                pass
                            if (
                                listed is None
                                and sum(stack.vertex.listings.values()) > 0
                                and stack.vertex.faults.calls["ListCustomJobs"] >= ended // 1000 + 1
                            ):
                                listed = time.monotonic() - started
                            await anyio.sleep(0.01)
                await anyio.sleep(3.0)  # past the start-up listing
                calls0 = dict(stack.vertex.faults.calls)
                listings0 = sum(stack.vertex.listings[f] for f in stack.vertex.listings if f != LIVE_FILTER)
                live0 = stack.vertex.listings[LIVE_FILTER]
                cpu0, wall0 = cpu_seconds(process.pid), time.monotonic()
                await anyio.sleep(seconds)
                cpu, wall = cpu_seconds(process.pid) - cpu0, time.monotonic() - wall0
                calls = {k: v - calls0.get(k, 0) for k, v in stack.vertex.faults.calls.items()}
                live = stack.vertex.listings[LIVE_FILTER] - live0
                full = sum(stack.vertex.listings[f] for f in stack.vertex.listings if f != LIVE_FILTER) - listings0
                ticks = live if live else full  # a tick makes one live listing, or one full one
            finally:
                process.terminate()
                await process.wait()
        return {
            "cpu_per_minute": cpu / wall * 60,
            "ticks": ticks,
            "calls_per_tick": (calls.get("ListCustomJobs", 0) + calls.get("GetCustomJob", 0)) / max(1, ticks),
            "ready": ready or 0.0,
            "listed": listed or 0.0,
        }


def hint_messages(stack: Stack) -> dict[str, tuple[bytes, dict[str, str]]]:
    """One hint per loop: an enqueuer's item_added, a RunJob's end for the queue's launcher job and
    a CreateCustomJob audit entry (the fixtures the sink filters are tested with)."""
    run_end = json.loads((FIXTURES / "runjob_end_audit.json").read_text())
    entry = copy.deepcopy(run_end["data"])
    entry["resource"]["labels"]["job_name"] = "launcher-q"
    create = json.loads((FIXTURES / "create_custom_job_audit.json").read_text())
    return {
        "queue": (item_added("q"), {"type": "queue.item_added"}),
        "executions": (json.dumps(entry).encode(), run_end["attributes"]),
        "vertex": (json.dumps(create["data"]).encode(), create["attributes"]),
    }


async def hint_flood(rate: float, seconds: float, hints: bool) -> tuple[dict[str, int], float, dict[str, float]]:
    async with stand_ins(["q"]) as stack:
        stack.wandb.known_queues.add("q")
        toml = stack.config_toml(poll="jitter = 0")  # the default intervals and gaps
        config = parse_config(toml, "bench", {"WANDB_API_KEY": stack.api_key})
        daemon = Daemon(config)
        messages = hint_messages(stack)
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            await anyio.sleep(2.0)  # past the start-up listings
            before = {
                "queue": stack.wandb.faults.calls["GetRunQueueItems"],
                "executions": stack.cloudrun.faults.calls["ListExecutions"],
                "vertex": stack.vertex.listings[LIVE_FILTER],
            }
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                if hints:
                    for data, attributes in messages.values():
                        daemon.handle_message(data, attributes)
                await anyio.sleep(1 / rate)
            after = {
                "queue": stack.wandb.faults.calls["GetRunQueueItems"],
                "executions": stack.cloudrun.faults.calls["ListExecutions"],
                "vertex": stack.vertex.listings[LIVE_FILTER],
            }
            coalesced = {
                loop: daemon.registry.get_sample_value("launch_supervisor_hints_coalesced_total", {"loop": loop}) or 0.0
                for loop in ("queue", "executions", "vertex")
            }
            daemon.stop("bench")
        return {k: after[k] - before[k] for k in after}, config.poll.vertex_min_gap, coalesced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window of each Vertex run")
    parser.add_argument("--sizes", default="100,1000,10000")
    args = parser.parse_args()
    configure("console", "error")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; {LIVE} live CustomJobs; window {args.seconds:g} s")
    plus, raw = parse_cost()
    print(f"parse of one job: proto-plus {plus * 1e6:.0f} us, raw protobuf {raw * 1e6:.0f} us (x{raw / plus:.2f})")
    version = anyio.run(version_seconds)
    print(f"launch-supervisor --version: {version:.2f} s (the baseline of start to ready)")
    for mode, full in (("before", 0.5), ("after", 600.0)):
        base = None
        for ended in sizes:
            r = anyio.run(vertex_tick, ended, full, args.seconds)
            base = base or r
            ratio = r["cpu_per_minute"] / base["cpu_per_minute"]
            print(
                f"{mode:>6} {ended:>6} ended: daemon CPU {r['cpu_per_minute']:.2f} s/min (x{ratio:.2f} of {sizes[0]}), "
                f"{r['ticks']:.0f} ticks, {r['calls_per_tick']:.2f} Vertex calls/tick, "
                f"ready {r['ready']:.2f} s, first Vertex listing {r['listed']:.2f} s"
            )
    quiet, gap, _ = anyio.run(hint_flood, 100.0, 10.0, False)
    flood, gap, coalesced = anyio.run(hint_flood, 100.0, 10.0, True)
    for loop in ("queue", "executions", "vertex"):
        print(
            f"hints 100/s for 10 s, {loop:>10} loop: {flood[loop]} listings (without hints {quiet[loop]}; "
            f"goal <= {10 / gap + 1:.0f}), {coalesced[loop]:.0f} hints coalesced"
        )


if __name__ == "__main__":
    main()
