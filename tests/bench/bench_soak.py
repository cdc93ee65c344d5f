"""Soak: the daemon under steady traffic for a long time; memory stays flat and nothing leaks.

    python3 tests/bench/bench_soak.py [--minutes 30] [--rate 2] [--fail-every 20] [--preload 5000] [--trace-memory]

The real daemon (`launch-supervisor run`, a process of its own so its memory is its own, with the
allocator settings of deploy/systemd/launch-supervisor.service) against
the stand-ins and Google's Pub/Sub emulator. Items arrive at `--rate` per second; every
`--fail-every`-th execution bails out and every `--fail-every`-th CustomJob fails; every watchdog
event is published twice. Time is scaled: polls run 20-50x faster than the defaults and finished
records are kept 60 s instead of an hour, so the run covers many retention cycles. The Vertex
stand-in starts with `--preload` ended CustomJobs shaped like the agent's, as a project holds after
a day of launches, so every full listing and the memory the daemon keeps for them are real size.

Every 10 s it samples the daemon's RSS, open file descriptors, threads and child processes. It
prints the growth between the settled RSS (the median of a minute's samples, so that a full
listing's few seconds of peak are not taken for growth) of the first minute after warm-up and of
the last, that level every 10 minutes, the peak, the RSS curve, the items' figures, and the leak
checks. With `--trace-memory` the daemon runs under
tracemalloc (slower), and the run ends with the lines of code whose live allocations grew most
between the end of warm-up and the end. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # for `tests`, after site-packages: the folders never shadow

from launch_supervisor.sandbox.simulated import Plan, SimulatedLauncher, agent_job  # noqa: E402
from launch_supervisor.sandbox.stack import ENTITY, stand_ins  # noqa: E402
from launch_supervisor.sandbox.summary import is_terminal, jobs_by_item  # noqa: E402
from launch_supervisor.sandbox.vertex_server import VertexStandIn  # noqa: E402
from launch_supervisor.sandbox.wandb_server import WandbStandIn  # noqa: E402
from tests.emulator import PROJECT  # noqa: E402

WARM_UP = 60.0
"""Seconds before the first sample that counts: imports, the first retention cycle."""

TRACER = """
import signal, tracemalloc, os
_count = [0]
def _dump(signum, frame):
    _count[0] += 1
    tracemalloc.take_snapshot().dump(os.path.join(os.environ["SOAK_TRACE_DIR"], f"snapshot-{_count[0]}"))
if os.environ.get("SOAK_TRACE_DIR"):
    tracemalloc.start(1)
    signal.signal(signal.SIGUSR2, _dump)
"""
"""A sitecustomize for the daemon under `--trace-memory`: SIGUSR2 writes a tracemalloc snapshot."""


UNIT = ROOT / "deploy" / "systemd" / "launch-supervisor.service"


def unit_malloc() -> dict[str, str]:
    """The allocator settings the systemd unit gives the daemon (Environment=MALLOC_…), so the soak
    runs it as production does."""
    found = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment=MALLOC_"):
            name, value = line.removeprefix("Environment=").split("=", 1)
            found[name] = value
    return found


def regions(pid: int) -> dict[str, float]:
    """Resident MB by kind of mapping: glibc's main heap, its per-thread arenas (anonymous, aligned
    to 64 MiB, the rest of the reservation mapped PROT_NONE after them), other anonymous memory
    (CPython's object arenas, large buffers) and files (code, libraries)."""
    vmas: list[tuple[int, int, str, str, float]] = []
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if "-" in parts[0] and not parts[0].endswith(":"):
            low, high = (int(x, 16) for x in parts[0].split("-"))
            vmas.append((low, high, parts[1], parts[5] if len(parts) > 5 else "", 0.0))
        elif parts[0] == "Rss:" and vmas:
            low, high, perms, name, _ = vmas[-1]
            vmas[-1] = (low, high, perms, name, int(parts[1]) / 1024)
    found = {"heap": 0.0, "thread arenas": 0.0, "other anonymous": 0.0, "files": 0.0}
    for index, (low, high, _perms, name, rss) in enumerate(vmas):
        after = vmas[index + 1] if index + 1 < len(vmas) else None
        if name == "[heap]":
            found["heap"] += rss
        elif name:
            found["files"] += rss
        elif low % (64 << 20) == 0 and after is not None and after[0] == high and after[2] == "---p" and not after[3]:
            found["thread arenas"] += rss
        else:
            found["other anonymous"] += rss
    return found


def sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir()),
        "threads": int(fields["Threads"]),
        "children": len(children),
    }


async def soak(minutes: float, rate: float, fail_every: int, preload: int, trace: bool) -> dict[str, Any]:
    from google.api_core.client_options import ClientOptions
    from google.cloud import pubsub_v1

    from launch_supervisor.sandbox.emulator import Emulator

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "pubsub").mkdir()
        emulator = await anyio.to_thread.run_sync(lambda: Emulator(work / "pubsub", project=PROJECT))
        try:
            os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
            options = ClientOptions(api_endpoint=emulator.host)
            publisher = pubsub_v1.PublisherClient(client_options=options)
            subscriber = pubsub_v1.SubscriberClient(client_options=options)
            topic, subscription = publisher.topic_path(PROJECT, "soak"), subscriber.subscription_path(PROJECT, "soak")
            publisher.create_topic(name=topic)
            subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=10)
            subscriber.close()

            def twice(record: dict[str, object]) -> None:
                body = json.dumps(record).encode()
                publisher.publish(topic, body)
                publisher.publish(topic, body)

            def plan(n: int) -> Plan:
                if n % fail_every == fail_every - 1:
                    return Plan(outcome="bailout", rule="quota_exceeded", category="quota")
                if n % fail_every == fail_every // 2:
                    return Plan(vertex_error="The replica workerpool0-0 exited with a non-zero status of 1.")
                return Plan()

            def launcher(w: WandbStandIn, v: VertexStandIn) -> SimulatedLauncher:
                return SimulatedLauncher(w, v, plan=plan, idle_timeout=0.5, events=twice)

            return await drive(launcher, work, subscription, minutes, rate, preload=preload, trace=trace)
        finally:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
            await anyio.to_thread.run_sync(emulator.stop)


async def drive(
    launcher: Any, work: Path, subscription: str, minutes: float, rate: float, *, preload: int, trace: bool
) -> dict[str, Any]:
    async with stand_ins(["q"], behaviour=launcher) as stack:
        stack.wandb.known_queues.add("q")
        stack.vertex.preload(agent_job("q", f"old-item-{n}", f"old-run-{n}", ENTITY) for n in range(preload))
        with socket.socket() as free:  # a free port: other runs may share the machine
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        # The bailouts are on purpose and steady: a breaker that paused the queue for them (as it
        # should in production) would end the traffic this measures.
        settings = "max_inflight = 50\ndispatch_budget = 100000\nclaim_timeout = 30\nbreaker.threshold = 1000000"
        toml = stack.config_toml(settings, f'\n[pubsub]\nsubscription = "{subscription}"\n')
        toml = toml.replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"')
        toml += "\n[retention]\nfinished_seconds = 60\nfinished_max = 300\n"
        config = work / "config.toml"
        config.write_text(toml)
        env = {**os.environ, **unit_malloc(), "WANDB_API_KEY": stack.api_key, "NO_GCE_CHECK": "true"}
        if trace:
            (work / "sitecustomize.py").write_text(TRACER)
            env["PYTHONPATH"] = os.pathsep.join([str(work), *filter(None, [env.get("PYTHONPATH")])])
            env["SOAK_TRACE_DIR"] = str(work)
        log = (work / "daemon.log").open("wb")
        process = await anyio.open_process(["launch-supervisor", "run", "--config", str(config)], env=env, stderr=log)
        samples: list[tuple[float, dict[str, float]]] = []
        layout: list[dict[str, float]] = []
        ids: list[str] = []
        try:
            async with httpx.AsyncClient() as http:
                with anyio.move_on_after(30) as waited:
                    while True:
                        try:
                            if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                                break
                        except httpx.HTTPError:
                            pass
                        await anyio.sleep(0.1)
            if waited.cancelled_caught:
                raise SystemExit(f"the daemon did not become ready:\n{(work / 'daemon.log').read_text()[-3000:]}")
            started = time.monotonic()
            end = started + minutes * 60
            next_sample = started
            warm = False
            while time.monotonic() < end:
                ids.append(stack.wandb.enqueue(ENTITY, "q"))
                if time.monotonic() >= next_sample:
                    samples.append((time.monotonic() - started, sample(process.pid)))
                    next_sample += 10.0
                if not warm and time.monotonic() - started >= WARM_UP:
                    warm = True
                    layout = [regions(process.pid)]
                    if trace:
                        process.send_signal(signal.SIGUSR2)
                await anyio.sleep(1 / rate)
            with anyio.move_on_after(120):
                jobs = jobs_by_item(stack)
                while not all(is_terminal(stack, i, jobs) for i in ids):
                    await anyio.sleep(1.0)
                    jobs = jobs_by_item(stack)
            samples.append((time.monotonic() - started, sample(process.pid)))
            layout.append(regions(process.pid))
            if trace:
                process.send_signal(signal.SIGUSR2)
                await anyio.sleep(10.0)  # a snapshot of a large heap takes a while to write
        finally:
            process.terminate()
            with anyio.move_on_after(20):
                await process.wait()
            log.close()
        jobs = jobs_by_item(stack)
        terminal = sum(1 for i in ids if is_terminal(stack, i, jobs))
        stuck = [
            f"{i}: {stack.wandb.items[i].state}, leases {stack.wandb.items[i].leases}, "
            f"jobs {[j.state.name for j in jobs.get(i, [])]}, failures {stack.wandb.items[i].failures}"
            for i in ids
            if not is_terminal(stack, i, jobs)
        ]
        return {
            "stuck": stuck,
            "samples": samples,
            "items": len(ids),
            "terminal": terminal,
            "duplicates": sum(max(0, len(found) - 1) for found in jobs.values()),
            "executions": len(stack.cloudrun.executions),
            "failed_items": sum(1 for i in ids if stack.wandb.items[i].state == "FAILED"),
            "exit_code": process.returncode,
            "log_bytes": (work / "daemon.log").stat().st_size,
            "memory": grown(work) if trace else [],
            "layout": layout,
        }


def grown(work: Path) -> list[str]:
    """The lines whose live allocations grew most between the two snapshots."""
    import tracemalloc

    try:
        first, last = (tracemalloc.Snapshot.load(str(work / f"snapshot-{n}")) for n in (1, 2))
    except OSError as error:
        return [f"no snapshot to compare: {error}"]
    stats = last.compare_to(first, "lineno")
    total = sum(s.size_diff for s in stats)
    return [f"traced growth {total / 1e6:+.2f} MB"] + [str(s) for s in stats[:25]]


def settled(samples: list[tuple[float, dict[str, float]]], start: float, seconds: float = 60.0) -> float:
    """The median RSS of the samples in `seconds` from `start`: the level the daemon sits at, not the
    peak of one full listing that a single sample may fall on."""
    window = [s["rss_mb"] for t, s in samples if start <= t < start + seconds]
    return statistics.median(window or [samples[-1][1]["rss_mb"]])


def report(result: dict[str, Any]) -> None:
    samples = [(t, s) for t, s in result["samples"] if t >= WARM_UP] or result["samples"]
    rss = [s["rss_mb"] for _, s in samples]
    third = max(1, len(rss) // 3)
    first, last = statistics.mean(rss[:third]), statistics.mean(rss[-third:])
    start, end = settled(samples, samples[0][0]), settled(samples, samples[-1][0] - 60.0, 61.0)
    print(
        f"items {result['items']}, terminal {result['terminal']}, executions {result['executions']}, "
        f"failed by design {result['failed_items']}, duplicates {result['duplicates']}"
    )
    print(
        f"RSS after warm-up: first minute {start:.1f} MB, peak {max(rss):.1f} MB, last minute {end:.1f} MB "
        f"(medians); growth after warm-up {end - start:+.1f} MB (goal: at most +5 MB); last sample "
        f"{rss[-1] - rss[0]:+.1f} MB from the first; last third / first third = {last / first:.3f}"
    )
    tens = range(int(samples[-1][0] // 600))
    print(
        "RSS by 10 minutes (median of each's last minute, MB): "
        + ", ".join(f"{10 * (n + 1)} min {settled(samples, 600.0 * (n + 1) - 60.0):.1f}" for n in tens)
    )
    for key in ("fds", "threads", "children"):
        values = [s[key] for _, s in samples]
        print(f"{key}: start {values[0]:.0f}, max {max(values):.0f}, end {values[-1]:.0f}")
    print("RSS curve (s: MB): " + ", ".join(f"{t:.0f}: {s['rss_mb']:.1f}" for t, s in result["samples"]))
    print(f"daemon exit code {result['exit_code']} after SIGTERM; log {result['log_bytes'] / 1e6:.1f} MB")
    if len(result["layout"]) == 2:
        first_layout, last_layout = result["layout"]
        print(
            "RSS by mapping after warm-up, start → end: "
            + ", ".join(f"{k} {first_layout[k]:.1f} → {last_layout[k]:.1f} MB" for k in first_layout)
        )
    for line in result["memory"]:
        print(line)
    for line in result["stuck"][:20]:
        print(f"not terminal: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2.0, help="items per second")
    parser.add_argument("--fail-every", type=int, default=20)
    parser.add_argument("--preload", type=int, default=5000, help="ended CustomJobs in the lookback at start")
    parser.add_argument("--trace-memory", action="store_true", help="tracemalloc in the daemon: what grew")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; {args.minutes:g} min at {args.rate:g} items/s; "
        f"{args.preload} ended CustomJobs preloaded; the unit's allocator settings {unit_malloc()}"
    )
    report(anyio.run(soak, args.minutes, args.rate, args.fail_every, args.preload, args.trace_memory))


if __name__ == "__main__":
    main()
