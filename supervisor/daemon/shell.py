"""The daemon: a thin shell of loops around the model (docs/architecture.md, Parts).

Tasks, all named, in one task group (started in this order, readiness last):
- the HTTP server;
- per queue, a queue loop: poll the items (one GraphQL request, more for a queue of over 100;
  `launch_supervisor.daemon.listing`), then reconcile: ask the model how
  many executions to start, and start them;
- per queue, an executions loop: list the launcher job's executions;
- one Vertex loop: list CustomJobs, then per queue fail the items nothing will run and cancel
  executions still running `stop_after_submit` seconds after their CustomJob was created; then ask
  W&B (one query per project) which live CustomJobs' runs were stopped, and cancel those stopped for
  `stop_grace` (`launch_supervisor.daemon.stops`);
- with a subscription, the events loop: each Pub/Sub message goes to the model;
- under systemd (`$NOTIFY_SOCKET`), the notifier: READY=1 once ready, WATCHDOG=1 while healthy
  (`launch_supervisor.daemon.notify`).

The shell calls the engines and hands what they return to the model (`launch_supervisor.model.state`), then
does what the model answers: report facts, wake loops, make calls. An observation that can change a
decision wakes the queue loop, so dispatch follows within milliseconds, not a poll interval. W&B
401/403 stops polling that queue (loudly), not the daemon.

Stopping: no new dispatches, loops finish their current call (each call has its own deadline),
bounded by `DRAIN_SECONDS`; then everything is cancelled. grpc.aio calls are never wrapped in a
cancel scope (docs/architecture.md, Google clients): they end by their own `timeout=`.
"""

from __future__ import annotations

import errno
import random
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus
from prometheus_client import CollectorRegistry

from launch_supervisor.clients import Clients, build_clients
from launch_supervisor.config import Config
from launch_supervisor.daemon import clock
from launch_supervisor.daemon.chores import do_chores
from launch_supervisor.daemon.heap import HeapTrim
from launch_supervisor.daemon.listing import QueueLister
from launch_supervisor.daemon.loops import Loop
from launch_supervisor.daemon.notify import Notifier
from launch_supervisor.daemon.policy import policies_of, prices_of
from launch_supervisor.daemon.reconcile import reconcile
from launch_supervisor.daemon.stops import cancel_stopped_runs
from launch_supervisor.daemon.vertex_listing import VertexListing
from launch_supervisor.engines.sources.pubsub import consume
from launch_supervisor.engines.sources.wandb import WandbAuthError
from launch_supervisor.model.inbox import Outcome
from launch_supervisor.model.state import State
from launch_supervisor.surface.asgi import serve_asgi
from launch_supervisor.surface.http import make_app
from launch_supervisor.surface.metrics import Metrics
from launch_supervisor.surface.report import report, report_outcome
from launch_supervisor.surface.status import status_view

DRAIN_SECONDS = 10.0
"""Longest wait for in-flight calls at shutdown; below systemd's TimeoutStopSec."""

log = structlog.get_logger("launch_supervisor")


class ListenError(Exception):
    """The HTTP surface cannot listen where `[http] listen` says: a startup error, not a bug."""


def _cannot_listen(listen: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        why, fix = "the address is already in use (another launch-supervisor?)", "stop what listens there, or choose"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why, fix = "the address is not one of this machine's", "choose"
    elif exc.errno == errno.EACCES:
        why, fix = "ports below 1024 need privileges", "choose"
    else:
        why, fix = str(exc.strerror or exc), "choose"
    setting = "[http] listen (or LAUNCH_SUPERVISOR_HTTP__LISTEN)"
    return f"cannot listen on {listen}: {why}; {fix} another address with {setting}"


def version() -> str:
    try:
        return metadata.version("launch-supervisor")
    except metadata.PackageNotFoundError:
        return "unknown"


class Daemon:
    """One running supervisor."""

    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry | None = None,
        clients: Callable[[Config, Any], Clients] = build_clients,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        """systemd's notify protocol; by default (and without `$NOTIFY_SOCKET`) silent."""
        self.metrics = Metrics(version(), registry)
        self.registry = self.metrics.registry
        self.state = State(counting_from=clock.now())
        self.address: tuple[str, int] | None = None
        self._build_clients = clients
        self._clients: Clients | None = None
        self._loops: dict[tuple[str, str | None], Loop] = {}
        """Every running loop, by (kind, queue)."""
        self._stopping = anyio.Event()
        self._running = 0
        self._all_ended = anyio.Event()
        self._tg: TaskGroup | None = None
        self._started = clock.now()
        self.metrics.watch(self.state, clock.now)
        for name in self.state.configure(policies_of(config), prices_of(config)).added:
            self.metrics.add_queue(name)

    # -- the HTTP surface -------------------------------------------------------------------------

    def is_ready(self) -> bool:
        return self._clients is not None and self.state.ready

    def healthy(self) -> tuple[bool, str]:
        slack = 3 * max(self.config.wandb.request_timeout, self.config.gcp.request_timeout)
        now = time.monotonic()
        late = next((why for loop in self._loops.values() if (why := loop.late(now, slack))), None)
        return (False, late) if late else (True, "ticking")

    def status(self) -> dict[str, Any]:
        uptime = clock.now() - self._started
        return status_view(self.state, clock.now(), version=version(), ready=self.is_ready(), uptime=uptime)

    def resume(self, queue: str) -> str | None:
        previous = self.state.resume(queue)
        if previous is not None:
            log.warning("breaker.resumed", queue=queue, was=previous)
            self._wake("queue", queue)
        return previous

    # -- running ----------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[tuple[str, int]] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until `stop()`; reports the HTTP address once it listens."""
        clients = self._build_clients(self.config, self.metrics.api_call)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                http = self.config.http
                try:
                    self.address = await tg.start(serve_asgi, make_app(self), http.host, http.port)
                except OSError as exc:
                    raise ListenError(_cannot_listen(http.listen, exc)) from exc
                log.info("http.listening", address=f"{self.address[0]}:{self.address[1]}")
                self._clients = clients
                for name in self.state.queues:
                    self._start_queue(name)
                poll = self.config.poll
                self._spawn(Loop("vertex", None, poll.vertex_interval, min_gap=poll.vertex_min_gap), self._vertex_loop)
                if (subscription := self.config.pubsub.subscription) is not None:
                    self._spawn(Loop("events"), lambda _: consume(subscription, self.handle_message, self._stopping))
                tg.start_soon(self.notifier.watch, self.is_ready, self.healthy, name="systemd notify")
                task_status.started(self.address)
                log.info("supervisor.started", version=version(), queues=list(self.state.queues))
                await self._stopping.wait()
                with anyio.move_on_after(DRAIN_SECONDS) as drain:
                    await self._all_ended.wait()
                if drain.cancelled_caught:
                    log.warning("supervisor.drain_timeout", seconds=DRAIN_SECONDS)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await clients.aclose()
            if self.address is not None:  # a daemon that never listened was never started
                log.info("supervisor.stopped")

    def stop(self, reason: str) -> None:
        """Stop dispatching and let the loops finish; `run` then returns."""
        if self._stopping.is_set():
            return
        log.info("supervisor.stopping", reason=reason)
        self.notifier.stopping()
        self._stopping.set()
        for loop in self._loops.values():
            loop.poke()

    def _spawn(self, loop: Loop, body: Callable[[Loop], Awaitable[None]]) -> None:
        assert self._tg is not None
        self._loops[(loop.kind, loop.queue)] = loop
        self._running += 1

        async def guarded() -> None:
            try:
                await body(loop)
            finally:
                self._running -= 1
                if self._running == 0:
                    self._all_ended.set()

        self._tg.start_soon(guarded, name=loop.name().replace(":", " "))

    def _start_queue(self, name: str, executions: bool = True) -> None:
        poll = self.config.poll
        self._spawn(Loop("queue", name, poll.queue_interval, min_gap=poll.queue_min_gap), self._queue_loop)
        if executions:
            loop = Loop("executions", name, poll.executions_interval, min_gap=poll.executions_min_gap)
            self._spawn(loop, self._executions_loop)

    def _wake(self, kind: str, queue: str | None = None, poll: bool = False) -> None:
        """Wake a loop. An executions or Vertex loop wakes to list again: a hint, acted on at most once
        per its min_gap. A queue loop lists its items first only with `poll`; else it reconciles."""
        if (loop := self._loops.get((kind, queue))) is None:
            return
        if kind == "queue" and not poll:
            loop.poke()
        elif loop.hint():
            self.metrics.hints_coalesced.labels(kind).inc()

    def _running_loop(self, loop: Loop) -> bool:
        return loop.active and not self._stopping.is_set() and loop.queue in self.state.queues

    # -- loops --------------------------------------------------------------------------------------

    async def _queue_loop(self, loop: Loop) -> None:
        assert self._clients is not None
        assert loop.queue is not None
        assert loop.interval is not None
        dispatcher, name, next_poll = self._clients.dispatcher, loop.queue, 0.0
        lister = QueueLister(self._clients.wandb, name, self.metrics)

        async def poll() -> None:
            queue = self.state.queues[name]
            try:
                items = await lister.list(queue.policy.entity)
            except WandbAuthError as exc:
                self.state.stop_polling(name, "auth")
                loop.active = False
                log.error("queue.polling_stopped", queue=name, reason="auth", error=str(exc))
                return
            report(self.metrics, [] if items is None else queue.observe_items(items, clock.now()))  # None: no queue
            self.metrics.last_poll.labels("wandb").set(time.time())

        async def dispatch() -> None:
            await reconcile(self.state.queues[name], dispatcher, self.metrics, lambda: self._running_loop(loop))

        while self._running_loop(loop):
            if loop.due(next_poll, time.monotonic()):
                # One listing per queue per tick; other wake-ups only reconcile.
                loop.listing(time.monotonic())
                jitter = self.config.poll.jitter
                next_poll = loop.listed_at + loop.interval * (1 + random.uniform(-jitter, jitter))  # noqa: S311
                await loop.step(self.metrics, poll)
            if self._running_loop(loop):
                await loop.step(self.metrics, dispatch, step="reconcile")
            await loop.nap(loop.until(next_poll) - time.monotonic(), self._stopping)

    async def _executions_loop(self, loop: Loop) -> None:
        assert self._clients is not None
        assert loop.queue is not None
        assert loop.interval is not None
        tracker, name = self._clients.executions, loop.queue

        async def step() -> None:
            launcher_job = self.state.queues[name].policy.launcher_job
            seen = await tracker.list(launcher_job, clock.now() - self.config.retention.finished_seconds)
            change = self.state.observe_executions(name, seen, clock.now(), time.monotonic())
            report(self.metrics, change.facts)
            self.metrics.last_poll.labels("cloudrun").set(time.time())
            for outcome in change.events:
                self._act(outcome, received=False)
            self._wake("queue", name, poll=change.list_items)

        await loop.run(self.metrics, step, lambda: self._running_loop(loop), self._stopping)

    async def _vertex_loop(self, loop: Loop) -> None:
        assert self._clients is not None
        assert loop.interval is not None
        clients = self._clients
        listing = VertexListing(self.config.gcp.vertex_lookback, self.config.poll.vertex_full_interval)
        heap = HeapTrim()

        async def step() -> None:
            report(self.metrics, await listing.tick(self.state, clients.vertex))
            self.metrics.last_poll.labels("vertex").set(time.time())
            heap.maybe()
            running = lambda: not self._stopping.is_set()  # noqa: E731
            for name in list(self.state.queues):  # a reload may remove a queue meanwhile
                if name in self.state.queues:
                    await do_chores(self.state, name, clients, self.metrics, running)
                    self._wake("queue", name)
            await cancel_stopped_runs(self.state, clients, self.metrics, running)

        await loop.run(self.metrics, step, lambda: not self._stopping.is_set(), self._stopping)

    # -- events (Pub/Sub) ---------------------------------------------------------------------------

    def handle_message(self, data: bytes, attributes: dict[str, str]) -> str:
        """Apply one message (the logic is the model's: docs/architecture.md, Events); returns what
        became of it. Never raises."""
        outcome = self.state.receive(data, attributes, clock.now(), time.monotonic())
        self._act(outcome, received=True)
        return outcome.result

    def _act(self, outcome: Outcome, received: bool) -> None:
        """What an event's outcome asks for: its metrics, facts and log lines, then the wake-ups."""
        report_outcome(self.metrics, outcome, received=received)
        for queue in outcome.executions:
            self._wake("executions", queue)
        if outcome.vertex:
            self._wake("vertex")
        for queue in outcome.poll:
            self._wake("queue", queue, poll=True)
        for queue in outcome.reconcile:
            self._wake("queue", queue)

    # -- reload -------------------------------------------------------------------------------------

    def reload(self, config: Config) -> list[str]:
        """Apply a new configuration's queues and intervals; returns what needs a restart instead."""
        restart = [s for s in ("wandb", "gcp", "http", "pubsub") if getattr(config, s) != getattr(self.config, s)]
        self.config = config.model_copy(update={section: getattr(self.config, section) for section in restart})
        change = self.state.configure(policies_of(self.config), prices_of(self.config))
        for name in change.added:
            self.metrics.add_queue(name)
            if self._tg is not None:
                self._start_queue(name)
            log.info("queue.added", queue=name)
        for name in change.resumed:
            if self._tg is not None:
                self._start_queue(name, executions=False)
            log.info("queue.polling_resumed", queue=name)
        for name in change.removed:
            for kind in ("queue", "executions"):
                if (loop := self._loops.pop((kind, name), None)) is not None:
                    loop.active = False
                    loop.poke()
            log.info("queue.removed", queue=name)
        return restart
