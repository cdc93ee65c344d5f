"""Prometheus, promtool, Alertmanager and amtool for the tests of deploy/prometheus, deploy/alertmanager
and deploy/grafana.

The programs come from Debian's packages `prometheus` and `prometheus-alertmanager`. Where one is
missing its tests are skipped with that hint, except under CI (`CI=true`), where that is a failure,
as for the Pub/Sub emulator (tests/emulator.py). Servers run on 127.0.0.1 only, with their data in a
temporary directory, and are stopped by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARD_SOURCE = ROOT / "deploy" / "grafana" / "dashboard.py"
DASHBOARD = ROOT / "deploy" / "grafana" / "launch-supervisor.json"
RUNBOOK = ROOT / "docs" / "runbook.md"

INSTALL_HINT = (
    "needs Prometheus and Alertmanager (promtool, prometheus, amtool, prometheus-alertmanager): "
    "apt-get install -y prometheus prometheus-alertmanager"
)
METRIC = re.compile(r"\blaunch_supervisor_[a-z_]+")


def require(*names: str) -> str:
    """The first of `names` on PATH; skip without any, except under CI, where that fails."""
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    message = f"{' or '.join(names)} not found: {INSTALL_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_module(name: str, hint: str) -> None:
    """Skip without the Python module `name`, except under CI, where that fails."""
    try:
        __import__(name)
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail(hint)
        pytest.skip(hint)


def run(argv: Sequence[str], *, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def daemon_metric_names() -> set[str]:
    """Every sample name the daemon can expose, as prometheus_client writes them (`_total` for
    counters, `_bucket`/`_count`/`_sum` for histograms), from the daemon's own Metrics."""
    from prometheus_client import CollectorRegistry

    from launch_supervisor.model.state import State
    from launch_supervisor.surface.metrics import Metrics

    metrics = Metrics("test", CollectorRegistry())
    metrics.watch(State())
    names: set[str] = set()
    for family in metrics.registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
        else:
            names.add(family.name)
    return names


def metrics_in(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


# -- the dashboard's queries ----------------------------------------------------------------------


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref: str
    expr: str


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but the rows."""
    return [p for p in board["panels"] if p["type"] != "row"]


def panel_queries(board: dict[str, Any]) -> list[PanelQuery]:
    """Every query of every panel, and the dashboard's annotation queries."""
    found = [PanelQuery(p["title"], t["refId"], t["expr"]) for p in panels(board) for t in p.get("targets", [])]
    found += [
        PanelQuery(f"annotation {a['name']}", "-", a["expr"]) for a in board["annotations"]["list"] if "expr" in a
    ]
    return found


def substitute(expr: str, queues: Sequence[str], rate_interval: str = "10s") -> str:
    """The query as Grafana sends it: `$queue` as a regex of the selected values, `$__rate_interval`
    as the interval it works out from the scrape interval and the step."""
    return expr.replace("$__rate_interval", rate_interval).replace("$queue", "(" + "|".join(queues) + ")")


# -- servers ----------------------------------------------------------------------------------------


def free_port() -> int:
    from launch_supervisor.sandbox.emulator import free_port as _free_port

    return _free_port()


@dataclass
class Server:
    """A server process of ours, its address and its log."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"{self.name} log ({self.log}) ends:\n" + "\n".join(text.splitlines()[-lines:])


def stop(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal `process` by its pid, then SIGKILL its process group if it is still there."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@contextlib.contextmanager
def running(name: str, argv: Sequence[str], url: str, log: Path, ready_path: str = "/-/ready") -> Iterator[Server]:
    """Start a server in a session of its own; yield it once `ready_path` answers 200; stop it by pid."""
    with log.open("wb") as out:
        process = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, process, url, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode} on start\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + ready_path, timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"{name} was not ready within 30 s\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        stop(process)


def start_sandbox(command: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """The sandbox (or any command) in a session of its own, unbuffered, its output on `log`: stopped
    with `stop`, which signals it and then its whole group."""
    with log.open("wb") as out:
        return subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def prometheus_config(path: Path, daemon: str, alertmanager_address: str) -> None:
    """deploy/prometheus/prometheus.yml with the test's addresses and its 1-s intervals (the documented
    override for rule groups without an `interval:` of their own), alerts.yml loaded by its path."""
    import yaml

    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(ALERTS)]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [alertmanager_address]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "launch-supervisor")
    job["static_configs"][0]["targets"] = [daemon]
    path.write_text(yaml.safe_dump(config))


def prometheus(config: Path, data: Path, log: Path) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    argv = [
        require("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return running("prometheus", argv, f"http://127.0.0.1:{port}", log)


def alertmanager(config: Path, data: Path, log: Path) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    argv = [
        require("prometheus-alertmanager", "alertmanager"),
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port: a single instance, nothing on 0.0.0.0
    ]
    return running("alertmanager", argv, f"http://127.0.0.1:{port}", log)


# -- a local stand-in for PagerDuty, Opsgenie and Slack ------------------------------------------------


@dataclass(frozen=True)
class Received:
    at: float
    """time.time() when it arrived."""
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """Records every POST it is sent; answers 202 with an empty JSON object."""

    url: str
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path)]


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    record: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body: Any = json.loads(raw or b"null")
            except ValueError:
                body = raw.decode(errors="replace")
            with record.lock:
                record.requests.append(Received(time.time(), self.path, dict(self.headers.items()), body))
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
