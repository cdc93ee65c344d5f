"""Publishing events to Pub/Sub, off the watchdog's main thread.

google-cloud-pubsub is imported here only, and only when `--events-topic` is set, so the watchdog
itself needs nothing beyond the standard library. Everything runs on one background thread: the
import (about a second), client creation, and publishing. The main loop only enqueues, so a slow or
failing Pub/Sub can never delay stopping the agent; failures are reported and otherwise ignored,
since the same events are on stdout for Cloud Logging to route.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class Publisher:
    """Publishes (type, JSON bytes) pairs to one topic with attribute `type`."""

    def __init__(self, topic: str, report: Callable[[str], None]) -> None:
        self.topic = topic
        self._report = report
        self._queue: queue.SimpleQueue[tuple[str, bytes] | None] = queue.SimpleQueue()
        self._pending: list[tuple[str, Future[Any]]] = []
        self._thread = threading.Thread(target=self._run, name="launch-watchdog-publisher", daemon=True)
        self._thread.start()

    def publish(self, event_type: str, data: bytes) -> None:
        self._queue.put((event_type, data))

    def close(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for every event to be published (or to fail)."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._report(f"events: gave up waiting for Pub/Sub after {timeout:g}s; some events were not published")

    def _failed(self, event_type: str, exc: BaseException) -> None:
        self._report(f"events: publishing {event_type} to {self.topic} failed: {type(exc).__name__}: {exc}")

    def _run(self) -> None:
        try:
            from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # noqa: PLC0415 - only when publishing

            client = pubsub_v1.PublisherClient()
        except ImportError:
            self._report(
                "events: --events-topic needs google-cloud-pubsub; install it with "
                "pip install 'launch-supervisor[pubsub]'. Events go to stdout only."
            )
            client = None
        except Exception as exc:  # noqa: BLE001 - credentials or config: report, never fail the run
            self._report(f"events: cannot create a Pub/Sub client ({type(exc).__name__}: {exc}); stdout only")
            client = None
        while (item := self._queue.get()) is not None:
            if client is None:
                continue
            event_type, data = item
            try:
                future = client.publish(self.topic, data, type=event_type)
            except Exception as exc:  # noqa: BLE001 - a bad topic name, a stopped client
                self._failed(event_type, exc)
                continue
            self._pending.append((event_type, future))
        for event_type, future in self._pending:
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - each failure is reported, none is fatal
                self._failed(event_type, exc)
