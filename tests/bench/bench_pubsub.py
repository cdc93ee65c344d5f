"""Hint to dispatch: `queue.item_added` published → RunJob received by the Cloud Run stand-in.

    python3 tests/bench/bench_pubsub.py [--trials 200] [--baseline-trials 12]

Against Google's Pub/Sub emulator and the stand-ins, the real daemon polling every 5 s; simulated
launchers publish the watchdog's events (claimed, submitted…) on the same topic, as in production.
Baseline, in the same run: the same enqueue with no hint, so dispatch waits for the poll.
Goal: p50 <= 50 ms, p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # for `tests`, after site-packages: the folders never shadow

from launch_supervisor.config import parse_config  # noqa: E402
from launch_supervisor.daemon.shell import Daemon  # noqa: E402
from launch_supervisor.logs import configure  # noqa: E402
from launch_supervisor.sandbox.simulated import SimulatedLauncher  # noqa: E402
from launch_supervisor.sandbox.stack import ENTITY, stand_ins  # noqa: E402
from launch_supervisor.sandbox.vertex_server import VertexStandIn  # noqa: E402
from launch_supervisor.sandbox.wandb_server import WandbStandIn  # noqa: E402
from tests.emulator import PROJECT, running_emulator  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(host: str, trials: int, baseline_trials: int) -> tuple[list[float], list[float]]:
    import os

    from google.api_core.client_options import ClientOptions
    from google.cloud import pubsub_v1

    os.environ["PUBSUB_EMULATOR_HOST"] = host
    options = ClientOptions(api_endpoint=host)
    publisher = pubsub_v1.PublisherClient(client_options=options)
    subscriber = pubsub_v1.SubscriberClient(client_options=options)
    topic, subscription = publisher.topic_path(PROJECT, "bench"), subscriber.subscription_path(PROJECT, "bench")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    subscriber.close()
    hint = json.dumps({"event": "queue.item_added", "queue": "q"}).encode()

    def event(record: dict[str, object]) -> None:
        publisher.publish(topic, json.dumps(record).encode())

    # Launchers that do not linger for work (an idle one would take the next trial's item itself),
    # publishing the watchdog's events as production launchers do.
    def launcher(w: WandbStandIn, v: VertexStandIn) -> SimulatedLauncher:
        return SimulatedLauncher(w, v, idle_timeout=0.0, events=event)

    async with stand_ins(["q"], behaviour=launcher) as stack:
        stack.wandb.known_queues.add("q")
        settings = "max_inflight = 100\ndispatch_budget = 100000"  # the default budget would throttle the burst
        toml = stack.config_toml(settings, f'\n[pubsub]\nsubscription = "{subscription}"\n')
        toml = toml.replace("queue_interval = 0.2", "queue_interval = 5")
        daemon = Daemon(parse_config(toml, "bench", {"WANDB_API_KEY": stack.api_key}))
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            while not daemon.is_ready():
                await anyio.sleep(0.05)
            await anyio.sleep(1.0)

            async def one(publish: bool) -> float:
                # Start from quiet: an execution still starting would take this item without a RunJob.
                running = ("pending", "running")
                while any(stack.cloudrun.status(n) in running for n in stack.cloudrun.executions):
                    await anyio.sleep(0.01)
                if not publish:
                    await anyio.sleep(1.0)  # past the poll a finished execution triggers: polling only
                before = len(stack.cloudrun.run_job_times)
                stack.wandb.enqueue(ENTITY, "q")
                started = time.monotonic()
                if publish:
                    await anyio.to_thread.run_sync(lambda: publisher.publish(topic, hint).result(30))
                with anyio.move_on_after(20) as waited:
                    while len(stack.cloudrun.run_job_times) == before:
                        await anyio.sleep(0.001)
                if waited.cancelled_caught:
                    state = daemon.state.queues["q"]
                    flying = [(e.name[-5:], e.phase.value, e.item_id) for e in state.executions.values() if e.in_flight]
                    items = {
                        i.id[-6:]: (i.state.value, i.claimed_by and i.claimed_by[-5:]) for i in state.items.values()
                    }
                    stand_in = {i.id[-6:]: i.state for i in stack.wandb.items.values() if i.state != "CLAIMED"}
                    raise SystemExit(f"no RunJob: decision {state.decide(time.time())}\n{flying}\n{items}\n{stand_in}")
                return stack.cloudrun.run_job_times[before] - started

            hinted = [await one(True) for _ in range(trials)]
            polls, runs = stack.wandb.faults.calls["GetRunQueueItems"], len(stack.cloudrun.run_job_times)
            await anyio.sleep(3)
            print(
                f"idle 3 s after the hints: {stack.wandb.faults.calls['GetRunQueueItems'] - polls} polls, "
                f"{len(stack.cloudrun.run_job_times) - runs} RunJobs, poll_now={daemon._poll_now}",  # noqa: SLF001
                file=sys.stderr,
            )
            polled = [await one(False) for _ in range(baseline_trials)]
            daemon.stop("bench over")
    return hinted, polled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--baseline-trials", type=int, default=12)
    args = parser.parse_args()
    configure("console", "error")
    with tempfile.TemporaryDirectory() as tmp, running_emulator(Path(tmp)) as emulator:
        hinted, polled = anyio.run(measure, emulator.host, args.trials, args.baseline_trials)
    h50, h99 = percentile(hinted, 0.5) * 1e3, percentile(hinted, 0.99) * 1e3
    b50, b99 = percentile(polled, 0.5) * 1e3, percentile(polled, 0.99) * 1e3
    print(f"publish -> RunJob with a hint ({len(hinted)} trials): p50 {h50:.1f} ms, p99 {h99:.1f} ms")
    print(f"enqueue -> RunJob polling every 5 s ({len(polled)} trials): p50 {b50:.0f} ms, p99 {b99:.0f} ms")
    print(f"  ratio polling/hint: p50 {b50 / h50:.0f}x, p99 {b99 / h99:.0f}x  (goal: p50 <= 50 ms, p99 <= 250 ms)")


if __name__ == "__main__":
    main()
