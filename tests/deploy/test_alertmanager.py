"""Alertmanager's config (deploy/alertmanager/alertmanager.yml): valid for amtool, pages to the pager,
tickets to email or Slack, one notification per queue, secrets read from files, and
LaunchSupervisorDown holding back the rest."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

from tests.deploy.monitoring import ALERTMANAGER_CONFIG, ALERTS, require, run

INLINE_SECRETS = {"routing_key", "service_key", "api_key", "api_url", "auth_password", "smtp_auth_password"}
"""Keys that would hold a secret in the file itself (a Slack webhook URL is one)."""


def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    return loaded


def alerts() -> dict[str, str]:
    """alertname → severity, from the rule file."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {r["alert"]: r["labels"]["severity"] for g in groups for r in g["rules"]}


def receiver_for(*labels: str) -> str:
    result = run([require("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_amtool_checks_the_config() -> None:
    """amtool check-config accepts it (unknown keys are errors there)."""
    result = run([require("amtool"), "check-config", str(ALERTMANAGER_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_alert_is_routed_by_its_severity() -> None:
    """Every alert of the rule file reaches `pager` when it pages and `tickets` otherwise."""
    for name, severity in alerts().items():
        expected = "pager" if severity == "page" else "tickets"
        assert receiver_for(f"alertname={name}", f"severity={severity}", "queue=q", "job=launch-supervisor") == expected


def test_the_pager_has_pagerduty_and_opsgenie_and_tickets_email_and_slack() -> None:
    """The pager receiver carries PagerDuty and Opsgenie examples; tickets go to email and Slack."""
    receivers = {r["name"]: r for r in config()["receivers"]}
    assert set(receivers) == {"pager", "tickets"}
    assert receivers["pager"]["pagerduty_configs"][0]["routing_key_file"].startswith("/etc/")
    assert receivers["pager"]["opsgenie_configs"][0]["api_key_file"].startswith("/etc/")
    assert receivers["tickets"]["slack_configs"][0]["api_url_file"].startswith("/etc/")
    assert receivers["tickets"]["email_configs"][0]["to"]


def test_secrets_are_read_from_files_never_written_inline() -> None:
    """No key, password or webhook URL is in the file: only paths to files holding them."""
    keys = {key for key, _ in walk(config())}
    assert not keys & INLINE_SECRETS, keys & INLINE_SECRETS
    assert {"routing_key_file", "api_key_file", "api_url_file", "smtp_auth_password_file"} <= keys


def test_alerts_are_grouped_by_queue() -> None:
    """One notification per queue, at every level of the routing tree."""
    route = config()["route"]
    assert route["group_by"] == ["queue"]
    for child in route["routes"]:
        assert child.get("group_by", ["queue"]) == ["queue"]


def test_down_inhibits_every_other_alert_of_its_job() -> None:
    """LaunchSupervisorDown is the only source; its targets match every other alert and not itself."""
    (rule,) = config()["inhibit_rules"]
    assert rule["source_matchers"] == ['alertname="LaunchSupervisorDown"']
    assert rule["equal"] == ["job"]
    matchers = [re.fullmatch(r'alertname(=~|!=)"(.+)"', m) for m in rule["target_matchers"]]
    assert all(matchers), rule["target_matchers"]

    def inhibited(name: str) -> bool:
        for m in matchers:
            assert m is not None
            operator, value = m.groups()
            if (operator == "=~") != bool(re.fullmatch(value, name)):
                return False
        return True

    assert not inhibited("LaunchSupervisorDown")
    for name in alerts():
        assert inhibited(name) == (name != "LaunchSupervisorDown"), name
