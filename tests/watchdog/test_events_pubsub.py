"""--events-topic: the same events on Pub/Sub, against Google's emulator; failures never fatal."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import Agent
from tests.emulator import PROJECT, Emulator
from tests.watchdog import agent_lines


def _pull_all(emulator: Emulator, subscription: str, expected: int) -> list[Any]:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient(client_options={"api_endpoint": emulator.host})
    received: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(received) < expected and time.monotonic() < deadline:
            response = subscriber.pull(subscription=subscription, max_messages=50, timeout=10)
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages]
                )
                received.extend(m.message for m in response.received_messages)
    finally:
        subscriber.close()
    return received


@pytest.fixture
def topic(pubsub_emulator: Emulator, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A fresh topic with one subscription, on the emulator."""
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic_path = publisher.topic_path(PROJECT, name)
    publisher.create_topic(name=topic_path)
    subscriber.create_subscription(name=subscriber.subscription_path(PROJECT, name), topic=topic_path)
    subscriber.close()
    return topic_path


def test_events_are_published_with_their_type(agent: Agent, topic: str, pubsub_emulator: Emulator) -> None:
    """Every stdout event also arrives on the topic, with attribute `type`, body byte-identical."""
    steps = [
        {"err": agent_lines.payload("item-7")},
        {"sleep": 0.1},
        {"log": "debug-cli.root.log", "text": agent_lines.SUBMITTED_LOG},
    ]
    run = agent.run(
        steps,
        args=["--grace", "2", "--events-topic", topic],
        env={"PUBSUB_EMULATOR_HOST": pubsub_emulator.host},
    )
    assert run.code == 0, run.stderr
    messages = _pull_all(pubsub_emulator, topic.replace("/topics/", "/subscriptions/"), len(run.events))
    by_type = {m.attributes["type"]: json.loads(m.data) for m in messages}
    assert sorted(by_type) == sorted(run.names)
    assert by_type["watchdog.submitted"] == run.event("watchdog.submitted")
    assert by_type["watchdog.claimed"]["item_id"] == "item-7"


def test_a_failing_topic_is_reported_and_not_fatal(agent: Agent, pubsub_emulator: Emulator) -> None:
    """Publishing to a topic that does not exist: reported on stderr, the run's outcome unchanged."""
    run = agent.run(
        [],
        args=["--idle-timeout", "0.3", "--events-topic", f"projects/{PROJECT}/topics/does-not-exist"],
        env={"PUBSUB_EMULATOR_HOST": pubsub_emulator.host},
    )
    assert run.code == 0
    assert run.event("watchdog.exited")["reason"] == "idle"
    assert "launch-watchdog: events: publishing watchdog.started" in run.stderr
    assert "NotFound" in run.stderr
