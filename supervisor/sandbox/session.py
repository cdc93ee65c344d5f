"""`launch-supervisor sandbox`: the whole system on one machine, with no cloud account.

One process tree: the W&B, Cloud Run and Vertex stand-ins (in this process); Google's Pub/Sub
emulator when it is installed; the real daemon (`launch-supervisor run`, a child process with its
HTTP surface on `--http`, restarted like systemd would if it dies); and, per Cloud Run execution, the
launcher image's entrypoint, `launch-watchdog -- wandb launch-agent`, with the unmodified agent
reaching the stand-ins as it would reach W&B and Google (see `google_front`). A traffic source enqueues the
scenario's items; a live view reads the daemon's /status, as an operator would. The run ends when
every item is terminal and no execution is left, at `--duration`, or on Ctrl+C.

This module sets a session up and runs its parts together: the daemon (`daemon_unit`), Pub/Sub
(`pubsub`), the traffic (`traffic`), the view (`view`) and, at the end, the summary (`summary`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
from anyio.abc import Process, TaskStatus

from launch_supervisor.sandbox import traffic
from launch_supervisor.sandbox.cloudrun_server import ExecutionHandle
from launch_supervisor.sandbox.daemon_unit import DaemonUnit
from launch_supervisor.sandbox.emulator import Emulator
from launch_supervisor.sandbox.errors import SandboxError
from launch_supervisor.sandbox.process_launcher import ProcessLauncher
from launch_supervisor.sandbox.pubsub import SUBSCRIPTION_PATH, TOPIC_PATH, hint_publisher, running
from launch_supervisor.sandbox.stack import ENTITY, PRICES, Stack, stand_ins
from launch_supervisor.sandbox.summary import SUMMARY_KEYS, post_submit_seconds, settled, summarize
from launch_supervisor.sandbox.vertex_server import Schedule, VertexStandIn
from launch_supervisor.sandbox.view import View, banner, progress, summary_text
from launch_supervisor.sandbox.wandb_server import LISTINGS, WandbStandIn

__all__ = ["LAUNCH_CONFIG", "QUEUE", "SUMMARY_KEYS", "Options", "Sandbox", "SandboxError"]

QUEUE = "sandbox"
JOB_RUNNING = 3.0
"""Seconds from a CustomJob's creation to RUNNING (and to its run in W&B)."""
LAUNCH_CONFIG = Path(__file__).with_name("launch-config.yaml")
"""The launcher image's launch config (images/launcher/launch-config.yaml)."""


@dataclass
class Options:
    """What the `sandbox` command was asked for; the rest are settings tests shorten."""

    items: int = 10
    scenario: str = "happy"
    duration: float = 300.0
    summary_json: Path | None = None
    pubsub: bool = True
    http: str = "127.0.0.1:9464"
    enqueue_every: float = 1.0
    """Seconds between items (happy and mixed; burst enqueues all at once)."""
    idle_timeout: float = 15.0
    """The watchdog's idle timeout: a launcher that finds no item exits after this long."""
    max_inflight: int = 4
    breaker_cooldown: float = 15.0
    stop_after_submit: float = 60.0
    """The daemon's backstop: cancel an execution still running this long after its CustomJob."""
    job_seconds: float = 8.0
    """How long each CustomJob runs once created (it is RUNNING from 3 s): longer leaves time to stop
    a run by hand."""
    stop_grace: float = 5.0
    """Seconds a run stopped in W&B keeps its CustomJob before the daemon cancels it (short here: the
    sandbox's training code ignores the stop)."""
    daily_budget: float = 100.0
    """The queues' daily_budget in dollars, priced with `prices`: far above what the sandbox spends,
    so that the budget's gauges and panels have data without holding anything."""
    prices: str = PRICES
    """The [prices] table: the shipped example for us-central1 unless a test brings its own."""
    max_queued: float | None = None
    """The queues' max_queued: seconds a CustomJob may wait for capacity."""
    no_capacity: tuple[str, ...] = ()
    """Machine or accelerator types the Vertex stand-in has no capacity for: their jobs stay PENDING."""
    on_submit: str = "stop"
    """The watchdogs' --on-submit: `keep` leaves every agent running, for the backstop to end."""
    agent: tuple[str, ...] | None = None
    """The command each execution runs after `launch-watchdog --`; None: the image's `wandb
    launch-agent`. Tests change how the agent is started (e.g. `python -I -m wandb launch-agent`,
    which skips the watchdog's start-up hook) to check what the daemon does when the watchdog
    misses a submission."""
    live: bool | None = None
    """Redraw the view in place; None: when the output is a terminal."""
    work_dir: Path | None = None
    """Where logs and the generated config go; None: a temporary directory, removed at the end."""
    listing: str = LISTINGS[0]
    """How the W&B stand-in lists the queue's items (`wandb_server.LISTINGS`)."""
    history: int = 0
    """Finished items the queue holds before the scenario's first (`WandbStandIn.add_history`)."""


@dataclass
class Sandbox:
    """One session: the stand-ins, Pub/Sub and the daemon set up for it, then traffic, the view and
    the wait for the end run together; what is left running is stopped and the summary made."""

    options: Options
    out: TextIO = field(default_factory=lambda: sys.stdout)
    stack: Stack | None = None
    dispatch_mode: str = "polling"
    work: Path = Path()
    url: str = ""
    kinds: dict[str, traffic.Kind] = field(default_factory=dict)
    """Items enqueued, by id, with what was meant to happen to them."""
    stopped: dict[str, str] = field(default_factory=dict)
    """Items whose run the scenario stopped in W&B, by id, with the run's id."""
    _launcher_env: dict[str, str] = field(default_factory=dict)
    _stopping: anyio.Event = field(default_factory=anyio.Event)
    _started: float = field(default_factory=time.monotonic)
    _view: View = field(init=False)
    _unit: DaemonUnit | None = field(default=None, init=False)
    """The daemon, once its first start is under way."""

    def __post_init__(self) -> None:
        self._view = View(self.out, self.options.live)

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        """Run the whole sandbox; returns the summary (also written to --summary-json)."""
        try:
            return await self._run()
        except BaseExceptionGroup as group:
            leaf: BaseException = group
            while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
                leaf = leaf.exceptions[0]
            if isinstance(leaf, SandboxError):
                raise leaf from None
            raise

    async def _run(self) -> dict[str, Any]:
        options = self.options
        traffic.kinds(options.scenario, options.items)  # an unknown scenario fails before anything starts
        host, _, port = options.http.rpartition(":")
        if not port.isdigit():
            raise SandboxError(f"--http {options.http!r} must be HOST:PORT, e.g. 127.0.0.1:9464")
        if options.job_seconds <= JOB_RUNNING:
            raise SandboxError(f"--job-seconds must be more than {JOB_RUNNING:g}: a CustomJob runs from then")
        if options.listing not in LISTINGS:
            raise SandboxError(f"--listing {options.listing!r}: choose one of {', '.join(LISTINGS)}")
        self.url = f"http://{host}:{port}"
        with self._work_dir() as work:
            self.work = work
            async with (
                running(options.pubsub, work, self._view.say) as emulator,
                stand_ins([QUEUE], behaviour=self._launcher) as stack,
            ):
                if emulator is not None:
                    self.dispatch_mode = "pubsub"
                self.stack = stack
                stack.wandb.known_queues.add(QUEUE)
                stack.wandb.listing = options.listing
                stack.wandb.add_history(ENTITY, QUEUE, options.history)
                stack.vertex.schedule = Schedule(pending=1.0, running=JOB_RUNNING, done=options.job_seconds)
                stack.vertex.no_capacity.update(options.no_capacity)
                self._launcher_env.update(self._agent_env(stack, emulator))
                config = work / "launch-supervisor.toml"
                config.write_text(self._config(stack, emulator))
                emulator_host = emulator.host if emulator else None
                self._view.say(
                    banner(options.scenario, options.items, emulator_host, self.url, work, wandb_url=stack.wandb_url)
                )
                async with anyio.create_task_group() as tg:
                    await tg.start(self._keep_daemon, config, emulator)
                    tg.start_soon(self._traffic, stack)
                    tg.start_soon(self._stop_runs, stack)
                    tg.start_soon(self._view.watch, self.url, self._draw)
                    tg.start_soon(self._stop_on_signal)
                    with anyio.move_on_after(options.duration):
                        await self._until_done(stack)
                    self._stopping.set()
                    if self._unit is not None:
                        await self._unit.stop()
                    tg.cancel_scope.cancel()
                summary = self.summary(stack)
                self._draw(final=True)
        self._view.say(summary_text(summary))
        if options.summary_json is not None:
            options.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    @contextlib.contextmanager
    def _work_dir(self) -> Iterator[Path]:
        if self.options.work_dir is not None:
            self.options.work_dir.mkdir(parents=True, exist_ok=True)
            yield self.options.work_dir
            return
        with tempfile.TemporaryDirectory(prefix="launch-supervisor-sandbox-") as tmp:
            yield Path(tmp)

    def _launcher(self, wandb: WandbStandIn, vertex: VertexStandIn) -> ProcessLauncher:
        """Every execution runs the launcher image's entrypoint, with the image's launch config."""
        agent = self.options.agent or (_program("wandb"), "launch-agent")
        entrypoint = [_program("launch-watchdog"), "--", *agent]

        def argv(handle: ExecutionHandle) -> list[str]:
            return [*entrypoint, *handle.args]

        return ProcessLauncher(
            argv=argv,
            env=self._launcher_env,
            log_dir=self.work / "executions",
            homes=self.work / "homes",
            home_files={".config/wandb/launch-config.yaml": LAUNCH_CONFIG},
        )

    def _agent_env(self, stack: Stack, emulator: Emulator | None) -> dict[str, str]:
        env = {
            **stack.agent_env(),
            "LAUNCH_WATCHDOG_IDLE_TIMEOUT": str(self.options.idle_timeout),
            "LAUNCH_WATCHDOG_ON_SUBMIT": self.options.on_submit,
            "LAUNCH_WATCHDOG_GRACE": "5",
        }
        if emulator is not None:
            env["PUBSUB_EMULATOR_HOST"] = emulator.host
            env["LAUNCH_WATCHDOG_EVENTS_TOPIC"] = TOPIC_PATH
        return env

    def _config(self, stack: Stack, emulator: Emulator | None) -> str:
        o = self.options
        settings = (
            f"max_inflight = {o.max_inflight}\nclaim_timeout = {o.idle_timeout + 30:g}\nexecution_timeout = 600\n"
            f"stop_after_submit = {o.stop_after_submit:g}\nstop_grace = {o.stop_grace:g}\n"
            f"daily_budget = {o.daily_budget:g}\n"
            + (f"max_queued = {o.max_queued:g}\n" if o.max_queued is not None else "")
            + f"breaker = {{ threshold = 3, window = 300, cooldown = {o.breaker_cooldown:g}, "
            f"max_cooldown = {max(120.0, o.breaker_cooldown):g} }}"
        )
        extra = f'\n[pubsub]\nsubscription = "{SUBSCRIPTION_PATH}"\n' if emulator else ""
        # With events the queue is polled as in production; polling only, more often.
        queue_interval = 5 if emulator else 2
        poll = f"queue_interval = {queue_interval}\nexecutions_interval = 3\nvertex_interval = 2\njitter = 0.1"
        log = '\n[log]\nformat = "json"\n'
        return stack.config_toml(settings, extra + log, poll=poll, listen=o.http, prices=o.prices)

    async def _keep_daemon(self, config: Path, emulator: Emulator | None, *, task_status: TaskStatus[None]) -> None:
        """The daemon, with the stand-ins' key and the emulator, kept running as its systemd unit keeps it."""
        assert self.stack is not None
        env = {**os.environ, "WANDB_API_KEY": self.stack.api_key}
        if emulator is not None:
            env["PUBSUB_EMULATOR_HOST"] = emulator.host
        argv = [_program("launch-supervisor"), "run", "--config", str(config)]
        self._unit = DaemonUnit(
            argv, env, log=self.work / "daemon.log", url=self.url, stopping=self._stopping, say=self._view.say
        )
        await self._unit.keep(task_status=task_status)

    @property
    def daemon(self) -> Process | None:
        """The daemon process running now, or the last one started."""
        return self._unit.process if self._unit is not None else None

    @property
    def daemon_restarts(self) -> int:
        return self._unit.restarts if self._unit is not None else 0

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """End the run now, as Ctrl+C does: the summary covers what happened so far."""
        self._stopping.set()

    async def _stop_on_signal(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
            async for _ in received:
                self._view.say("stopping…")
                self.stop()
                return

    async def _traffic(self, stack: Stack) -> None:
        """Enqueue the scenario's items, each announced with a hint when Pub/Sub is on."""
        await traffic.enqueue(
            stack.wandb,
            ENTITY,
            QUEUE,
            self.options.scenario,
            self.options.items,
            every=self.options.enqueue_every,
            enqueued=self.kinds,
            stopping=self._stopping,
            publish=hint_publisher(self._launcher_env.get("PUBSUB_EMULATOR_HOST"), QUEUE),
        )

    async def _stop_runs(self, stack: Stack) -> None:
        """Stop in W&B the runs the scenario says to stop, once each exists."""
        await traffic.stop_runs(stack.wandb, self.kinds, stopped=self.stopped, say=self._view.say)

    async def _until_done(self, stack: Stack) -> None:
        """Until every item is terminal, no execution runs, and the daemon has seen them all end."""
        async with httpx.AsyncClient(timeout=2.0) as client:
            while not self._stopping.is_set():
                await anyio.sleep(0.5)
                if len(self.kinds) == self.options.items and settled(stack, self.kinds):
                    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                        queues = (await client.get(f"{self.url}/status")).json()["queues"]
                        if not any(sum(q["in_flight"].values()) for q in queues.values()):
                            return

    # -- what happened ----------------------------------------------------------------------------

    def post_submit_seconds(self, stack: Stack) -> list[float]:
        """For each execution that reported a submission: its end minus its CustomJob's creation."""
        return post_submit_seconds(stack, self.work / "executions")

    def summary(self, stack: Stack) -> dict[str, Any]:
        return summarize(stack, list(self.kinds), self.work / "executions", self.dispatch_mode)

    def _draw(self, *, final: bool = False) -> None:
        if self.stack is None:
            return
        lines = progress(
            self.stack,
            self.kinds,
            items=self.options.items,
            elapsed=time.monotonic() - self._started,
            status=self._view.status or {},
            url=self.url,
        )
        self._view.draw(lines, final=final)


def _program(name: str) -> str:
    """An installed console script of this distribution, next to this Python first."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SandboxError(f"`{name}` is not on PATH: install the package (pip install 'launch-supervisor[sandbox]')")
    return found
