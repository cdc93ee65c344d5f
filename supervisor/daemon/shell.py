"""The daemon: the loops that observe, and the reconcile that decides and acts.

Tasks, all named, in one task group (started in this order, readiness last):
- the HTTP server;
- per queue, a queue loop: poll the items (one GraphQL request), then reconcile;
- per queue, an executions loop: list the launcher job's executions, fold them into the state;
- one Vertex loop: list CustomJobs, link them to items, fail items whose job ended badly, cancel
  executions still running `stop_after_submit` seconds after their CustomJob was created.

Each loop waits its interval (jittered) or until woken: an observation that can change a decision
wakes the queue loop, so dispatch follows within milliseconds, not a poll interval. Reconciles of a
queue never overlap. A loop iteration that fails is logged and counted and the loop carries on: a
malformed answer never stops the daemon. W&B 401/403 stops polling that queue (loudly), not the
daemon.

Stopping: no new dispatches, loops finish their current call (each call has its own deadline),
bounded by `DRAIN_SECONDS`; then everything is cancelled. grpc.aio calls are never wrapped in a
cancel scope (docs/architecture.md, Google clients): they end by their own `timeout=`.
"""

from __future__ import annotations

import errno
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from google.api_core.exceptions import GoogleAPICallError
from prometheus_client import CollectorRegistry

from supervisor.asgi import serve_asgi
from supervisor.clients import Clients, build_clients
from supervisor.config import Config, QueueConfig
from supervisor.dispatch.cloudrun import DispatchRefusedError, DispatchUnknownError
from supervisor.http import make_app
from supervisor.metrics import Metrics, Snapshot
from supervisor.model.inbox import Inbox, Outcome
from supervisor.model.state import Fact, QueuePolicy, QueueState, observe_vertex, prune_vertex
from supervisor.model.vertex import VertexJob
from supervisor.sources.pubsub import MAX_MESSAGES, EventSubscriber, Received
from supervisor.sources.wandb import WandbAuthError, WandbError

DRAIN_SECONDS = 10.0
"""Longest wait for in-flight calls at shutdown; below systemd's TimeoutStopSec."""
HINT_POLL_GAP = 0.1
"""Hints poll the queue at most this often (seconds): a burst of hints coalesces into a few polls."""

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


def _tenths(seconds: float | None) -> float | None:
    """A duration for a log line: to a tenth of a second, or None when the fact has none."""
    return None if seconds is None else round(seconds, 1)


def version() -> str:
    try:
        return metadata.version("launch-supervisor")
    except metadata.PackageNotFoundError:
        return "unknown"


def policy_of(config: Config, queue: QueueConfig) -> QueuePolicy:
    b = queue.breaker
    return QueuePolicy(
        name=queue.name,
        entity=config.entity_of(queue),
        launcher_job=queue.launcher_job,
        max_inflight=queue.max_inflight,
        dispatch_budget=queue.dispatch_budget,
        claim_timeout=queue.claim_timeout,
        execution_timeout=queue.execution_timeout,
        breaker_threshold=b.threshold,
        breaker_window=b.window,
        breaker_cooldown=b.cooldown,
        breaker_max_cooldown=b.max_cooldown,
        retention_seconds=config.retention.finished_seconds,
        retention_max=config.retention.finished_max,
        stop_after_submit=queue.stop_after_submit,
    )


class Daemon:
    """One running supervisor."""

    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry | None = None,
        clients: Callable[[Config, Any], Clients] = build_clients,
    ) -> None:
        self.config = config
        self.metrics = Metrics(version(), registry)
        self.registry = self.metrics.registry
        self.states: dict[str, QueueState] = {}
        self.vertex_jobs: dict[str, VertexJob] = {}
        self.stopped: dict[str, str] = {}
        self.address: tuple[str, int] | None = None
        self._build_clients = clients
        self._clients: Clients | None = None
        self._poll_now: set[str] = set()
        """Queues whose next wake-up must poll W&B too (not only reconcile)."""
        self._locks: dict[str, anyio.Lock] = {}
        self._ticks: dict[str, float] = {}
        self._errors: dict[str, str] = {}
        """The last error of each loop, so a persisting one is logged once."""
        self._naps: dict[str, anyio.Event] = {}
        """Wake-ups of every loop, by loop name ("queue:q", "executions:q", "vertex")."""
        self._inbox = Inbox()
        """Pub/Sub handling's memory: dedupe keys, events waiting for their execution."""
        self._stopping = anyio.Event()
        self._loops = 0
        self._loops_done = anyio.Event()
        self._tg: TaskGroup | None = None
        self._started = time.time()
        self.metrics.watch(self._snapshot)
        for queue in config.queues:
            self._add_queue(queue)

    # -- surface (HTTP) -------------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        return Snapshot(self.states, list(self.vertex_jobs.values()), self.stopped)

    def is_ready(self) -> bool:
        return self._clients is not None and all(s.polled and s.recovered for s in self.states.values())

    def healthy(self) -> tuple[bool, str]:
        now = time.monotonic()
        poll = self.config.poll
        limits = {"vertex": poll.vertex_interval}
        for name in self.states:
            if name not in self.stopped:
                limits[f"queue:{name}"] = poll.queue_interval
            limits[f"executions:{name}"] = poll.executions_interval
        slack = 3 * max(self.config.wandb.request_timeout, self.config.gcp.request_timeout)
        for loop, interval in limits.items():
            last = self._ticks.get(loop)
            if last is not None and now - last > 3 * interval + slack:
                return False, f"{loop} has not ticked for {now - last:.0f}s"
        return True, "ticking"

    def status(self) -> dict[str, Any]:
        now = time.time()
        queues = {}
        for name, state in self.states.items():
            breaker = state.breaker
            reopens = breaker.reopens_at()
            queues[name] = {
                "entity": state.policy.entity,
                "launcher_job": state.policy.launcher_job,
                "polling": self.stopped.get(name, "ok"),
                "pending": state.pending_count(),
                "in_flight": {phase.value: count for phase, count in state.in_flight_by_phase().items()},
                "breaker": {
                    "state": breaker.state.value,
                    "reason": breaker.reason,
                    "cooldown_s": breaker.cooldown,
                    "reopens_in_s": None if reopens is None else round(max(0.0, reopens - now), 1),
                },
            }
        executions = sorted(
            (e for s in self.states.values() for e in s.executions.values()), key=lambda e: e.created, reverse=True
        )
        return {
            "version": version(),
            "ready": self.is_ready(),
            "uptime_s": round(now - self._started, 1),
            "queues": queues,
            "executions": [
                {
                    "name": e.name,
                    "queue": e.queue,
                    "phase": e.phase.value,
                    "category": e.category,
                    "rule": e.bailout_rule,
                    "item_id": e.item_id,
                    "vertex_job": e.vertex_job,
                    "age_s": round(now - e.created, 1),
                    "recovered": e.recovered,
                }
                for e in executions[:200]
            ],
            "vertex_jobs": [
                {"name": j.name, "queue": j.queue, "state": j.state.value, "error": j.error}
                for j in sorted(self.vertex_jobs.values(), key=lambda j: j.created, reverse=True)[:200]
            ],
        }

    def resume(self, queue: str) -> str | None:
        state = self.states.get(queue)
        if state is None:
            return None
        previous = state.breaker.state.value
        state.resume()
        log.warning("breaker.resumed", queue=queue, was=previous)
        self._poke(queue)
        return previous

    # -- running --------------------------------------------------------------------------------

    def _add_queue(self, queue: QueueConfig) -> QueueState:
        state = QueueState(policy_of(self.config, queue))
        state.event_grace = 30.0 if self.config.pubsub.subscription else 0.0
        self.states[queue.name] = state
        self._locks[queue.name] = anyio.Lock()
        self.metrics.add_queue(queue.name)
        return state

    def _poke(self, queue: str, poll: bool = False) -> None:
        """Wake the queue loop: to reconcile now, and with `poll` to list the queue first."""
        if poll:
            self._poll_now.add(queue)
        self._wake_loop(f"queue:{queue}")

    def _jittered(self, interval: float) -> float:
        jitter = self.config.poll.jitter
        return interval * (1 + random.uniform(-jitter, jitter))  # noqa: S311 - spreading polls, not security

    def _facts(self, facts: list[Fact]) -> None:
        for fact in facts:
            self.metrics.fact(fact)
            if fact.kind in ("breaker_opened", "breaker_closed"):
                log.warning(f"breaker.{fact.kind.split('_')[1]}", queue=fact.queue, reason=fact.detail)
            elif fact.kind == "bailout":
                log.warning("execution.bailout", queue=fact.queue, execution=fact.execution, category=fact.category)
            elif fact.kind == "adopted":
                log.info("execution.adopted", queue=fact.queue, execution=fact.execution)
            elif fact.kind in ("finished", "claimed", "submitted"):
                log.info(f"execution.{fact.kind}", queue=fact.queue, execution=fact.execution, outcome=fact.outcome)
            elif fact.kind == "dispatch_refused" and fact.outcome == "new":  # not again at every retry
                log.error(
                    "dispatch.refused",
                    queue=fact.queue,
                    error=fact.detail,
                    retry_in_s=_tenths(fact.seconds),
                )
            elif fact.kind == "dispatch_recovered":
                log.info(
                    "dispatch.recovered",
                    queue=fact.queue,
                    execution=fact.execution,
                    refused_for_s=_tenths(fact.seconds),
                )
            elif fact.kind == "cancel_requested":
                log.warning(
                    "execution.cancel_requested",
                    queue=fact.queue,
                    execution=fact.execution,
                    reason=fact.detail,
                    custom_job=fact.custom_job,
                    since_submit_s=_tenths(fact.seconds),
                )

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
                for name in self.states:
                    self._start_queue(name)
                self._spawn("vertex", self._vertex_loop)
                if self.config.pubsub.subscription:
                    self._spawn("events", self._events_loop)
                task_status.started(self.address)
                log.info("supervisor.started", version=version(), queues=list(self.states))
                await self._stopping.wait()
                with anyio.move_on_after(DRAIN_SECONDS) as drain:
                    await self._loops_done.wait()
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
        self._stopping.set()
        for event in self._naps.values():
            event.set()

    async def _nap(self, key: str, seconds: float) -> None:
        """Sleep `seconds`, or until the loop is woken (or the daemon stops); a wake-up that came
        while the loop was busy ends the next nap at once."""
        event = self._naps.setdefault(key, anyio.Event())
        with anyio.move_on_after(max(0.0, seconds)):
            await event.wait()
        if not self._stopping.is_set():
            self._naps[key] = anyio.Event()

    def _wake_loop(self, key: str) -> None:
        self._naps.setdefault(key, anyio.Event()).set()

    def _spawn(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        assert self._tg is not None
        self._loops += 1

        async def guarded() -> None:
            try:
                await loop()
            finally:
                self._loops -= 1
                if self._loops == 0:
                    self._loops_done.set()

        self._tg.start_soon(guarded, name=name)

    def _start_queue(self, name: str) -> None:
        self._spawn(f"queue {name}", lambda: self._queue_loop(name))
        self._spawn(f"executions {name}", lambda: self._executions_loop(name))

    # -- loops ----------------------------------------------------------------------------------

    async def _iteration(self, loop: str, step: Callable[[], Awaitable[None]]) -> None:
        """One loop step; failures are logged and counted, never fatal."""
        kind = loop.split(":", maxsplit=1)[0]
        try:
            await step()
        except WandbAuthError:
            raise
        except (WandbError, GoogleAPICallError) as exc:
            self.metrics.loop_failures.labels(kind).inc()
            error = f"{type(exc).__name__}: {exc}"
            # The same error every tick would flood the journal: log it when it starts or changes.
            if self._errors.get(loop) != error:
                log.error("loop.failed", loop=loop, error=error)
            self._errors[loop] = error
        except Exception:
            self.metrics.loop_failures.labels(kind).inc()
            log.exception("loop.failed", loop=loop)
            self._errors[loop] = "unexpected"
        else:
            if self._errors.pop(loop, None) is not None:
                log.info("loop.recovered", loop=loop)
        self._ticks[loop] = time.monotonic()

    async def _queue_loop(self, name: str) -> None:
        assert self._clients is not None
        wandb = self._clients.wandb

        next_poll = last_poll = 0.0

        async def poll() -> None:
            state = self.states[name]
            items = await wandb.list_items(state.policy.entity, name)
            self._facts(state.observe_items(items, time.time()))
            self.metrics.last_poll.labels("wandb").set(time.time())

        while not self._stopping.is_set() and name in self.states:
            hinted = name in self._poll_now and time.monotonic() >= last_poll + HINT_POLL_GAP
            if time.monotonic() >= next_poll or hinted:
                # One GraphQL request per queue per tick; other wake-ups only reconcile.
                self._poll_now.discard(name)
                last_poll = time.monotonic()
                next_poll = last_poll + self._jittered(self.config.poll.queue_interval)
                try:
                    await self._iteration(f"queue:{name}", poll)
                except WandbAuthError as exc:
                    self.stopped[name] = "auth"
                    log.error("queue.polling_stopped", queue=name, reason="auth", error=str(exc))
                    return
            if name in self.states:
                await self._iteration(f"reconcile:{name}", lambda: self._reconcile(name))
            until = min(next_poll, last_poll + HINT_POLL_GAP) if name in self._poll_now else next_poll
            await self._nap(f"queue:{name}", until - time.monotonic())

    async def _executions_loop(self, name: str) -> None:
        assert self._clients is not None
        tracker = self._clients.executions

        async def step() -> None:
            state = self.states[name]
            horizon = time.time() - self.config.retention.finished_seconds
            seen = await tracker.list(state.policy.launcher_job, horizon)
            now = time.time()
            finished_before = state.finished_at
            self._facts(state.observe_executions(seen, now))
            self._facts(state.settle(now))
            self._facts(state.post_submit(self.vertex_jobs))
            if state.finished_at > finished_before:  # the item view is stale until the next listing
                self._poke(name, poll=True)
            state.prune(now)
            self.metrics.last_poll.labels("cloudrun").set(now)
            self._retry_buffered()
            self._poke(name)

        while not self._stopping.is_set() and name in self.states:
            await self._iteration(f"executions:{name}", step)
            await self._nap(f"executions:{name}", self.config.poll.executions_interval)

    async def _vertex_loop(self) -> None:
        assert self._clients is not None
        clients = self._clients

        async def step() -> None:
            since = time.time() - self.config.gcp.vertex_lookback
            seen = await clients.vertex.list(since)
            now = time.time()
            self._facts(observe_vertex(self.vertex_jobs, seen, self.states.values(), now))
            self.metrics.last_poll.labels("vertex").set(now)
            for name, state in list(self.states.items()):  # a reload may remove a queue meanwhile
                self._facts(state.post_submit(self.vertex_jobs))
                for action in state.hung_items(self.vertex_jobs.values()) + state.orphaned_items():
                    if await clients.wandb.fail_item(action.item_id, action.message, action.stage):
                        state.item_failed(action.item_id)
                        self.metrics.items_failed.labels(name, action.reason).inc()
                        log.warning(
                            "item.failed_by_supervisor",
                            queue=name,
                            item=action.item_id,
                            reason=action.reason,
                            source=action.source,
                            message=action.message,
                        )
                await self._stop_after_submit(state)
                self._poke(name)
            prune_vertex(self.vertex_jobs, since)

        while not self._stopping.is_set():
            await self._iteration("vertex", step)
            await self._nap("vertex", self.config.poll.vertex_interval)

    async def _stop_after_submit(self, state: QueueState) -> None:
        """Cancel executions still running `stop_after_submit` after their CustomJob was created. Each
        is cancelled once: a failed call is tried again next tick, an accepted one never again."""
        assert self._clients is not None
        for action in state.stop_after_submit(self.vertex_jobs, time.time()):
            if self._stopping.is_set():
                return
            try:
                accepted = await self._clients.canceller.cancel(action.execution)
            except GoogleAPICallError as exc:
                error = f"{type(exc).__name__}: {exc}"
                if state.cancel_failed(action, error):
                    log.warning("execution.cancel_failed", queue=action.queue, execution=action.execution, error=error)
                continue
            if not accepted:
                log.info("execution.cancel_moot", queue=action.queue, execution=action.execution)
            self._facts(state.cancel_answered(action, accepted))

    async def _reconcile(self, name: str) -> None:
        """Decide and act for one queue; never two at once for the same queue."""
        assert self._clients is not None
        async with self._locks[name]:
            started = time.monotonic()
            state = self.states[name]
            now = time.time()
            decision = state.decide(now)
            self.metrics.reconcile_duration.observe(time.monotonic() - started)
            if self._stopping.is_set():
                return
            if decision.want > 0:  # it starts work, or holds some back
                log.debug(
                    "dispatch.decision",
                    queue=name,
                    start=decision.start,
                    want=decision.want,
                    pending=decision.pending,
                    why=decision.why,
                    retry_in_s=None if decision.not_before is None else round(decision.not_before - now, 1),
                )
            if decision.start == 0:
                return
            policy = state.policy
            for _ in range(decision.start):
                if self._stopping.is_set():
                    return
                dispatch_id = uuid.uuid4().hex
                try:
                    execution = await self._clients.dispatcher.run(
                        policy.launcher_job, name, policy.entity, dispatch_id, policy.execution_timeout
                    )
                except DispatchUnknownError as exc:
                    state.dispatch_unknown(time.time())
                    self.metrics.dispatches.labels(name, "unknown").inc()
                    log.warning("dispatch.unknown", queue=name, dispatch_id=dispatch_id, error=str(exc))
                    return
                except DispatchRefusedError as exc:
                    self.metrics.dispatches.labels(name, "refused").inc()
                    self._facts(state.dispatch_refused(time.time(), str(exc)))
                    return
                facts = state.dispatched(execution, time.time(), probe=decision.probe)
                self.metrics.dispatches.labels(name, "started").inc()
                log.info(
                    "dispatch.started",
                    queue=name,
                    execution=execution,
                    dispatch_id=dispatch_id,
                    probe=decision.probe,
                    pending=decision.pending,
                )
                self._facts(facts)

    # -- events (Pub/Sub) -----------------------------------------------------------------------

    async def _events_loop(self) -> None:
        subscription = self.config.pubsub.subscription
        assert subscription is not None
        send, receive = anyio.create_memory_object_stream[Received](MAX_MESSAGES)
        with send, receive:
            await self._consume_events(subscription, send, receive)

    async def _consume_events(
        self, subscription: str, send: MemoryObjectSendStream[Received], receive: MemoryObjectReceiveStream[Received]
    ) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(EventSubscriber(subscription).run, send, name="events subscriber")  # closes `send`
            with anyio.CancelScope() as consuming:
                tg.start_soon(self._cancel_on_stop, consuming, name="events stop")
                async for received in receive:
                    self.handle_message(received.data, received.attributes)
                    received.ack()
            # Stopping. Hand back what arrived but was not handled, while the client can still nack;
            # closing the stream makes callbacks still under way nack theirs too.
            while True:
                try:
                    receive.receive_nowait().nack()
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            receive.close()
            tg.cancel_scope.cancel()

    async def _cancel_on_stop(self, scope: anyio.CancelScope) -> None:
        await self._stopping.wait()
        scope.cancel()

    def handle_message(self, data: bytes, attributes: dict[str, str]) -> str:
        """Apply one message (the logic is the inbox's: docs/architecture.md, Events); returns (and
        counts) what became of it. Never raises."""
        outcome = self._inbox.receive(data, attributes, self.states, time.time(), time.monotonic())
        if outcome.reason is not None:  # once per kind: a flood must not flood the log
            log.warning("pubsub.malformed", kind=outcome.result, reason=outcome.reason)
        if outcome.error is not None:  # a message never stops the daemon
            log.error("pubsub.apply_failed", type=outcome.type, exc_info=outcome.error)
        self._act(outcome)
        self.metrics.pubsub_messages.labels(outcome.type, outcome.result).inc()
        return outcome.result

    def _act(self, outcome: Outcome) -> None:
        """The I/O an event's outcome asks for: its metric and facts, then the wake-ups."""
        if outcome.detection is not None:
            queue, seconds = outcome.detection
            self.metrics.bailout_detection.labels(queue).observe(seconds)
        for queue in outcome.executions:
            self._wake_loop(f"executions:{queue}")
        if outcome.vertex:
            self._wake_loop("vertex")
        self._facts(list(outcome.facts))
        for queue in outcome.poll:
            self._poke(queue, poll=True)
        for queue in outcome.reconcile:
            self._poke(queue)

    def _retry_buffered(self) -> None:
        """Apply buffered events whose execution is now known; count the expired."""
        for outcome in self._inbox.retry(self.states, time.time(), time.monotonic()):
            if outcome.result == "expired":
                self.metrics.pubsub_messages.labels(outcome.type, outcome.result).inc()
            self._act(outcome)

    # -- reload ---------------------------------------------------------------------------------

    def reload(self, config: Config) -> list[str]:
        """Apply a new configuration's queues and intervals; returns what needs a restart instead."""
        needs_restart = [
            section
            for section in ("wandb", "gcp", "http", "pubsub")
            if getattr(config, section) != getattr(self.config, section)
        ]
        old = {q.name for q in self.config.queues}
        self.config = config.model_copy(update={section: getattr(self.config, section) for section in needs_restart})
        for queue in config.queues:
            state = self.states.get(queue.name)
            if state is None:
                self._add_queue(queue)
                if self._tg is not None:
                    self._start_queue(queue.name)
                log.info("queue.added", queue=queue.name)
                continue
            state.policy = policy_of(self.config, queue)
            b = state.breaker
            b.threshold, b.window = queue.breaker.threshold, queue.breaker.window
            b.base_cooldown, b.max_cooldown = queue.breaker.cooldown, queue.breaker.max_cooldown
            if self.stopped.pop(queue.name, None) is not None and self._tg is not None:
                self._spawn(f"queue {queue.name}", lambda name=queue.name: self._queue_loop(name))  # type: ignore[misc]
                log.info("queue.polling_resumed", queue=queue.name)
        for name in old - {q.name for q in config.queues}:
            del self.states[name]  # its loops see it gone and end
            self._poke(name)
            log.info("queue.removed", queue=name)
        return needs_restart
