"""End to end on a real Prometheus and a real Alertmanager, against the sandbox's `mixed` scenario
(the real daemon; per execution the real launch-watchdog over the real `wandb launch-agent`; Pub/Sub
on Google's emulator), whose executions bail out three times. The sandbox runs in a process of its
own, through its Options, with six executions in flight instead of four so that the three bailouts
come in the first wave (see SANDBOX).

Prometheus runs deploy/prometheus/prometheus.yml with its global scrape and evaluation intervals set
to 1 s, the documented override for rule groups without an `interval:` of their own, and loads
deploy/prometheus/alerts.yml by its path (docs/runbook.md, Testing a page end to end). Alertmanager
runs deploy/alertmanager/alertmanager.yml with its integrations pointed at a local receiver.

One run of the whole stack (the module's fixture) is observed, stopped, and its findings checked by
the tests below; nothing of it runs once the fixture returns.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import descendants
from tests.deploy.monitoring import (
    ALERTMANAGER_CONFIG,
    Receiver,
    Server,
    alertmanager,
    dashboard,
    free_port,
    panel_queries,
    prometheus,
    prometheus_config,
    receiver,
    require,
    run,
    start_sandbox,
    stop,
    substitute,
)
from tests.emulator import require_emulator

pytestmark = pytest.mark.slow

ALERT = "LaunchSupervisorRepeatedBailouts"
QUEUE = "sandbox"
ITEMS = 10
"""mixed: items 1, 3 and 5 bail out (quota, permission, invalid_spec), 7 and 9 fail on Vertex AI, the
others succeed. The run is stopped once the page has arrived, long before the last items are done:
a sandbox that ended with its third bailout could stop the daemon before Prometheus scraped it."""
SANDBOX = """
import sys
from pathlib import Path

import anyio

from launch_supervisor.sandbox.session import Options, Sandbox

http, work, duration = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
# The `mixed` scenario as `launch-supervisor sandbox --scenario mixed` runs it, but with items 0-5 in
# flight at once: the three bailouts come in the first wave of executions instead of waiting for the
# breaker that the permission bailout opens (15 s cooldown, then a probe that must submit its job).
options = Options(
    items=int(sys.argv[4]), scenario="mixed", duration=duration, http=http, work_dir=work, live=False,
    max_inflight=6, enqueue_every=0.5,
)
anyio.run(Sandbox(options).run)
"""
BUDGET = 110.0
"""Seconds from the sandbox's start by which the page must have reached the receiver."""
ROUTING_KEY = "e2e-pagerduty-routing-key"
OPSGENIE_KEY = "e2e-opsgenie-key"


@dataclass
class Findings:
    """What one run showed, for the tests to check."""

    started: float = 0.0
    """time.time() when the sandbox was started."""
    third_bailout: float | None = None
    """time.time() of the daemon's third execution.bailout log line."""
    firing: dict[str, Any] | None = None
    """The alert as Prometheus' /api/v1/alerts showed it firing."""
    firing_seen: float | None = None
    routed: dict[str, Any] | None = None
    """The alert as Alertmanager's /api/v2/alerts showed it."""
    receiver: Receiver | None = None
    paged: float | None = None
    """time.time() when the PagerDuty stand-in received the page."""
    queues: list[str] = field(default_factory=list)
    """The `queue` variable's values, from Prometheus' label values API."""
    queries: dict[str, str] = field(default_factory=dict)
    """Each dashboard query (panel / refId) → "" when it returned data, else why not."""
    metrics_check: subprocess.CompletedProcess[str] | None = None
    left_running: list[int] = field(default_factory=list)
    logs: str = ""
    """The servers' log tails, for failure messages."""
    elapsed: float = 0.0

    def figures(self) -> str:
        def since(at: float | None, origin: float | None) -> str:
            return "-" if at is None or origin is None else f"{at - origin:.1f} s"

        return (
            f"firing seen {since(self.firing_seen, self.started)} after the sandbox's start and "
            f"{since(self.firing_seen, self.third_bailout)} after the third bailout; paged "
            f"{since(self.paged, self.started)} after the start; whole run {self.elapsed:.1f} s"
        )


def _until(what: Callable[[], Any], deadline: float, every: float = 0.25) -> Any:
    """Poll `what` until it returns something truthy or the deadline (time.monotonic()) passes."""
    while True:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            found = what()
            if found:
                return found
        if time.monotonic() > deadline:
            return None
        time.sleep(every)


def _left_running(before: set[int], within: float = 5.0) -> list[int]:
    """Our processes started since `before` that are still there after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        left = sorted(set(descendants(os.getpid())) - before)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _alertmanager_config(path: Path, secrets: Path, hook: str) -> None:
    """deploy/alertmanager/alertmanager.yml as it is (routes, grouping, inhibition), its integrations
    sending to the local receiver with test keys read from files; no e-mail (no mail server here)."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    secrets.mkdir()
    files = {
        "pagerduty": ROUTING_KEY,
        "opsgenie": OPSGENIE_KEY,
        "slack": f"{hook}/slack",
        "smtp": "not-used",
    }
    for name, value in files.items():
        (secrets / name).write_text(value)  # no newline, as the file's header says
    config["global"]["smtp_auth_password_file"] = str(secrets / "smtp")
    for receiver_config in config["receivers"]:
        for pagerduty in receiver_config.get("pagerduty_configs", []):
            pagerduty.update(routing_key_file=str(secrets / "pagerduty"), url=f"{hook}/pagerduty/v2/enqueue")
        for opsgenie in receiver_config.get("opsgenie_configs", []):
            opsgenie.update(api_key_file=str(secrets / "opsgenie"), api_url=f"{hook}/opsgenie/")
        for slack in receiver_config.get("slack_configs", []):
            slack.update(api_url_file=str(secrets / "slack"))
        receiver_config.pop("email_configs", None)
    path.write_text(yaml.safe_dump(config))


def _third_bailout(daemon_log: Path) -> float | None:
    if not daemon_log.exists():
        return None
    times = []
    for line in daemon_log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == "execution.bailout" and entry.get("queue") == QUEUE:
                times.append(datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp())
    return sorted(times)[2] if len(times) >= 3 else None


def _firing(server: Server) -> dict[str, Any] | None:
    alerts = httpx.get(f"{server.url}/api/v1/alerts", timeout=2).json()["data"]["alerts"]
    for alert in alerts:
        if alert["labels"]["alertname"] == ALERT and alert["state"] == "firing":
            found: dict[str, Any] = alert
            return found
    return None


def _routed(server: Server) -> dict[str, Any] | None:
    params = {"filter": f'alertname="{ALERT}"'}
    for alert in httpx.get(f"{server.url}/api/v2/alerts", params=params, timeout=2).json():
        if alert["receivers"]:
            found: dict[str, Any] = alert
            return found
    return None


def _query_problems(server: Server, queues: list[str], start: float, only: set[str] | None) -> dict[str, str]:
    """Each dashboard query over the run so far, as Grafana would send it: "" when it returned a
    number, else what went wrong."""
    problems: dict[str, str] = {}
    for query in panel_queries(dashboard()):
        key = f"{query.panel} / {query.ref}"
        if only is not None and key not in only:
            continue
        params: dict[str, str | float] = {
            "query": substitute(query.expr, queues),
            "start": start,
            "end": time.time(),
            "step": 1,
        }
        answer = httpx.get(f"{server.url}/api/v1/query_range", params=params, timeout=10).json()
        if answer["status"] != "success":
            problems[key] = f"{answer.get('errorType')}: {answer.get('error')}"
            continue
        values = [float(v) for series in answer["data"]["result"] for _, v in series["values"]]
        problems[key] = "" if any(not math.isnan(v) for v in values) else f"no data ({len(values)} NaN values)"
    return problems


def _observe(findings: Findings, prom: Server, am: Server, hook: Receiver, *, work: Path, metrics_url: str) -> None:
    deadline = time.monotonic() + BUDGET - (time.time() - findings.started)
    findings.firing = _until(lambda: _firing(prom), deadline)
    findings.firing_seen = time.time()
    findings.third_bailout = _third_bailout(work / "daemon.log")
    with contextlib.suppress(httpx.HTTPError):  # the daemon runs until the fixture stops the sandbox
        exposition = httpx.get(metrics_url, timeout=5).text
        findings.metrics_check = run([require("promtool"), "check", "metrics"], stdin=exposition)
    findings.routed = _until(lambda: _routed(am), deadline)

    def paged() -> float | None:
        for request in hook.on("/pagerduty/"):
            if ALERT in json.dumps(request.body):
                return request.at
        return None

    findings.paged = _until(paged, deadline)
    # The `queue` variable's own query, as Grafana runs it.
    findings.queues = (
        _until(
            lambda: httpx.get(
                f"{prom.url}/api/v1/label/queue/values",
                params={"match[]": "launch_supervisor_queue_pending_items"},
                timeout=2,
            ).json()["data"],
            deadline,
        )
        or []
    )
    queues = findings.queues or [QUEUE]
    # Every query should have data by now; a histogram whose first observation is still a scrape
    # away gets a few more seconds.
    problems = _query_problems(prom, queues, findings.started, None)
    late = time.monotonic() + 15
    while any(problems.values()) and time.monotonic() < late:
        time.sleep(1)
        problems.update(_query_problems(prom, queues, findings.started, {k for k, v in problems.items() if v}))
    findings.queries = problems


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> Findings:
    """Run the sandbox, Alertmanager and Prometheus together until the page arrives; stop them all."""
    require("prometheus")
    require("promtool")
    require("prometheus-alertmanager", "alertmanager")
    require_emulator()
    tmp = tmp_path_factory.mktemp("e2e-prometheus")
    work = tmp / "work"
    daemon = f"127.0.0.1:{free_port()}"
    result = Findings()
    before = set(descendants(os.getpid()))
    clock = time.monotonic()
    command = [sys.executable, "-c", SANDBOX, daemon, str(work), str(BUDGET + 30), str(ITEMS)]
    result.started = time.time()
    sandbox = start_sandbox(command, tmp / "sandbox.log")
    try:
        with receiver() as hook:
            result.receiver = hook
            am_config, prom_config = tmp / "alertmanager.yml", tmp / "prometheus.yml"
            _alertmanager_config(am_config, tmp / "secrets", hook.url)
            (tmp / "am-data").mkdir()
            with alertmanager(am_config, tmp / "am-data", tmp / "alertmanager.log") as am:
                prometheus_config(prom_config, daemon, am.url.removeprefix("http://"))
                (tmp / "prom-data").mkdir()
                with prometheus(prom_config, tmp / "prom-data", tmp / "prometheus.log") as prom:
                    try:
                        _observe(result, prom, am, hook, work=work, metrics_url=f"http://{daemon}/metrics")
                    finally:
                        result.logs = "\n".join([prom.log_tail(), am.log_tail()])
    finally:
        stop(sandbox, signal.SIGINT, timeout=60)
        text = (tmp / "sandbox.log").read_text(errors="replace")
        result.logs += "\nsandbox output ends:\n" + "\n".join(text.splitlines()[-15:])
        # What the run started has stopped with it; anything left is a finding, then killed.
        result.left_running = _left_running(before)
        for pid in result.left_running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        result.elapsed = time.monotonic() - clock
    return result


def test_repeated_bailouts_fire_on_prometheus(findings: Findings) -> None:
    """Prometheus' own /api/v1/alerts shows LaunchSupervisorRepeatedBailouts firing for the queue,
    a page, naming the categories, within a few evaluations of the third bailout."""
    assert findings.firing is not None, f"{ALERT} never fired\n{findings.logs}"
    labels, annotations = findings.firing["labels"], findings.firing["annotations"]
    assert labels["queue"] == QUEUE
    assert labels["severity"] == "page"
    assert labels["job"] == "launch-supervisor"
    assert f"Queue {QUEUE}: " in annotations["summary"]
    for category in ("quota", "permission", "invalid_spec"):
        assert category in annotations["description"], annotations["description"]
    assert annotations["runbook_url"].endswith("docs/runbook.md#launchsupervisorrepeatedbailouts")
    assert findings.third_bailout is not None
    assert findings.firing_seen is not None
    assert findings.firing_seen - findings.third_bailout < 10, findings.firing_seen - findings.third_bailout


def test_alertmanager_routes_the_page_to_the_pager(findings: Findings) -> None:
    """Alertmanager holds the alert for the `pager` receiver only, and its PagerDuty and Opsgenie
    integrations deliver it, with the keys read from their files; nothing goes to the ticket channel."""
    assert findings.routed is not None, f"Alertmanager never routed {ALERT}\n{findings.logs}"
    assert [r["name"] for r in findings.routed["receivers"]] == ["pager"]
    assert findings.paged is not None, f"the pager was not called\n{findings.logs}"
    hook = findings.receiver
    assert hook is not None
    pagerduty = next(r for r in hook.on("/pagerduty/") if ALERT in json.dumps(r.body))
    assert pagerduty.body["routing_key"] == ROUTING_KEY
    assert pagerduty.body["event_action"] == "trigger"
    assert QUEUE in json.dumps(pagerduty.body)
    opsgenie = [r for r in hook.on("/opsgenie/") if ALERT in json.dumps(r.body)]
    assert opsgenie, [r.path for r in hook.requests]
    assert opsgenie[0].headers["Authorization"] == f"GenieKey {OPSGENIE_KEY}"
    assert not [r for r in hook.on("/slack") if ALERT in json.dumps(r.body)]


def test_every_dashboard_query_returns_data(findings: Findings) -> None:
    """Every query of every panel, and the alert annotations, parse on the real Prometheus and return
    numbers for the queue the `queue` variable lists."""
    assert findings.queues == [QUEUE]
    assert findings.queries, "no query was run"
    failing = {key: why for key, why in findings.queries.items() if why}
    assert not failing, failing


def test_promtool_check_metrics_is_clean(findings: Findings) -> None:
    """The daemon's /metrics passes promtool check metrics without a remark."""
    check = findings.metrics_check
    assert check is not None, f"the daemon's /metrics could not be read\n{findings.logs}"
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == ""
    assert check.stderr.strip() == ""


def test_the_page_came_within_the_budget_and_nothing_is_left_running(findings: Findings) -> None:
    """The page reached the pager within the budget of the sandbox's start, and once the run was
    stopped none of its processes was left."""
    assert findings.paged is not None
    assert findings.paged - findings.started < BUDGET
    assert findings.left_running == []
    print(findings.figures())  # shown with pytest -s or -rP
