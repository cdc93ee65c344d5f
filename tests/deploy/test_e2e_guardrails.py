"""End to end with the real agent: the sandbox (the real daemon; per execution the real launch-watchdog
over the real `wandb launch-agent`) runs in a process of its own, through its Options, as
tests/deploy/test_e2e_prometheus.py runs it, polling only (no Pub/Sub).

- Capacity: the Vertex stand-in has no capacity for n1-standard-4, so the agent's CustomJob waits PENDING;
  the daemon cancels it at `max_queued` and fails its item once.
- Budget: the first item's job spends the queue's tiny daily_budget within seconds of running; the
  second item, enqueued later, waits PENDING with the reason in /status, and a real Prometheus, with
  deploy/prometheus/alerts.yml and its 1-s intervals, fires LaunchSupervisorQueueOverBudget.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.deploy.monitoring import free_port, prometheus, prometheus_config, require, start_sandbox, stop

pytestmark = pytest.mark.slow

T = TypeVar("T")
QUEUE = "sandbox"
ALERT = "LaunchSupervisorQueueOverBudget"
TEST_PRICES = """
[prices]
source = "test figures, not Google's: the sandbox's traffic runs n1-standard-4"
[prices.machine]
"n1-standard-4" = 2.0
"""
"""2 $ an hour: a job spends the budget below within its first tick of running."""
SANDBOX = """
import json
import sys
from pathlib import Path

import anyio

from launch_supervisor.sandbox.session import Options, Sandbox

http, work, settings = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
anyio.run(Sandbox(Options(http=http, work_dir=work, live=False, pubsub=False, **settings)).run)
"""


def _until(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            found = probe()
            if found:
                return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def sandbox(tmp: Path, **settings: Any) -> Iterator[tuple[str, Path]]:
    """The sandbox in its own process until the block ends (then SIGINT, as Ctrl-C stops it)."""
    address, work = f"127.0.0.1:{free_port()}", tmp / "work"
    command = [sys.executable, "-c", SANDBOX, address, str(work), json.dumps(settings)]
    process = start_sandbox(command, tmp / "sandbox.log")
    try:
        yield f"http://{address}", work
    finally:
        stop(process, signal.SIGINT, timeout=60)


def daemon_lines(work: Path, event: str) -> list[dict[str, Any]]:
    lines = []
    for line in (
        (work / "daemon.log").read_text(errors="replace").splitlines() if (work / "daemon.log").exists() else []
    ):
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == event:
                lines.append(entry)
    return lines


def test_a_job_waiting_for_capacity_is_cancelled_at_max_queued_and_its_item_failed(tmp_path: Path) -> None:
    """The real agent's CustomJob waits for an L4 past max_queued: one cancel, one failRunQueueItem with the wait."""
    settings = {"items": 1, "scenario": "happy", "duration": 240.0, "max_queued": 5.0, "no_capacity": ["n1-standard-4"]}
    with sandbox(tmp_path, **settings) as (_url, work):
        [failed] = _until(lambda: daemon_lines(work, "item.failed_by_supervisor"), 200, "the item failed")
        time.sleep(3)  # a few more Vertex ticks: nothing is sent twice
        cancels = daemon_lines(work, "vertex.cancel_requested")
        failures = daemon_lines(work, "item.failed_by_supervisor")
    assert [c["reason"] for c in cancels] == ["max_queued"]
    assert len(failures) == 1
    assert failed["reason"] == "max_queued"
    assert failed["message"].startswith("waited ")
    assert failed["message"].endswith(" s for capacity; CustomJob cancelled")
    assert float(failed["message"].split()[1]) >= 5


def _firing(prom: str) -> dict[str, Any] | None:
    for alert in httpx.get(f"{prom}/api/v1/alerts", timeout=2).json()["data"]["alerts"]:
        if alert["labels"]["alertname"] == ALERT and alert["state"] == "firing":
            found: dict[str, Any] = alert
            return found
    return None


def test_a_queue_over_its_budget_holds_the_next_item_and_the_alert_fires(tmp_path: Path) -> None:
    """The first job spends the budget; the second item waits, /status says why, the alert fires."""
    require("prometheus")
    settings = {
        "items": 2,
        "scenario": "happy",
        "duration": 400.0,
        "enqueue_every": 60.0,
        "job_seconds": 200.0,
        "daily_budget": 0.001,
        "prices": TEST_PRICES,
    }
    with sandbox(tmp_path, **settings) as (url, _work):
        prom_config, data = tmp_path / "prometheus.yml", tmp_path / "prom-data"
        # No Alertmanager: the alert is read from Prometheus itself; the address is a free port.
        prometheus_config(prom_config, url.removeprefix("http://"), f"127.0.0.1:{free_port()}")
        data.mkdir()
        with prometheus(prom_config, data, tmp_path / "prometheus.log") as prom:

            def held() -> dict[str, Any] | None:
                queue = httpx.get(f"{url}/status", timeout=2).json()["queues"][QUEUE]
                return queue if queue["pending"] == 1 and queue["cost"]["over_budget"] else None

            queue = _until(held, 240, "the second item held by the budget")
            alert = _until(lambda: _firing(prom.url), 120, f"{ALERT} firing")
            status = httpx.get(f"{url}/status", timeout=2).json()
    assert queue["cost"]["held"].startswith("over budget: $")
    assert queue["cost"]["daily_budget"] == 0.001
    assert sum(queue["in_flight"].values()) == 0  # nothing started for the held item
    assert alert["labels"]["queue"] == QUEUE
    assert alert["labels"]["severity"] == "ticket"
    assert len([j for j in status["vertex_jobs"] if j["queue"] == QUEUE]) == 1
