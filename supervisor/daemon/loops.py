"""The daemon's loops as records: one `Loop` per loop, holding what the shell needs to run, wake,
stop and watch it.

A loop waits its interval or until woken; a wake-up that comes while it is busy ends its next wait
at once, so none is lost. A hint (an event saying something changed) makes a loop list early, but at
most once per `min_gap`: hints that arrive while a listing is already due share it, so a flood of
events costs one listing per gap, not one each. A step that fails is logged and counted and the loop carries on: a
malformed answer never stops the daemon. The same error at every tick is logged when it starts or
changes, and its end once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import structlog
from google.api_core.exceptions import GoogleAPICallError

from launch_supervisor.engines.sources.wandb import WandbError
from launch_supervisor.surface.metrics import Metrics

log = structlog.get_logger("launch_supervisor")


@dataclass(eq=False)
class Loop:
    """One loop: `kind` (queue | executions | vertex | events), the queue it serves, if any."""

    kind: str
    queue: str | None = None
    interval: float | None = None
    """How often it must tick for /healthz; None when it is not watched (it waits for messages)."""
    wake: anyio.Event = field(default_factory=anyio.Event)
    last_tick: float | None = None
    """Monotonic time of the end of its latest step."""
    errors: dict[str, str] = field(default_factory=dict)
    """The latest error of each of its steps that is failing, by step name."""
    min_gap: float = 0.0
    """Least seconds between the starts of two listings when a hint asks for the second."""
    hinted: bool = False
    """A hint asked to list again; cleared when a listing starts."""
    listed_at: float = float("-inf")
    """Monotonic time the latest listing started."""
    active: bool = True
    """False once its queue is removed or its polling stopped: it ends at its next turn."""

    def name(self, step: str | None = None) -> str:
        """As logs and the health check name it: `queue:q`, `reconcile:q`, `vertex`."""
        kind = step or self.kind
        return kind if self.queue is None else f"{kind}:{self.queue}"

    def poke(self) -> None:
        self.wake.set()

    def hint(self) -> bool:
        """Ask for a listing as soon as `min_gap` allows; True when one was already due (the hint
        coalesced into it)."""
        if self.hinted:
            return True
        self.hinted = True
        self.poke()
        return False

    def due(self, next_tick: float, now: float) -> bool:
        """Whether to list now: its interval has passed, or a hint came and the gap since the latest
        listing has."""
        return now >= next_tick or (self.hinted and now >= self.listed_at + self.min_gap)

    def listing(self, now: float) -> None:
        """A listing starts: hints from now on ask for the next one."""
        self.hinted, self.listed_at = False, now

    def until(self, next_tick: float) -> float:
        """Monotonic time of the next listing, as things stand."""
        return min(next_tick, self.listed_at + self.min_gap) if self.hinted else next_tick

    async def nap(self, seconds: float, stopping: anyio.Event) -> None:
        """Wait `seconds`, or until poked (or the daemon stops)."""
        with anyio.move_on_after(max(0.0, seconds)):
            await self.wake.wait()
        if not stopping.is_set():
            self.wake = anyio.Event()

    async def step(self, metrics: Metrics, call: Callable[[], Awaitable[None]], step: str | None = None) -> None:
        """One step (by default, named after the loop); failures are logged and counted, never fatal."""
        kind = step or self.kind
        name = self.name(step)
        try:
            await call()
        except (WandbError, GoogleAPICallError) as exc:
            metrics.loop_failures.labels(kind).inc()
            error = f"{type(exc).__name__}: {exc}"
            if self.errors.get(kind) != error:
                log.error("loop.failed", loop=name, error=error)
            self.errors[kind] = error
        except Exception:
            metrics.loop_failures.labels(kind).inc()
            log.exception("loop.failed", loop=name)
            self.errors[kind] = "unexpected"
        else:
            if self.errors.pop(kind, None) is not None:
                log.info("loop.recovered", loop=name)
        self.last_tick = time.monotonic()

    async def run(
        self, metrics: Metrics, step: Callable[[], Awaitable[None]], running: Callable[[], bool], stopping: anyio.Event
    ) -> None:
        """Run `step` every interval, or sooner when hinted, but never twice within `min_gap`: the
        executions and Vertex loops (the queue loop also reconciles between its listings)."""
        assert self.interval is not None
        next_tick = 0.0
        while running():
            if self.due(next_tick, time.monotonic()):
                self.listing(time.monotonic())
                next_tick = self.listed_at + self.interval
                await self.step(metrics, step)
            await self.nap(self.until(next_tick) - time.monotonic(), stopping)

    def late(self, now: float, slack: float) -> str | None:
        """Why /healthz should fail for this loop: it has not ticked within three intervals (plus
        `slack` for calls that take their whole deadline)."""
        if not self.active or self.interval is None or self.last_tick is None:
            return None
        if now - self.last_tick > 3 * self.interval + slack:
            return f"{self.name()} has not ticked for {now - self.last_tick:.0f}s"
        return None
