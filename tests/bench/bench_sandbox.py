"""The sandbox end to end: enqueue → CustomJob created, with events (Pub/Sub emulator) against
polling only, measured in the same run over the same traffic.

    python3 tests/bench/bench_sandbox.py [--items 10] [--scenario happy]

Each item goes through the whole chain: the daemon dispatches, a real launch-watchdog and sandbox
agent process start, the agent pops and acks through the wandb SDK, creates the CustomJob.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from supervisor.sandbox.emulator import free_port  # noqa: E402
from supervisor.sandbox.session import Options, Sandbox  # noqa: E402


def once(items: int, scenario: str, pubsub: bool) -> tuple[dict[str, Any], float]:
    with tempfile.TemporaryDirectory() as tmp:
        options = Options(
            items=items,
            scenario=scenario,
            pubsub=pubsub,
            http=f"127.0.0.1:{free_port()}",
            live=False,
            work_dir=Path(tmp),
        )
        started = time.monotonic()
        summary = anyio.run(Sandbox(options, out=io.StringIO()).run)
        return summary, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--scenario", default="happy")
    args = parser.parse_args()
    polled, polled_wall = once(args.items, args.scenario, pubsub=False)
    evented, evented_wall = once(args.items, args.scenario, pubsub=True)
    for name, summary, wall in (("polling only", polled, polled_wall), ("pubsub", evented, evented_wall)):
        print(
            f"{name:>12}: submit latency p50 {summary['submit_latency_p50_s']} s, "
            f"p95 {summary['submit_latency_p95_s']} s; {summary['items_terminal']}/{summary['items_submitted']} "
            f"terminal, {summary['duplicates']} duplicates, whole run {wall:.1f} s"
        )
    p50 = polled["submit_latency_p50_s"] / evented["submit_latency_p50_s"]
    p95 = polled["submit_latency_p95_s"] / evented["submit_latency_p95_s"]
    print(f"  ratio polling/pubsub: p50 {p50:.2f}x, p95 {p95:.2f}x")


if __name__ == "__main__":
    main()
