"""The Pub/Sub setup script, in dry-run mode: the commands and filters it would run."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "gcp" / "setup-events.sh"


def dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args, "--dry-run"], capture_output=True, text=True, check=False)


def test_creates_topic_subscription_and_three_sinks() -> None:
    """Topic, subscription, and a sink per event source, each allowed to publish."""
    out = dry_run("--project", "arr-coc", "--job", "vertex-ai-launcher", "--daemon-sa", "sup@arr-coc.iam").stdout
    assert "gcloud pubsub topics create launch-supervisor-events --project arr-coc" in out
    assert "subscriptions create launch-supervisor --project arr-coc --topic launch-supervisor-events" in out
    for sink in ("watchdog", "executions", "vertex"):
        assert f"gcloud logging sinks create launch-supervisor-{sink} " in out
    assert out.count("--role roles/pubsub.publisher") == 3
    assert "--role roles/pubsub.subscriber" in out
    assert 'subscription = "projects/arr-coc/subscriptions/launch-supervisor"' in out


def test_filters_select_the_right_logs() -> None:
    """The watchdog sink takes its jsonPayload events from the launcher jobs only."""
    out = dry_run("--project", "p", "--job", "a", "--job", "b").stdout
    watchdog = next(line for line in out.splitlines() if "sinks create launch-supervisor-watchdog" in line)
    assert 'resource.labels.job_name=\\(\\"a\\"\\ OR\\ \\"b\\"\\)' in watchdog
    assert 'jsonPayload.event:\\"watchdog.\\"' in watchdog


def test_missing_arguments_are_named() -> None:
    """Without --project or --job it says which are required and exits 2."""
    result = dry_run("--project", "p")
    assert result.returncode == 2
    assert "--project and at least one --job" in result.stderr
