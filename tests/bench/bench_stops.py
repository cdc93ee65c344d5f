"""launch-supervisor benchmark: W&B calls per Vertex tick for the stop check, with its baseline.

    python3 tests/bench/bench_stops.py

A live daemon against the stand-ins holds 10, 100 and 1,000 live CustomJobs (their items CLAIMED,
spread over queues of 100 so every item is listed), whose runs live in 1, 5 or 20 W&B projects; a
tenth of the runs are stopped, with a grace long enough that nothing is cancelled. Printed per case:
`RunStopStatus` calls per Vertex tick (ListCustomJobs calls), as a ratio of the baseline (10 jobs in
1 project) and of what one query per run would cost; and the time of one tick's stop check (the
W&B calls, from the daemon's own request histogram), as a ratio of the baseline's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # for `tests`, after site-packages: the folders never shadow

from launch_supervisor.daemon.shell import Daemon  # noqa: E402
from launch_supervisor.logs import configure  # noqa: E402
from launch_supervisor.sandbox.simulated import custom_job  # noqa: E402
from launch_supervisor.sandbox.stack import ENTITY, stand_ins  # noqa: E402
from launch_supervisor.sandbox.vertex_server import RUN_FOR_ARG  # noqa: E402

PER_QUEUE = 100
"""Items a queue listing shows (the items query's page): more queues for more jobs."""


def histogram(daemon: Daemon, name: str, method: str) -> float:
    for family in daemon.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels.get("method") == method:
                return float(sample.value)
    return 0.0


async def case(jobs: int, projects: int, seconds: float = 6.0) -> dict[str, float]:
    queues = [f"q{n}" for n in range(max(1, -(-jobs // PER_QUEUE)))]
    async with stand_ins(queues) as stack:
        for i in range(jobs):
            queue = queues[i % len(queues)]
            stack.wandb.known_queues.add(queue)
            item, run_id = stack.wandb.enqueue(ENTITY, queue), f"run{i:05d}"
            assert stack.wandb.pop(ENTITY, queue) is not None
            assert stack.wandb.ack(item, run_id)
            project = f"proj{i % projects}"
            stack.wandb.start_run(ENTITY, project, run_id)
            if i % 10 == 0:
                stack.wandb.stop_run(run_id)
            stack.vertex.create(
                custom_job(queue, item, run_id, entity=ENTITY, project=project, args=[f"{RUN_FOR_ARG}3600"])
            )
        config = stack.config("stop_grace = 3600")
        daemon = Daemon(config)
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            with anyio.fail_after(120):
                while sum(1 for j in daemon.state.vertex_jobs.values() if j.queue) < jobs:
                    await anyio.sleep(0.1)
                watched = daemon.state.stop_queries()
                while not any(j.stopped_since for j in daemon.state.vertex_jobs.values()):
                    await anyio.sleep(0.1)
            calls = stack.wandb.faults.calls
            stops0, ticks0 = calls["RunStopStatus"], stack.vertex.faults.calls["ListCustomJobs"]
            sum0 = histogram(daemon, "launch_supervisor_api_request_duration_seconds_sum", "RunStopStatus")
            await anyio.sleep(seconds)
            ticks = stack.vertex.faults.calls["ListCustomJobs"] - ticks0
            stops = calls["RunStopStatus"] - stops0
            spent = histogram(daemon, "launch_supervisor_api_request_duration_seconds_sum", "RunStopStatus") - sum0
            daemon.stop("bench")
        assert stack.vertex.cancels == []
        return {
            "projects asked": len(watched),
            "ticks": ticks,
            "calls per tick": stops / ticks,
            "seconds per tick": spent / ticks,
        }


def main() -> None:
    configure("console", "error")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    base = anyio.run(case, 10, 1)
    for jobs in (10, 100, 1000):
        for projects in (1, 5, 20):
            got = base if (jobs, projects) == (10, 1) else anyio.run(case, jobs, projects)
            calls = got["calls per tick"]
            print(
                f"{jobs:>5} live jobs, {projects:>2} projects: RunStopStatus {calls:5.2f} per Vertex tick"
                f" (x{calls / base['calls per tick']:.2f} of 10 jobs in 1 project;"
                f" x{calls / jobs:.3f} of one query per run) over {got['ticks']:.0f} ticks;"
                f" stop check {got['seconds per tick'] * 1e3:6.1f} ms per tick"
                f" (x{got['seconds per tick'] / base['seconds per tick']:.1f} of the baseline)"
            )


if __name__ == "__main__":
    main()
