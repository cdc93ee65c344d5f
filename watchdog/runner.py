"""The watchdog's loop: run the agent, read everything it writes, stop it at the right moment.

One thread and one `selectors` loop: the agent's two pipes are read the moment data arrives, log
files are polled every 50 ms, and signals arrive through `signal.set_wakeup_fd` as bytes on a pipe,
so no handler does work and no wake-up is missed. The loop never sleeps past a deadline (idle
timeout, the next escalation of a stop).

Outcomes, first decided wins: submitted (exit 0), idle (exit 0), bailout (exit 1), a signal to the
watchdog (exit 128+N), the agent exiting on its own (its code). Whatever the outcome, the watchdog
exits only once no process of the agent's group is left.

A bailout is an incident: at the first fatal line, whatever is already waiting in the pipes and
files is read, then the agent is signalled; the rest of that block and the output read just before
the signal are scanned as part of the incident, and the most specific category among all the rules
that fired is reported. Output the agent writes after the signal is passed through but never
changes the verdict.
"""

from __future__ import annotations

import enum
import os
import re
import selectors
import shutil
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.console import Console
from watchdog.events import Events
from watchdog.follow import FileFollower, LogDirectory
from watchdog.lines import LineBuffer
from watchdog.process import AgentGroup, Stopper, become_subreaper
from watchdog.publish import Publisher
from watchdog.redact import Redactor, StreamRedactor, secret_values
from watchdog.report import bailout_block
from watchdog.rules import RuleSet
from watchdog.scanner import Claimed, Finding, Fired, Received, Scanner, Stream, Submitted

FILE_POLL_SECONDS = 0.05
READ_SIZE = 256 * 1024
FINAL_DRAIN_SECONDS = 1.0
PUBLISH_FLUSH_SECONDS = 5.0
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True, slots=True)
class Settings:
    """What one watchdog run does."""

    command: tuple[str, ...]
    """The agent command line."""
    idle_timeout: float = 300.0
    """Seconds to wait for the agent to receive a job before stopping it."""
    grace: float = 10.0
    """Seconds between the escalating stop signals."""
    context_lines: int = 100
    """Agent lines shown at the end of the bailout block."""
    follow: tuple[Path, ...] = ()
    """Extra files to read like the agent's own log files."""
    events_topic: str | None = None
    """Pub/Sub topic that receives every event too."""


class Outcome(enum.Enum):
    SUBMITTED = "submitted"
    IDLE = "idle"
    BAILOUT = "bailout"
    AGENT_EXITED = "agent_exited"
    SIGNAL = "signal"
    SPAWN_FAILED = "spawn_failed"


@dataclass(slots=True)
class Source:
    """One place lines come from: a pipe of the agent, or a followed file."""

    name: str
    stream: Stream
    redactor: StreamRedactor
    echo: Callable[[str], None] | None
    """Where the redacted lines are passed through (pipes only)."""
    buffer: LineBuffer = field(default_factory=LineBuffer)
    follower: FileFollower | None = None


Waiting = list[tuple["int | Source", bytes]]
"""Output read but not yet scanned: (pipe fd or file source, bytes); b"" is a pipe's end."""


@dataclass(slots=True)
class Incident:
    """A bailout: the rules that fired in what the agent had written when it was signalled."""

    fired: list[Fired]
    detection_ms: float
    waiting: Waiting | None
    """Output read just before the signal, still to be scanned as part of the incident."""
    closed: bool = False


def agent_target(command: Sequence[str], environ: Mapping[str, str]) -> dict[str, str | None]:
    """The queue and entity named on the agent's command line (`-q Q -e E`)."""
    found: dict[str, str | None] = {"queue": None, "entity": environ.get("WANDB_ENTITY")}
    names = {"-q": "queue", "--queue": "queue", "-e": "entity", "--entity": "entity"}
    args = list(command)
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag in names and flag.startswith("--") and eq:
            found[names[flag]] = value
        elif arg in names and i + 1 < len(args):
            key = names[arg]
            if key == "entity" or found[key] is None:
                found[key] = args[i + 1]
    return found


class Watchdog:
    """One run of the agent under watch."""

    def __init__(
        self,
        settings: Settings,
        rules: RuleSet,
        environ: Mapping[str, str] | None = None,
        console: Console | None = None,
    ) -> None:
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.console = console or Console()
        self.redactor = Redactor(secret_values(self.environ))
        self.scanner = Scanner(rules)
        self.rules = rules
        self.context: deque[str] = deque(maxlen=settings.context_lines)
        self.outcome: Outcome | None = None
        self.exit_signal: int | None = None
        self.incident: Incident | None = None
        self.item_id: str | None = None
        self.submitted: set[str] = set()
        self.received = False
        self.stopper: Stopper | None = None
        self.signals_received = 0
        self._sources: dict[int, Source] = {}
        self._selector = selectors.DefaultSelector()
        self._files: list[Source] = []
        self._log_dirs: list[LogDirectory] = []
        self.group: AgentGroup | None = None
        self._publisher = Publisher(settings.events_topic, self._report) if settings.events_topic else None
        target = agent_target(settings.command, self.environ)
        self.events = Events(
            self.console,
            self.redactor,
            {"execution": self.environ.get("CLOUD_RUN_EXECUTION"), **target},
            self._publisher,
        )

    # -- set-up -----------------------------------------------------------------------------

    def _child_env(self) -> tuple[dict[str, str], Path | None]:
        env = dict(self.environ)
        owned = None
        if not env.get("WANDB_DIR"):
            owned = Path(tempfile.mkdtemp(prefix="launch-watchdog-"))
            env["WANDB_DIR"] = str(owned)
        return env, owned

    def _report(self, message: str) -> None:
        self.console.err(self.redactor.redact(f"launch-watchdog: {message}") + "\n")

    def _new_source(self, name: str, echo: Callable[[str], None] | None) -> Source:
        return Source(name, self.scanner.stream(name), self.redactor.stream(), echo)

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        env, owned_dir = self._child_env()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous = {sig: signal.signal(sig, _note) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)}
        previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        become_subreaper()
        try:
            code = self._supervise(env, wake_r, started)
        except BaseException:
            # A bug must not leave the agent running on its own: kill the group, then fail loudly.
            if self.group is not None:
                self.group.signal(signal.SIGKILL)
                self.group.reap()
            raise
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)
            if owned_dir is not None:
                shutil.rmtree(owned_dir, ignore_errors=True)
        return code

    def _supervise(self, env: dict[str, str], wake_r: int, started: float) -> int:
        command = list(self.settings.command)
        self.events.emit(
            "watchdog.started",
            "INFO",
            f"launch-watchdog started: {' '.join(command)}",
            command=command,
            idle_timeout_s=self.settings.idle_timeout,
            grace_s=self.settings.grace,
        )
        try:
            group = self.group = AgentGroup(command, env)
        except OSError as exc:
            self._report(f"cannot start {command[0]!r}: {exc.strerror or exc}; check the command after --")
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            return self._exit(Outcome.SPAWN_FAILED, code, started)
        self._log_dirs = [LogDirectory(Path(env["WANDB_DIR"]) / "wandb")]
        for path in self.settings.follow:
            self._add_file(FileFollower(path, from_end=path.exists()))
        selector = self._selector
        for name, fd, echo in (
            ("stdout", group.stdout, self.console.out),
            ("stderr", group.stderr, self.console.err),
        ):
            self._sources[fd] = self._new_source(name, echo)
            selector.register(fd, selectors.EVENT_READ)
        selector.register(wake_r, selectors.EVENT_READ)
        idle_deadline = started + self.settings.idle_timeout
        next_poll = 0.0
        try:
            while True:
                now = time.monotonic()
                deadlines = [next_poll, idle_deadline if not self.received else now + 3600]
                if self.stopper is not None and (stop_at := self.stopper.deadline()) is not None:
                    deadlines.append(stop_at)
                for key, _ in selector.select(max(0.0, min(deadlines) - now)):
                    fd = int(key.fd)
                    if fd == wake_r:
                        self._signals(wake_r, group)
                    else:
                        self._read(fd)
                now = time.monotonic()
                if now >= next_poll:
                    self._poll_files()
                    next_poll = now + FILE_POLL_SECONDS
                if not self.received and now >= idle_deadline and self.outcome is None:
                    self._decide(Outcome.IDLE)
                    self.events.emit(
                        "watchdog.idle_exit",
                        "INFO",
                        f"no job received within {self.settings.idle_timeout:g}s; stopping the agent",
                        idle_seconds=round(now - started, 3),
                    )
                if self.stopper is not None:
                    self.stopper.tick(now)
                    group.reap()  # SIGCHLD reaps too; while stopping, check on every tick anyway
                if group.exited:
                    if self.outcome is None:
                        self.outcome = Outcome.AGENT_EXITED
                    if not group.alive():
                        break
                    if self.stopper is None:  # the agent left processes behind: stop them too
                        self.stopper = Stopper(group, self.settings.grace, signal.SIGINT, now)
        finally:
            self._final_drain()
            selector.close()
            group.close()
        assert self.outcome is not None
        return self._exit(self.outcome, self._code(group), started, agent_exit_code=group.exit_code)

    # -- reading ----------------------------------------------------------------------------

    def _read_raw(self, fd: int) -> bytes | None:
        """One read from a pipe: None when nothing is waiting, b"" at its end."""
        try:
            return os.read(fd, READ_SIZE)
        except BlockingIOError:
            return None

    def _consume(self, fd: int, data: bytes, read_at: float) -> None:
        source = self._sources[fd]
        if data:
            self._process(source, source.buffer.feed(data), read_at)
            return
        self._selector.unregister(fd)
        del self._sources[fd]
        self._process(source, source.buffer.flush(), read_at)

    def _read(self, fd: int) -> bool:
        """Read and scan once from a pipe; False when nothing more is available right now."""
        data = self._read_raw(fd)
        if data is None:
            return False
        self._consume(fd, data, time.monotonic())
        return bool(data)

    def _waiting_output(self) -> Waiting:
        """Everything already written to the pipes and files, read without scanning it."""
        waiting: Waiting = []
        for fd in list(self._sources):
            while (data := self._read_raw(fd)) is not None:
                waiting.append((fd, data))
                if not data:
                    break
        for source in self._files:
            assert source.follower is not None
            while data := source.follower.poll():
                waiting.append((source, data))
        return waiting

    def _add_file(self, follower: FileFollower) -> None:
        source = self._new_source(follower.path.name, None)
        source.follower = follower
        self._files.append(source)

    def _poll_files(self) -> None:
        for directory in self._log_dirs:
            for follower in directory.new_files():
                self._add_file(follower)
        for source in self._files:
            assert source.follower is not None
            data = source.follower.poll()
            if data:
                self._process(source, source.buffer.feed(data), time.monotonic())

    def _process(self, source: Source, text: str, read_at: float) -> None:
        if not text:
            return
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        text = source.redactor.redact(text)
        if source.echo is not None:
            source.echo(text)
            if self.context.maxlen:
                tail = text[:-1].rsplit("\n", self.context.maxlen)
                self.context.extend(tail[1:] if len(tail) > self.context.maxlen else tail)
        for finding in self.scanner.feed(source.stream, text):
            self._found(finding, read_at)
        if self.incident is not None and self.incident.waiting is not None:
            self._close_incident(read_at)

    # -- deciding ---------------------------------------------------------------------------

    def _found(self, finding: Finding, read_at: float) -> None:
        if isinstance(finding, Fired):
            if self.incident is None and self.outcome is None:
                # Read what is already waiting *before* signalling: all of it was written before
                # the signal, so it belongs to this incident and nothing the agent prints in
                # reaction to the signal can.
                waiting = self._waiting_output()
                self._decide(Outcome.BAILOUT)
                detection = (time.monotonic() - read_at) * 1000
                self.incident = Incident([finding], detection_ms=detection, waiting=waiting)
            elif self.incident is not None and not self.incident.closed:
                self.incident.fired.append(finding)
        elif isinstance(finding, Received):
            self.received = True
        elif isinstance(finding, Claimed):
            if finding.item_id != self.item_id:
                self.item_id = finding.item_id
                self.events.emit(
                    "watchdog.claimed", "INFO", f"agent claimed queue item {finding.item_id}", item_id=finding.item_id
                )
        elif isinstance(finding, Submitted) and finding.resource not in self.submitted:
            self.submitted.add(finding.resource)
            if self.outcome is None:
                self._decide(Outcome.SUBMITTED)
            self.events.emit(
                "watchdog.submitted",
                "INFO",
                f"CustomJob {finding.resource} created; stopping the agent",
                item_id=self.item_id,
                custom_job=finding.resource,
            )

    def _decide(self, outcome: Outcome) -> None:
        """Record the outcome and start stopping the agent."""
        assert self.group is not None
        self.outcome = outcome
        if self.stopper is None:
            self.stopper = Stopper(self.group, self.settings.grace, signal.SIGINT, time.monotonic())

    def _signals(self, wake_r: int, group: AgentGroup) -> None:
        try:
            received = os.read(wake_r, 512)
        except BlockingIOError:
            return
        for signum in received:
            if signum == signal.SIGCHLD:
                group.reap()
                continue
            self.signals_received += 1
            if self.signals_received > 1:
                self._report(f"second {signal.Signals(signum).name}: killing the agent now")
                if self.stopper is not None:
                    self.stopper.escalate_now(time.monotonic())
                continue
            self._report(f"received {signal.Signals(signum).name}: forwarding it to the agent")
            if self.outcome is None:
                self.outcome = Outcome.SIGNAL
                self.exit_signal = signum
            if self.stopper is None:
                self.stopper = Stopper(group, self.settings.grace, signum, time.monotonic())
            else:
                group.signal(signum)

    def _close_incident(self, read_at: float) -> None:
        """Scan the output read before the signal, then report the incident once."""
        incident = self.incident
        assert incident is not None
        assert incident.waiting is not None
        waiting, incident.waiting = incident.waiting, None
        for key, data in waiting:
            if isinstance(key, int):
                self._consume(key, data, read_at)
            else:
                self._process(key, key.buffer.feed(data), read_at)
        incident.closed = True
        fired = incident.fired
        best = min(fired, key=lambda f: self.rules.rank(f.rule.category))
        trigger = fired[0]
        lines = sorted({line for f in fired for line in f.lines}, key=lambda line: line.number)
        self.events.emit(
            "watchdog.bailout",
            "ERROR",
            f"bailout: {best.rule.description} ({best.rule.category}); stopping the agent",
            rule=best.rule.id,
            category=best.rule.category,
            trigger_rule=trigger.rule.id,
            rules=sorted({f.rule.id for f in fired}),
            lines=[{"source": line.source, "line": line.number, "text": line.text} for line in lines],
            detection_ms=round(incident.detection_ms, 3),
            item_id=self.item_id,
        )
        self.console.err(
            bailout_block(
                description=best.rule.description,
                rule_id=best.rule.id,
                category=best.rule.category,
                trigger=trigger.rule.id,
                matches=lines,
                context=self.context,
                context_lines=self.settings.context_lines,
            )
        )

    # -- ending -----------------------------------------------------------------------------

    def _final_drain(self) -> None:
        """Read what is left in the pipes (until EOF, or a second if something still holds them)."""
        deadline = time.monotonic() + FINAL_DRAIN_SECONDS
        while self._sources and time.monotonic() < deadline:
            for key, _ in self._selector.select(max(0.0, deadline - time.monotonic())):
                if int(key.fd) in self._sources:
                    self._read(int(key.fd))
        for source in list(self._sources.values()):
            self._process(source, source.buffer.flush(), time.monotonic())
        self._poll_files()
        for source in self._files:
            self._process(source, source.buffer.flush(), time.monotonic())
            if source.follower is not None:
                source.follower.close()

    def _code(self, group: AgentGroup) -> int:
        if self.outcome in (Outcome.SUBMITTED, Outcome.IDLE):
            return 0
        if self.outcome is Outcome.BAILOUT:
            return 1
        if self.outcome is Outcome.SIGNAL and self.exit_signal is not None:
            return 128 + self.exit_signal
        return group.exit_code if group.exit_code is not None else 1

    def _exit(self, outcome: Outcome, code: int, started: float, **data: Any) -> int:
        self.events.emit(
            "watchdog.exited",
            "INFO" if code == 0 else "ERROR",
            f"launch-watchdog exiting with {code} ({outcome.value})",
            exit_code=code,
            reason=outcome.value,
            runtime_seconds=round(time.monotonic() - started, 3),
            item_id=self.item_id,
            **data,
        )
        if self._publisher is not None:
            self._publisher.close(PUBLISH_FLUSH_SECONDS)
        return code


def _note(signum: int, frame: object) -> None:
    """Signals are handled in the loop; the wake-up fd carries their numbers there."""
