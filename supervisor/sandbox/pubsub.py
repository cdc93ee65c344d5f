"""The sandbox's Pub/Sub: Google's emulator with the events topic and the daemon's subscription, and
the hint an enqueuer publishes after adding an item.

Optional: without the emulator (not installed, or --no-pubsub) the daemon dispatches by polling
only, and says so once. Google's Pub/Sub client is imported only when the emulator is in use.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio

from launch_supervisor.model.events import ITEM_ADDED, item_added
from launch_supervisor.sandbox.emulator import Emulator, EmulatorError, emulator_available
from launch_supervisor.sandbox.errors import SandboxError
from launch_supervisor.sandbox.stack import PROJECT

TOPIC = "launch-events"
SUBSCRIPTION = "launch-supervisor"
TOPIC_PATH = f"projects/{PROJECT}/topics/{TOPIC}"
"""Where the watchdogs publish their events and the enqueuer its hints."""
SUBSCRIPTION_PATH = f"projects/{PROJECT}/subscriptions/{SUBSCRIPTION}"
"""What the daemon reads them from."""


@contextlib.asynccontextmanager
async def running(enabled: bool, work: Path, say: Callable[[str], None]) -> AsyncIterator[Emulator | None]:
    """The emulator with the topic and subscription, or None (said once) for polling only. While it
    runs, PUBSUB_EMULATOR_HOST points this process's Google clients at it."""
    if not enabled:
        say("Pub/Sub: off (--no-pubsub): dispatch by polling only; bailout categories are unknown.")
        yield None
        return
    if not emulator_available():
        say(
            "Pub/Sub: the emulator is not installed, so dispatch is by polling only and bailout "
            "categories are unknown. To see events, install the Google Cloud CLI's Pub/Sub emulator "
            "(Debian package google-cloud-cli-pubsub-emulator)."
        )
        yield None
        return
    data = work / "pubsub"
    data.mkdir(exist_ok=True)
    try:
        emulator = await anyio.to_thread.run_sync(lambda: Emulator(data, project=PROJECT))
    except EmulatorError as exc:
        raise SandboxError(f"{exc}; run with --no-pubsub to use polling only") from exc
    # The Google clients of this process, the daemon and the watchdogs all find it this way.
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
    try:
        await anyio.to_thread.run_sync(create_topic, emulator.host)
        yield emulator
    finally:
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous
        await anyio.to_thread.run_sync(emulator.stop)


def create_topic(host: str) -> None:
    """The events topic and the daemon's subscription, on the emulator at `host`."""
    from google.api_core.client_options import ClientOptions  # noqa: PLC0415 - only with the emulator
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # noqa: PLC0415

    options = ClientOptions(api_endpoint=host)
    publisher = pubsub_v1.PublisherClient(client_options=options)
    subscriber = pubsub_v1.SubscriberClient(client_options=options)
    try:
        topic = publisher.topic_path(PROJECT, TOPIC)
        publisher.create_topic(name=topic)
        subscriber.create_subscription(
            name=subscriber.subscription_path(PROJECT, SUBSCRIPTION), topic=topic, ack_deadline_seconds=10
        )
    finally:
        subscriber.close()


def hint_publisher(host: str | None, queue: str) -> Callable[[str], None] | None:
    """What an enqueuer does after adding an item to `queue` (`launch-supervisor notify`), or None
    without an emulator."""
    if host is None:
        return None
    from google.api_core.client_options import ClientOptions  # noqa: PLC0415 - only with the emulator
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # noqa: PLC0415

    publisher = pubsub_v1.PublisherClient(client_options=ClientOptions(api_endpoint=host))
    topic = publisher.topic_path(PROJECT, TOPIC)

    def publish(item_id: str) -> None:
        publisher.publish(topic, item_added(queue, item_id=item_id), type=ITEM_ADDED).result(timeout=30)

    return publish
