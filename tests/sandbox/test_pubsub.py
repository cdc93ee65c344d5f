"""The sandbox's Pub/Sub: said once when it is off, and on the emulator the topic, the daemon's
subscription and the enqueuer's hints, with PUBSUB_EMULATOR_HOST set only while it runs."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from launch_supervisor.model.events import ITEM_ADDED, item_added
from launch_supervisor.sandbox import pubsub
from tests.emulator import require_emulator

pytestmark = pytest.mark.anyio


async def test_off_it_is_polling_only_said_once(tmp_path: Path) -> None:
    said: list[str] = []
    async with pubsub.running(False, tmp_path, said.append) as emulator:
        assert emulator is None
    assert said == ["Pub/Sub: off (--no-pubsub): dispatch by polling only; bailout categories are unknown."]
    assert pubsub.hint_publisher(None, "q") is None


async def test_without_the_emulator_it_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pubsub, "emulator_available", lambda: False)
    said: list[str] = []
    async with pubsub.running(True, tmp_path, said.append) as emulator:
        assert emulator is None
    assert len(said) == 1
    assert "google-cloud-cli-pubsub-emulator" in said[0]


async def test_on_the_emulator_a_hint_reaches_the_daemon_s_subscription(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_emulator()
    from google.api_core.client_options import ClientOptions
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "elsewhere:1")
    said: list[str] = []
    async with pubsub.running(True, tmp_path, said.append) as emulator:
        assert emulator is not None
        assert os.environ["PUBSUB_EMULATOR_HOST"] == emulator.host
        publish = pubsub.hint_publisher(emulator.host, "q")
        assert publish is not None
        await anyio.to_thread.run_sync(publish, "item-1")
        subscriber = pubsub_v1.SubscriberClient(client_options=ClientOptions(api_endpoint=emulator.host))
        try:
            pulled = await anyio.to_thread.run_sync(
                lambda: subscriber.pull(subscription=pubsub.SUBSCRIPTION_PATH, max_messages=10, timeout=30)
            )
        finally:
            subscriber.close()
    assert said == []
    assert os.environ["PUBSUB_EMULATOR_HOST"] == "elsewhere:1"  # as it was before
    [received] = pulled.received_messages
    assert received.message.data == item_added("q", item_id="item-1")
    assert received.message.attributes["type"] == ITEM_ADDED
