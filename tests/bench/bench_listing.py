"""launch-supervisor benchmark: W&B requests per queue listing, by listing order and history, with
its baseline.

    python3 tests/bench/bench_listing.py

A live daemon against the stand-ins polls one queue holding 0, 300, 1,000 or 2,000 finished items
(two thirds CLAIMED, one third FAILED) and then 5 pending ones, with the W&B stand-in listing
`waiting_first` (waiting items first, FAILED dropped) or `oldest_first` (every item, oldest first).
Printed per case: GetRunQueueItems requests per listing (the stand-in's own counts), as a ratio of
the baseline (no history, waiting_first: one request); the time W&B took per listing (the daemon's
request histogram), as a ratio of the baseline's; and how many of the 5 pending items were
dispatched: beyond `wandb.max_item_pages` (10) pages the newest items are not seen.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # for `tests`, after site-packages: the folders never shadow

from launch_supervisor.daemon.shell import Daemon  # noqa: E402
from launch_supervisor.logs import configure  # noqa: E402
from launch_supervisor.sandbox.stack import ENTITY, launcher_job, stand_ins  # noqa: E402

PENDING = 5


def seconds_in(daemon: Daemon, method: str) -> float:
    name = "launch_supervisor_api_request_duration_seconds_sum"
    for family in daemon.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels["method"] == method:
                return float(sample.value)
    return 0.0


async def case(listing: str, history: int, seconds: float = 5.0) -> dict[str, float]:
    async with stand_ins(["q"]) as stack:
        stack.wandb.listing = listing
        stack.wandb.add_history(ENTITY, "q", history)
        for _ in range(PENDING):
            stack.wandb.enqueue(ENTITY, "q")
        daemon = Daemon(stack.config("max_inflight = 10"))
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            await anyio.sleep(seconds)
            daemon.stop("benchmark over")
        listings = max(1, stack.wandb.item_listings)
        dispatched = [n for n in stack.cloudrun.executions if n.startswith(launcher_job("q") + "/")]
        return {
            "requests": stack.wandb.faults.calls["GetRunQueueItems"] / listings,
            "seconds": seconds_in(daemon, "GetRunQueueItems") / listings,
            "dispatched": float(len(dispatched)),
        }


async def main() -> None:
    configure("console", "error")
    base = await case("waiting_first", 0)
    print("listing        history  requests/listing (xbase)  W&B ms/listing (xbase)  dispatched")
    for listing in ("waiting_first", "oldest_first"):
        for history in (0, 300, 1000, 2000):
            got = base if (listing, history) == ("waiting_first", 0) else await case(listing, history)
            print(
                f"{listing:<14} {history:>7}  {got['requests']:>6.2f} ({got['requests'] / base['requests']:>5.2f}x)"
                f"          {got['seconds'] * 1000:>7.1f} ({got['seconds'] / base['seconds']:>5.2f}x)"
                f"        {got['dispatched']:.0f}/{PENDING}"
            )


if __name__ == "__main__":
    anyio.run(main)
