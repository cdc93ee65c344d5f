"""launch-supervisor benchmark: what the cost tally adds to each Vertex tick, with its baseline.

    python3 tests/bench/bench_cost.py

The model holds 1,000, 5,000 and 20,000 CustomJobs of one queue (a day of a busy project: 100
RUNNING, the rest ended within the last 24 hours, every one priced: two replicas of n1-standard-8 with
two NVIDIA_L4). Per case, the time of one tick's `tally_costs` (the counter, the 24 h spend, the
unpriced check) once the listing is folded in is printed as a ratio of the time of folding the same
listing into the model (`observe_vertex`), measured in the same run, and as a ratio of the 1,000-job
case's tally. A tick prices the jobs in flight only, so the second ratio should stay near 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # for `tests`, after site-packages: the folders never shadow

from launch_supervisor.model.cost import Prices  # noqa: E402
from launch_supervisor.model.observations import VertexSeen  # noqa: E402
from launch_supervisor.model.policy import QueuePolicy  # noqa: E402
from launch_supervisor.model.state import State  # noqa: E402
from launch_supervisor.model.vertex import Hardware, JobState, Pool  # noqa: E402

NOW = 2_000_000.0
LIVE = 100
HARDWARE = Hardware((Pool("n1-standard-8", 2, "NVIDIA_L4", 2),))
PRICES = Prices(machine={"n1-standard-8": 0.4369977}, accelerator={"NVIDIA_L4": 0.7})
"""Figures for the arithmetic only (as in tests/supervisor/model/test_cost.py)."""
POLICY = QueuePolicy(
    name="q",
    entity="e",
    launcher_job="projects/p/locations/r/jobs/j",
    max_inflight=4,
    dispatch_budget=30,
    claim_timeout=180.0,
    execution_timeout=1800.0,
    breaker_threshold=3,
    breaker_window=600.0,
    breaker_cooldown=60.0,
    breaker_max_cooldown=1800.0,
    retention_seconds=3600.0,
    retention_max=1000,
    daily_budget=1000.0,
)


def listing(jobs: int) -> list[VertexSeen]:
    seen = []
    for n in range(jobs):
        created = NOW - 86000 * n / jobs
        running = n % (jobs // LIVE) == 0
        seen.append(
            VertexSeen(
                f"projects/p/locations/r/customJobs/{n}",
                f"run-{n}",
                JobState.RUNNING if running else JobState.SUCCEEDED,
                created=created,
                ended=None if running else created + 600,
                error=None,
                launch_queue=("e", "q"),
                started=created + 60,
                hardware=HARDWARE,
            )
        )
    return seen


def best(call: object, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def case(jobs: int) -> tuple[float, float]:
    state = State()
    state.configure([POLICY], PRICES)
    seen = listing(jobs)
    state.observe_vertex(seen, NOW, horizon=NOW - 86400, complete=True)
    state.tally_costs(NOW)  # the first tally builds the ledger of the jobs that ended
    fold = best(lambda: state.observe_vertex(seen, NOW + 15, horizon=NOW - 86400, complete=True))
    tally = best(lambda: state.tally_costs(NOW + 15), repeat=50)
    return fold, tally


def main() -> None:
    baseline: float | None = None
    print(f"{'jobs':>7}  {'tally / fold':>12}  {'tally / tally(1000)':>19}")
    for jobs in (1000, 5000, 20000):
        fold, tally = case(jobs)
        baseline = baseline or tally
        print(f"{jobs:>7}  {tally / fold:>12.3f}  {tally / baseline:>19.2f}")


if __name__ == "__main__":
    main()
