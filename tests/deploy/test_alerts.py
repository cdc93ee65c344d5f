"""The alert rules (deploy/prometheus/alerts.yml): exactly the eleven alerts, each annotated and linked
to its runbook section, checked and unit-tested by promtool, and the VM's Prometheus config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.monitoring import (
    ALERT_TESTS,
    ALERTS,
    PROMETHEUS_CONFIG,
    RUNBOOK,
    daemon_metric_names,
    metrics_in,
    require,
    run,
)

EXPECTED = {
    "LaunchSupervisorRepeatedBailouts": "page",
    "LaunchSupervisorBreakerOpen": "page",
    "LaunchSupervisorDown": "page",
    "LaunchSupervisorPollStale": "ticket",
    "LaunchSupervisorQueueStuck": "page",
    "LaunchSupervisorVertexJobsFailing": "ticket",
    "LaunchSupervisorDispatchErrors": "ticket",
    "LaunchSupervisorStoppedRunsStillRunning": "ticket",
    "LaunchSupervisorQueueListingIncomplete": "ticket",
    "LaunchSupervisorAdmissionWaitLong": "ticket",
    "LaunchSupervisorQueueOverBudget": "ticket",
}
NOT_PER_QUEUE = {"LaunchSupervisorDown", "LaunchSupervisorPollStale"}
RUNBOOK_URL = "https://github.com/OWNER/launch-supervisor/blob/main/docs/runbook.md#"


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def runbook_anchors() -> set[str]:
    """GitHub's anchors of the runbook's headings."""
    headings = re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}


def test_the_rule_file_holds_exactly_the_eleven_alerts_with_their_severity() -> None:
    """Eleven alerts, no recording rules, each with the severity the routing expects."""
    found = {rule["alert"]: rule["labels"]["severity"] for rule in rules()}
    assert found == EXPECTED
    assert len(rules()) == len(EXPECTED)


def test_every_alert_names_its_queue_and_links_its_runbook_section() -> None:
    """summary and description name the queue (the source or the instance where there is none); the
    runbook_url is an anchor of docs/runbook.md whose section says what to check and how to fix."""
    anchors = runbook_anchors()
    text = RUNBOOK.read_text()
    for rule in rules():
        name, annotations = rule["alert"], rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        if name not in NOT_PER_QUEUE:
            assert "$labels.queue" in annotations["summary"], name
            assert "$labels.queue" in annotations["description"], name
        assert annotations["runbook_url"] == RUNBOOK_URL + name.lower()
        assert name.lower() in anchors
        section = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**What it means.**", "**Check first.**", "**How to fix it", "launch-supervisor status"):
            assert part in section, (name, part)


def test_bailout_alerts_name_the_categories() -> None:
    """The two bailout alerts list the bailouts by category in their description."""
    by_name = {rule["alert"]: rule for rule in rules()}
    for name in ("LaunchSupervisorRepeatedBailouts", "LaunchSupervisorBreakerOpen"):
        description = by_name[name]["annotations"]["description"]
        assert "sum by (category)" in description
        assert ".Labels.category" in description


def test_the_group_sets_no_interval_so_the_servers_evaluation_interval_applies() -> None:
    """No rule group has an `interval:` of its own: the end-to-end test shortens evaluation through
    the global evaluation_interval of its Prometheus config, not through a copy of the rules."""
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        assert "interval" not in group, group["name"]
    assert "Testing a page end to end" in RUNBOOK.read_text()
    assert "evaluation_interval" in RUNBOOK.read_text().split("## Testing a page end to end", 1)[1]


def test_every_metric_an_alert_uses_is_one_the_daemon_exposes() -> None:
    """A misspelt metric would make an alert silently never fire."""
    exposed = daemon_metric_names()
    for rule in rules():
        used = metrics_in(rule["expr"]) | metrics_in(rule["annotations"]["description"])
        assert used <= exposed, (rule["alert"], used - exposed)


def test_every_alert_has_a_case_that_fires_and_one_that_stays_silent() -> None:
    """alerts.test.yml has, for each alert, an evaluation expecting it and one expecting nothing."""
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    assert fires == set(EXPECTED)
    assert silent == set(EXPECTED)


def test_promtool_checks_the_rules() -> None:
    """promtool check rules accepts alerts.yml."""
    result = run([require("promtool"), "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    """promtool test rules: every case of alerts.test.yml."""
    result = run([require("promtool"), "test", "rules", str(ALERT_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def _alerts_at_minute_20(tmp_path: Path, bailouts: int) -> str:
    """What promtool reports of RepeatedBailouts at minute 20 when `bailouts` bailouts of one queue
    came at minutes 10, 11, …: nothing, or the alerts it got where the case expected none."""
    steps = " ".join(str(min(max(minute - 9, 0), bailouts)) for minute in range(31))
    series = 'launch_supervisor_bailouts_total{job="launch-supervisor",instance="vm:9464",queue="q",category="crash"}'
    check = {"eval_time": "20m", "alertname": "LaunchSupervisorRepeatedBailouts", "exp_alerts": []}
    case = {"interval": "1m", "input_series": [{"series": series, "values": steps}], "alert_rule_test": [check]}
    test_file = tmp_path / f"bailouts-{bailouts}.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "tests": [case]}))
    result = run([require("promtool"), "test", "rules", str(test_file)])
    if result.returncode == 0:
        return ""
    assert "got:" in result.stdout + result.stderr, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_repeated_bailouts_two_stay_silent_three_page(tmp_path: Path) -> None:
    """Against the deployed rule file: 2 bailouts within 30 minutes raise nothing, 3 page."""
    assert _alerts_at_minute_20(tmp_path, 2) == ""
    got = _alerts_at_minute_20(tmp_path, 3)
    assert 'alertname="LaunchSupervisorRepeatedBailouts"' in got
    assert 'severity="page"' in got
    assert 'queue="q"' in got
    assert "by category: crash 3." in got


def test_the_vm_prometheus_config_is_valid_and_loads_the_rules() -> None:
    """promtool check config accepts prometheus.yml, which loads alerts.yml and scrapes the daemon's
    default address under the job name the alerts expect."""
    result = run([require("promtool"), "check", "config", str(PROMETHEUS_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "launch-supervisor")
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9464"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
