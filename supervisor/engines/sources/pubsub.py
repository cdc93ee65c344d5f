"""Reading the events subscription: Google's high-level subscriber, bridged into anyio.

`SubscriberClient.subscribe()` runs on its own threads and brings flow control, lease extension and
reconnects on transient errors (docs/architecture.md, Google clients). Its callback hands each
message to the daemon's event loop with `anyio.from_thread.run`, which waits for room in a bounded
stream, so flow control reaches all the way through. When the stream ends for good (the
subscription deleted, credentials gone), it is opened again with backoff; polling keeps the daemon
correct meanwhile. Messages the daemon did not get to handle before it stopped are nacked, so they
are redelivered, not lost.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from anyio.abc import ObjectSendStream, TaskStatus
from anyio.lowlevel import current_token

log = structlog.get_logger("launch_supervisor")

MAX_MESSAGES = 100
"""Messages leased at once (flow control)."""
SHUTDOWN_SECONDS = 10.0
LEASE_SECONDS = 10


def _settled(future: Any) -> None:
    """Block until a cancelled streaming pull has shut down; its outcome no longer matters."""
    with contextlib.suppress(BaseException):  # cancelled or failed: either way it is over
        future.result()


@dataclass(frozen=True, slots=True)
class Received:
    """One message: its body and attributes, and how to settle it (both thread-safe)."""

    data: bytes
    attributes: dict[str, str]
    message: Any

    def ack(self) -> None:
        self.message.ack()

    def nack(self) -> None:
        self.message.nack()


class EventSubscriber:
    def __init__(self, subscription: str) -> None:
        self.subscription = subscription

    async def run(
        self, send: ObjectSendStream[Received], *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver messages into `send` until cancelled, resubscribing after failures; closes `send`."""
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # noqa: PLC0415 - only with a subscription

        token = current_token()
        client = await anyio.to_thread.run_sync(pubsub_v1.SubscriberClient)

        def callback(message: Any) -> None:
            received = Received(bytes(message.data), dict(message.attributes), message)
            try:
                anyio.from_thread.run(send.send, received, token=token)
            except Exception:  # noqa: BLE001 - the daemon is stopping: hand the message back
                message.nack()

        delay = 1.0
        started = False
        try:
            while True:
                flow = pubsub_v1.types.FlowControl(
                    max_messages=MAX_MESSAGES,
                    # Short leases: a message this process took but could not hand back (it died,
                    # or a nack raced its shutdown) is redelivered within seconds, not minutes.
                    min_duration_per_lease_extension=LEASE_SECONDS,
                    max_duration_per_lease_extension=LEASE_SECONDS,
                )
                future = client.subscribe(self.subscription, callback=callback, flow_control=flow)
                log.info("pubsub.subscribed", subscription=self.subscription)
                if not started:
                    task_status.started()
                    started = True
                try:
                    await anyio.to_thread.run_sync(future.result, abandon_on_cancel=True)
                except concurrent.futures.CancelledError:
                    return
                except Exception as exc:  # noqa: BLE001 - resubscribe; polling covers the gap
                    log.error(
                        "pubsub.stream_ended", subscription=self.subscription, error=f"{type(exc).__name__}: {exc}"
                    )
                finally:
                    # cancel() only starts the shutdown, which nacks the messages not yet handed
                    # over; wait for it before the client (and its channel) goes away.
                    future.cancel()
                    with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_SECONDS):
                        await anyio.to_thread.run_sync(_settled, future, abandon_on_cancel=True)
                await anyio.sleep(delay)
                delay = min(delay * 2, 30.0)
        finally:
            with anyio.CancelScope(shield=True):
                await send.aclose()  # callbacks still running now nack their message
                await anyio.to_thread.run_sync(client.close)


async def consume(subscription: str, handle: Callable[[bytes, dict[str, str]], object], stopping: anyio.Event) -> None:
    """Hand every message to `handle`, then ack it, until `stopping` is set. Messages that arrived
    but were not handled by then are nacked while the client can still do so."""
    send, receive = anyio.create_memory_object_stream[Received](MAX_MESSAGES)
    with send, receive:
        async with anyio.create_task_group() as tg:
            tg.start_soon(EventSubscriber(subscription).run, send, name="events subscriber")  # closes `send`
            with anyio.CancelScope() as consuming:
                tg.start_soon(_cancel_when_set, stopping, consuming, name="events stop")
                async for received in receive:
                    handle(received.data, received.attributes)
                    received.ack()
            while True:
                try:
                    receive.receive_nowait().nack()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            receive.close()  # callbacks still under way nack theirs too
            tg.cancel_scope.cancel()


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
