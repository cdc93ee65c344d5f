"""`launch-supervisor sandbox`: the whole system on one machine, with no cloud account.

One process tree: the W&B, Cloud Run and Vertex stand-ins (in this process); Google's Pub/Sub
emulator when it is installed; the real daemon (`launch-supervisor run`, a child process with its
HTTP surface on `--http`, restarted like systemd would if it dies); and, per Cloud Run execution, the
launcher image's entrypoint, `launch-watchdog -- wandb launch-agent`, with the unmodified agent
reaching the stand-ins as it would reach W&B and Google (see `google_front`). A traffic source enqueues the
scenario's items; a live view reads the daemon's /status, as an operator would. The run ends when
every item is terminal and no execution is left, at `--duration`, or on Ctrl+C.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
from anyio.abc import Process, TaskStatus

from supervisor.model.events import ITEM_ADDED, item_added
from supervisor.sandbox import traffic
from supervisor.sandbox.cloudrun_server import ExecutionHandle
from supervisor.sandbox.emulator import Emulator, EmulatorError, emulator_available
from supervisor.sandbox.process_launcher import ProcessLauncher
from supervisor.sandbox.stack import ENTITY, PROJECT, Stack, stand_ins
from supervisor.sandbox.vertex_server import Schedule, VertexStandIn
from supervisor.sandbox.wandb_server import WandbStandIn

QUEUE = "sandbox"
LAUNCH_CONFIG = Path(__file__).with_name("launch-config.yaml")
"""The launcher image's launch config (images/launcher/launch-config.yaml)."""
TOPIC = "launch-events"
SUBSCRIPTION = "launch-supervisor"
RESTART_DELAY = 1.0
"""Seconds before a daemon that died is started again (systemd's RestartSec)."""
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL = 10.0
"""At most START_LIMIT_BURST starts within START_LIMIT_INTERVAL seconds: the start limit systemd
applies to the unit (deploy/systemd/launch-supervisor.service keeps systemd's defaults,
StartLimitBurst=5 and StartLimitIntervalSec=10s). A daemon that keeps dying is not started forever."""
CLEAN_EXITS = frozenset({0, -signal.SIGHUP, -signal.SIGINT, -signal.SIGTERM, -signal.SIGPIPE})
"""Exits systemd's Restart=on-failure counts as clean, and so does not restart."""
SUMMARY_KEYS = (
    "items_submitted",
    "items_terminal",
    "items_non_terminal",
    "executions_started",
    "max_executions_per_item",
    "vertex_jobs_created",
    "duplicates",
    "outcomes",
    "bailouts",
    "items_failed_by_supervisor",
    "submit_latency_p50_s",
    "submit_latency_p95_s",
    "dispatch_mode",
)


class SandboxError(Exception):
    """The sandbox cannot start; the message says why and what to do."""


@dataclass
class Options:
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
    on_submit: str = "stop"
    """The watchdogs' --on-submit: `keep` leaves every agent running, for the backstop to end."""
    live: bool | None = None
    """Redraw the view in place; None: when the output is a terminal."""
    work_dir: Path | None = None
    """Where logs and the generated config go; None: a temporary directory, removed at the end."""


@dataclass
class Sandbox:
    options: Options
    out: TextIO = field(default_factory=lambda: sys.stdout)
    stack: Stack | None = None
    daemon: Process | None = None
    daemon_restarts: int = 0
    dispatch_mode: str = "polling"
    work: Path = Path()
    url: str = ""
    kinds: dict[str, traffic.Kind] = field(default_factory=dict)
    """Items enqueued, by id, with what was meant to happen to them."""
    _launcher_env: dict[str, str] = field(default_factory=dict)
    _stopping: anyio.Event = field(default_factory=anyio.Event)
    _status: dict[str, Any] | None = None
    """The daemon's last /status answer."""
    _lines_drawn: int = 0
    _started: float = field(default_factory=time.monotonic)

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
        self.url = f"http://{host}:{port}"
        with self._work_dir() as work:
            self.work = work
            async with self._pubsub() as emulator, stand_ins([QUEUE], behaviour=self._launcher) as stack:
                self.stack = stack
                stack.wandb.known_queues.add(QUEUE)
                stack.vertex.schedule = Schedule(pending=1.0, running=3.0, done=8.0)
                self._launcher_env.update(self._agent_env(stack, emulator))
                config = work / "launch-supervisor.toml"
                config.write_text(self._config(stack, emulator))
                self._say(self._banner(emulator))
                async with anyio.create_task_group() as tg:
                    await tg.start(self._keep_daemon, config, emulator)
                    tg.start_soon(self._traffic, stack)
                    tg.start_soon(self._view)
                    tg.start_soon(self._stop_on_signal)
                    with anyio.move_on_after(options.duration):
                        await self._until_done(stack)
                    self._stopping.set()
                    await self._stop_daemon()
                    tg.cancel_scope.cancel()
                summary = self.summary(stack)
                self._draw(final=True)
        self._say(self._summary_text(summary))
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

    @contextlib.asynccontextmanager
    async def _pubsub(self) -> AsyncIterator[Emulator | None]:
        """The emulator with the topic and subscription, or None (said once) for polling only."""
        if not self.options.pubsub:
            self._say("Pub/Sub: off (--no-pubsub): dispatch by polling only; bailout categories are unknown.")
            yield None
            return
        if not emulator_available():
            self._say(
                "Pub/Sub: the emulator is not installed, so dispatch is by polling only and bailout "
                "categories are unknown. To see events, install the Google Cloud CLI's Pub/Sub emulator "
                "(Debian package google-cloud-cli-pubsub-emulator)."
            )
            yield None
            return
        data = self.work / "pubsub"
        data.mkdir(exist_ok=True)
        try:
            emulator = await anyio.to_thread.run_sync(lambda: Emulator(data, project=PROJECT))
        except EmulatorError as exc:
            raise SandboxError(f"{exc}; run with --no-pubsub to use polling only") from exc
        # The Google clients of this process, the daemon and the watchdogs all find it this way.
        previous = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
        try:
            await anyio.to_thread.run_sync(_create_topic, emulator.host)
            self.dispatch_mode = "pubsub"
            yield emulator
        finally:
            if previous is None:
                os.environ.pop("PUBSUB_EMULATOR_HOST", None)
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = previous
            await anyio.to_thread.run_sync(emulator.stop)

    def _launcher(self, wandb: WandbStandIn, vertex: VertexStandIn) -> ProcessLauncher:
        """Every execution runs the launcher image's entrypoint, with the image's launch config."""
        entrypoint = [_program("launch-watchdog"), "--", _program("wandb"), "launch-agent"]

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
            env["LAUNCH_WATCHDOG_EVENTS_TOPIC"] = f"projects/{PROJECT}/topics/{TOPIC}"
        return env

    def _config(self, stack: Stack, emulator: Emulator | None) -> str:
        o = self.options
        settings = (
            f"max_inflight = {o.max_inflight}\nclaim_timeout = {o.idle_timeout + 30:g}\nexecution_timeout = 600\n"
            f"stop_after_submit = {o.stop_after_submit:g}\n"
            f"breaker = {{ threshold = 3, window = 300, cooldown = {o.breaker_cooldown:g}, "
            f"max_cooldown = {max(120.0, o.breaker_cooldown):g} }}"
        )
        extra = f'\n[pubsub]\nsubscription = "projects/{PROJECT}/subscriptions/{SUBSCRIPTION}"\n' if emulator else ""
        # With events the queue is polled as in production; polling only, more often.
        queue_interval = 5 if emulator else 2
        poll = f"queue_interval = {queue_interval}\nexecutions_interval = 3\nvertex_interval = 2\njitter = 0.1"
        return stack.config_toml(settings, extra + '\n[log]\nformat = "json"\n', poll=poll, listen=o.http)

    async def _keep_daemon(self, config: Path, emulator: Emulator | None, *, task_status: TaskStatus[None]) -> None:
        """Run the daemon and start it again whenever it dies, during a start or later, as the systemd
        unit does (Restart=on-failure, RestartSec, the start limit). Only a first start that fails, or
        a daemon past the start limit, ends the sandbox: starting it again would not help."""
        assert self.stack is not None
        env = {**os.environ, "WANDB_API_KEY": self.stack.api_key}
        if emulator is not None:
            env["PUBSUB_EMULATOR_HOST"] = emulator.host
        argv = [_program("launch-supervisor"), "run", "--config", str(config)]
        starts: list[float] = []
        """When the daemon was started, within the start limit's interval."""
        first = True
        with (self.work / "daemon.log").open("ab") as log_file:
            try:
                while True:
                    starts.append(time.monotonic())
                    # Its own session: Ctrl+C reaches the sandbox, which stops the daemon in order.
                    self.daemon = await anyio.open_process(
                        argv, env=env, stdout=log_file, stderr=log_file, start_new_session=True
                    )
                    if first:
                        await self._wait_ready(self.daemon)
                        task_status.started()
                        first = False
                    code = await self.daemon.wait()
                    if self._stopping.is_set():
                        return
                    if code in CLEAN_EXITS:
                        self._say(f"the daemon {_ended(code)}, a clean stop: it is not started again")
                        return
                    restart_at = time.monotonic() + RESTART_DELAY
                    starts = [at for at in starts if restart_at - at < START_LIMIT_INTERVAL]
                    if len(starts) >= START_LIMIT_BURST:
                        raise SandboxError(
                            f"the daemon {_ended(code)} after {len(starts)} starts within {START_LIMIT_INTERVAL:g} s, "
                            f"the systemd unit's start limit, so it is not started again; {self._daemon_log_tail()}"
                        )
                    log = self.work / "daemon.log"
                    self._say(f"the daemon {_ended(code)}; starting it again in {RESTART_DELAY:g} s (see {log})")
                    await anyio.sleep(RESTART_DELAY)
                    if self._stopping.is_set():
                        return
                    self.daemon_restarts += 1
            finally:
                with anyio.CancelScope(shield=True):
                    await self._stop_daemon()

    async def _wait_ready(self, process: Process) -> None:
        """Until the first daemon answers /readyz; one that cannot start at all is a SandboxError."""
        async with httpx.AsyncClient(timeout=1.0) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if process.returncode is not None:
                    tail = self._daemon_log_tail()
                    hint = "\n(is the address already in use? choose another with --http)" if "in use" in tail else ""
                    raise SandboxError(f"the daemon {_ended(process.returncode)} on start; {tail}{hint}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                await anyio.sleep(0.1)
        raise SandboxError(f"the daemon did not become ready within 30 s; see {self.work / 'daemon.log'}")

    def _daemon_log_tail(self) -> str:
        log = self.work / "daemon.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-3:])
        return f"{log} ends:\n{tail}"

    async def _stop_daemon(self) -> None:
        process = self.daemon
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(15):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """End the run now, as Ctrl+C does: the summary covers what happened so far."""
        self._stopping.set()

    async def _stop_on_signal(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
            async for _ in received:
                self._say("stopping…")
                self.stop()
                return

    async def _traffic(self, stack: Stack) -> None:
        """Enqueue the scenario's items, each announced with a hint when Pub/Sub is on."""
        publish = _hint_publisher(self._launcher_env.get("PUBSUB_EMULATOR_HOST"))
        burst = self.options.scenario == "burst"
        for index, kind in enumerate(traffic.kinds(self.options.scenario, self.options.items)):
            if self._stopping.is_set():
                return
            item_id = stack.wandb.enqueue(ENTITY, QUEUE, traffic.run_spec(kind, ENTITY, index))
            self.kinds[item_id] = kind
            if publish is not None:
                await anyio.to_thread.run_sync(publish, item_id)
            if not burst:
                await anyio.sleep(self.options.enqueue_every)

    async def _until_done(self, stack: Stack) -> None:
        """Until every item is terminal, no execution runs, and the daemon has seen them all end."""
        async with httpx.AsyncClient(timeout=2.0) as client:
            while not self._stopping.is_set():
                await anyio.sleep(0.5)
                if len(self.kinds) == self.options.items and self._all_settled(stack):
                    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                        queues = (await client.get(f"{self.url}/status")).json()["queues"]
                        if not any(sum(q["in_flight"].values()) for q in queues.values()):
                            return

    def _all_settled(self, stack: Stack) -> bool:
        running = any(stack.cloudrun.status(n) in ("pending", "running") for n in stack.cloudrun.executions)
        jobs = self._jobs_by_item(stack)
        return not running and all(self._terminal(stack, item_id, jobs) for item_id in self.kinds)

    # -- what happened ----------------------------------------------------------------------------

    def _jobs_by_item(self, stack: Stack) -> dict[str, list[Any]]:
        jobs: dict[str, list[Any]] = {}
        for tracked in stack.vertex.jobs.values():
            for pool in tracked.job.job_spec.worker_pool_specs:
                trace = next((e.value for e in pool.container_spec.env if e.name == "WANDB_LAUNCH_TRACE_ID"), None)
                if trace:
                    jobs.setdefault(trace, []).append(tracked.job)
                    break
        return jobs

    def _terminal(self, stack: Stack, item_id: str, jobs: dict[str, list[Any]]) -> bool:
        """FAILED, or CLAIMED with a CustomJob that succeeded: nothing more will happen to it. (CLAIMED
        with a job that failed is not terminal until the supervisor has failed the item.)"""
        item = stack.wandb.items[item_id]
        if item.state == "FAILED":
            return True
        found = jobs.get(item_id, [])
        return item.state == "CLAIMED" and any(job.state.name == "JOB_STATE_SUCCEEDED" for job in found)

    def _watchdog_events(self, execution: str) -> list[dict[str, Any]]:
        path = self.work / "executions" / f"{execution.rsplit('/', 1)[-1]}.stdout.log"
        events = []
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith('{"event":"watchdog.'):
                    with contextlib.suppress(ValueError):
                        events.append(json.loads(line))
        return events

    def post_submit_seconds(self, stack: Stack) -> list[float]:
        """For each execution that reported a submission: its end minus its CustomJob's creation,
        both in Google's own times (what one-shot saves is what is left of this)."""
        found = []
        for name, execution in stack.cloudrun.executions.items():
            submitted = [e for e in self._watchdog_events(name) if e["event"] == "watchdog.submitted"]
            tracked = stack.vertex.jobs.get(submitted[0]["custom_job"]) if submitted else None
            if tracked is not None and execution.completion_time:
                found.append(execution.completion_time.timestamp() - tracked.job.create_time.timestamp())
        return found

    def summary(self, stack: Stack) -> dict[str, Any]:
        jobs = self._jobs_by_item(stack)
        items = [stack.wandb.items[i] for i in self.kinds]
        terminal = sum(1 for i in self.kinds if self._terminal(stack, i, jobs))
        outcomes: Counter[str] = Counter()
        bailouts: Counter[str] = Counter()
        for name in stack.cloudrun.executions:
            events = self._watchdog_events(name)
            exited = next((e for e in events if e["event"] == "watchdog.exited"), None)
            outcomes[exited["reason"] if exited else stack.cloudrun.status(name)] += 1
            for event in events:
                if event["event"] == "watchdog.bailout":
                    bailouts[event["category"]] += 1
        latencies = []
        for item in items:
            created = [j.create_time.timestamp() for j in jobs.get(item.id, [])]
            if created:
                latencies.append(min(created) - item.enqueued_at)
        summary = {
            "items_submitted": len(items),
            "items_terminal": terminal,
            "items_non_terminal": len(items) - terminal,
            "executions_started": len(stack.cloudrun.executions),
            "max_executions_per_item": max((i.leases for i in items), default=0),
            "vertex_jobs_created": len(stack.vertex.jobs),
            "duplicates": sum(max(0, len(found) - 1) for found in jobs.values()),
            "outcomes": dict(sorted(outcomes.items())),
            "bailouts": dict(sorted(bailouts.items())),
            "items_failed_by_supervisor": sum(
                1 for i in items if any(by.startswith("launch-supervisor") for by in i.failed_by)
            ),
            "submit_latency_p50_s": _percentile(latencies, 0.5),
            "submit_latency_p95_s": _percentile(latencies, 0.95),
            "dispatch_mode": self.dispatch_mode,
        }
        assert tuple(summary) == SUMMARY_KEYS
        return summary

    # -- showing it -------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self._lines_drawn = 0
        print(text, file=self.out, flush=True)

    def _banner(self, emulator: Emulator | None) -> str:
        o = self.options
        events = f"Pub/Sub emulator on {emulator.host}" if emulator else "polling only"
        return (
            f"launch-supervisor sandbox: scenario {o.scenario}, {o.items} items, {events}\n"
            f"  metrics  {self.url}/metrics\n"
            f"  status   launch-supervisor status --url {self.url}\n"
            f"  logs     {self.work}/daemon.log, {self.work}/executions/"
        )

    async def _view(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    self._status = (await client.get(f"{self.url}/status")).json()
                self._draw()
                await anyio.sleep(1.0 if self._live() else 5.0)

    def _live(self) -> bool:
        return self.options.live if self.options.live is not None else self.out.isatty()

    def _draw(self, final: bool = False) -> None:
        if self.stack is None:
            return
        lines = self._view_lines()
        if self._live() and self._lines_drawn:
            self.out.write(f"\x1b[{self._lines_drawn}F\x1b[J")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._lines_drawn = len(lines) if self._live() and not final else 0

    def _view_lines(self) -> list[str]:
        assert self.stack is not None
        jobs = self._jobs_by_item(self.stack)
        done = sum(1 for i in self.kinds if self._terminal(self.stack, i, jobs))
        width = 30
        filled = width * done // max(1, self.options.items)
        elapsed = time.monotonic() - self._started
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.options.items} items terminal"
        lines = [f"{bar}  ({elapsed:.0f}s, {len(self.stack.cloudrun.executions)} executions started)"]
        status = self._status or {}
        for name, q in (status.get("queues") or {}).items():
            flying = " ".join(f"{phase} {n}" for phase, n in q["in_flight"].items() if n) or "none"
            breaker = q["breaker"]
            why = (
                f" ({breaker['reason']}, reopens in {breaker['reopens_in_s']}s)" if breaker["state"] != "closed" else ""
            )
            lines.append(f"queue {name}: pending {q['pending']}, in flight: {flying}; breaker {breaker['state']}{why}")
        states = Counter(t.job.state.name.removeprefix("JOB_STATE_").lower() for t in self.stack.vertex.jobs.values())
        lines.append("vertex jobs: " + (", ".join(f"{s} {n}" for s, n in sorted(states.items())) or "none"))
        lines.append(f"metrics: {self.url}/metrics" if status else f"daemon: not answering at {self.url}")
        return lines

    def _summary_text(self, summary: dict[str, Any]) -> str:
        width = max(len(k) for k in summary)
        return "summary:\n" + "\n".join(f"  {k:<{width}}  {json.dumps(v)}" for k, v in summary.items())


def _ended(code: int) -> str:
    """How a process ended, as an operator reads it: `exited with 1`, `was killed by SIGKILL`."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with {code}"


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1], 3)


def _program(name: str) -> str:
    """An installed console script of this distribution, next to this Python first."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SandboxError(f"`{name}` is not on PATH: install the package (pip install 'launch-supervisor[sandbox]')")
    return found


def _create_topic(host: str) -> None:
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


def _hint_publisher(host: str | None) -> Callable[[str], None] | None:
    """What an enqueuer does after adding an item (`launch-supervisor notify`), or None."""
    if host is None:
        return None
    from google.api_core.client_options import ClientOptions  # noqa: PLC0415 - only with the emulator
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # noqa: PLC0415

    publisher = pubsub_v1.PublisherClient(client_options=ClientOptions(api_endpoint=host))
    topic = publisher.topic_path(PROJECT, TOPIC)

    def publish(item_id: str) -> None:
        publisher.publish(topic, item_added(QUEUE, item_id=item_id), type=ITEM_ADDED).result(timeout=30)

    return publish
