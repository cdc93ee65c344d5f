"""The Grafana dashboard: the committed JSON is what deploy/grafana/dashboard.py prints, Grafana's SDK
reads it back, it imports as it is (a `datasource` and a `queue` variable), every panel says what
healthy looks like, every metric of the daemon is on it, and every query parses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.monitoring import (
    DASHBOARD,
    DASHBOARD_SOURCE,
    ROOT,
    daemon_metric_names,
    dashboard,
    metrics_in,
    panel_queries,
    panels,
    require,
    require_module,
    run,
    substitute,
)

SDK_HINT = "needs grafana-foundation-sdk: pip install -e '.[dev]'"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ISSUE_PANELS = {
    "Queue depth": "launch_supervisor_queue_pending_items",
    "In flight by phase": "launch_supervisor_executions_in_flight",
    "Dispatches by result": "launch_supervisor_dispatches_total",
    "Bailouts by category": "launch_supervisor_bailouts_total",
    "Breaker": "launch_supervisor_breaker_open",
    "Queue wait": "launch_supervisor_queue_wait_seconds_bucket",
    "Claim latency": "launch_supervisor_claim_latency_seconds_bucket",
    "Submit latency": "launch_supervisor_submit_latency_seconds_bucket",
    "Bailout detection": "launch_supervisor_bailout_detection_seconds_bucket",
    "Execution outcomes": "launch_supervisor_executions_finished_total",
    "Execution duration by outcome": "launch_supervisor_execution_duration_seconds_bucket",
    "Vertex AI jobs by state": "launch_supervisor_vertex_jobs",
    "Vertex AI job duration by end state": "launch_supervisor_vertex_job_duration_seconds_bucket",
    "Items failed by the supervisor": "launch_supervisor_items_failed_by_supervisor_total",
    "API errors by API": "launch_supervisor_api_requests_total",
    "API latency by API": "launch_supervisor_api_request_duration_seconds_bucket",
    "Pub/Sub messages": "launch_supervisor_pubsub_messages_total",
    "Poll freshness": "launch_supervisor_last_successful_poll_timestamp_seconds",
}
"""The panels the dashboard must have, by title, and the metric each one reads."""


def test_the_committed_json_is_what_its_source_prints() -> None:
    """`python3 deploy/grafana/dashboard.py` prints launch-supervisor.json byte for byte."""
    require_module("grafana_foundation_sdk", SDK_HINT)
    result = subprocess.run(
        [sys.executable, str(DASHBOARD_SOURCE)], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == DASHBOARD.read_text(), (
        "deploy/grafana/launch-supervisor.json is stale: "
        "python3 deploy/grafana/dashboard.py > deploy/grafana/launch-supervisor.json"
    )


def test_grafanas_sdk_reads_the_json_back_unchanged() -> None:
    """The dashboard model of Grafana's SDK decodes the file and encodes it to the same JSON."""
    require_module("grafana_foundation_sdk", SDK_HINT)
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    decoded = Dashboard.from_json(dashboard())
    assert json.loads(JSONEncoder().encode(decoded)) == dashboard()


def test_it_imports_as_it_is_with_a_datasource_and_a_queue_variable() -> None:
    """No instance id; a fixed uid; a Prometheus `datasource` variable that every panel and query
    uses; a multi-value `queue` variable with All, read from the daemon's own label values."""
    board = dashboard()
    assert "id" not in board or board["id"] is None
    assert board["uid"] == "launch-supervisor"
    assert isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"datasource", "queue"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    queue = variables["queue"]
    assert queue["type"] == "query"
    assert queue["datasource"] == DATASOURCE
    assert queue["query"] == "label_values(launch_supervisor_queue_pending_items, queue)"
    assert queue["multi"] is True
    assert queue["includeAll"] is True
    for panel in panels(board):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            if "launch_supervisor_queue" in target["expr"] or "{queue" in target["expr"]:
                assert 'queue=~"$queue"' in target["expr"], panel["title"]


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    """Every panel has its own id and its own cells of the 24-column grid."""
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells


def test_every_panel_says_what_healthy_looks_like() -> None:
    """Each panel's description has a `Healthy:` part."""
    for panel in panels(dashboard()):
        assert "Healthy:" in panel.get("description", ""), panel["title"]


def test_the_panels_of_the_issue_are_there_on_their_metrics() -> None:
    """Queue depth, in flight, dispatches, bailouts, breaker, the four latencies, executions, Vertex
    jobs, items failed, API errors and latencies, Pub/Sub and poll freshness, each on its metric."""
    by_title = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels(dashboard())}
    for title, metric in ISSUE_PANELS.items():
        assert title in by_title, title
        assert metric in by_title[title], (title, metric)
    assert "histogram_quantile(0.95" in by_title["Submit latency"]


def test_every_metric_of_the_daemon_is_on_the_dashboard_and_no_other() -> None:
    """Each metric family the daemon exposes is read by some query, and no query reads a name it
    does not expose."""
    exposed = daemon_metric_names()
    used: set[str] = set()
    for query in panel_queries(dashboard()):
        used |= metrics_in(query.expr)
    assert used <= exposed, used - exposed
    families = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for name in exposed}
    read = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for name in used}
    assert families <= read, families - read


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool parses every query, with the variables as Grafana fills them in."""
    queries = panel_queries(dashboard())
    rules = [
        {"record": f"dashboard:query_{index}", "expr": substitute(q.expr, ["vertex-ai-queue", "other"])}
        for index, q in enumerate(queries)
    ]
    rule_file = tmp_path / "queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([require("promtool"), "check", "rules", str(rule_file)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout
