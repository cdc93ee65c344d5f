"""The sandbox end to end with the real agent, measured in one run over the same traffic.

    python3 tests/bench/bench_sandbox.py [--items 10] [--scenario happy] [--backstop 10] [--every 1]

Each item goes through the whole chain: the daemon dispatches, the launcher image's entrypoint
starts (the real launch-watchdog over the real `wandb launch-agent`), the agent pops and acks its
item and creates the CustomJob through the real aiplatform client. Three runs:

- events (Pub/Sub emulator), one-shot: the product as shipped;
- polling only, one-shot: the baseline for enqueue → CustomJob created;
- events, the watchdogs told to keep their agents (--on-submit keep), so that only the daemon's
  backstop (`stop_after_submit` = --backstop seconds) ends them: the baseline for how long an
  execution stays alive after its CustomJob exists (without either, until the task timeout).

Each real agent takes seconds of CPU to start, so on a small machine items enqueued faster than the
launchers can start queue up behind `max_inflight`: enqueue → CustomJob then measures that queue.
`--every` spaces the items out to measure one item's way through.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # for `tests`, after site-packages: the folders never shadow

from launch_supervisor.sandbox.emulator import free_port  # noqa: E402
from launch_supervisor.sandbox.session import Options, Sandbox  # noqa: E402

GOAL_P99_S = 2.0
"""One-shot's goal: an execution outlives its CustomJob's creation by at most this, at p99."""


def once(items: int, scenario: str, **options: Any) -> tuple[dict[str, Any], list[float], float]:
    with tempfile.TemporaryDirectory() as tmp:
        box = Sandbox(
            Options(
                items=items,
                scenario=scenario,
                http=f"127.0.0.1:{free_port()}",
                live=False,
                work_dir=Path(tmp),
                **options,
            ),
            out=io.StringIO(),
        )
        started = time.monotonic()
        summary = anyio.run(box.run)
        assert box.stack is not None
        return summary, box.post_submit_seconds(box.stack), time.monotonic() - started


def quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--scenario", default="happy")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between items")
    parser.add_argument("--backstop", type=float, default=10.0, help="stop_after_submit of the backstop run")
    args = parser.parse_args()
    every = {"enqueue_every": args.every}
    evented, one_shot, evented_wall = once(args.items, args.scenario, **every)
    polled, _, polled_wall = once(args.items, args.scenario, pubsub=False, **every)
    _, backstop, backstop_wall = once(
        args.items, args.scenario, on_submit="keep", stop_after_submit=args.backstop, **every
    )
    for name, summary, wall in (("polling only", polled, polled_wall), ("pubsub", evented, evented_wall)):
        print(
            f"{name:>12}: enqueue → CustomJob p50 {summary['submit_latency_p50_s']} s, "
            f"p95 {summary['submit_latency_p95_s']} s; {summary['items_terminal']}/{summary['items_submitted']} "
            f"terminal, {summary['duplicates']} duplicates, whole run {wall:.1f} s"
        )
    p50 = polled["submit_latency_p50_s"] / evented["submit_latency_p50_s"]
    p95 = polled["submit_latency_p95_s"] / evented["submit_latency_p95_s"]
    print(f"  ratio polling/pubsub: p50 {p50:.2f}x, p95 {p95:.2f}x")
    for name, values in (("one-shot", one_shot), (f"backstop {args.backstop:g} s", backstop)):
        print(
            f"{name:>12}: alive after CustomJob created p50 {quantile(values, 0.5):.2f} s, "
            f"p99 {quantile(values, 0.99):.2f} s, max {max(values):.2f} s ({len(values)} executions)"
        )
    verdict = "met" if quantile(one_shot, 0.99) <= GOAL_P99_S else "missed"
    print(f"  one-shot p99 goal ≤ {GOAL_P99_S:g} s: {verdict}")
    print(
        f"  ratio backstop/one-shot: p50 {quantile(backstop, 0.5) / quantile(one_shot, 0.5):.1f}x, "
        f"p99 {quantile(backstop, 0.99) / quantile(one_shot, 0.99):.1f}x (backstop run {backstop_wall:.1f} s)"
    )


if __name__ == "__main__":
    main()
