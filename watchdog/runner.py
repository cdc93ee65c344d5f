"""The watchdog's loop: run the agent, read everything it writes, stop it at the right moment.

One thread and one `selectors` loop: the agent's two pipes are read the moment data arrives, log
files are polled every 50 ms, and signals arrive through `signal.set_wakeup_fd` as bytes on a pipe,
so no handler does work and no wake-up is missed. The loop never sleeps past a deadline (idle
timeout, the quiet end of a block, the next escalation of a stop).

Before the agent starts, its environment is prepared: `$WANDB_DIR/wandb` exists (wandb's CLI writes
its log there only if it does, otherwise into $TMPDIR, where nobody reads it), and the start-up hook
in `watchdog/agent_startup` is first on its PYTHONPATH (without it aiplatform's `CustomJob created`
record is dropped). The user's WANDB_DIR and PYTHONPATH are kept.

Outcomes, first decided wins: submitted (exit 0), idle (exit 0), bailout (exit 1), a signal to the
watchdog (exit 128+N), the agent exiting on its own (its code). Whatever the outcome, the watchdog
exits only once no process it started is left: the agent's group first, then every other
descendant (wandb-core and wandb-symon run in sessions of their own).

A bailout is an incident (see `incident`): the stop rules that fired, the most specific category
wins. Two endings without a stop rule are reported as bailouts too, explained by the explain rules
that matched or else by their fallback: the idle timeout passing before the agent ever polled its
queues (`agent_start_timeout`: it is stuck starting, not idle, and is stopped with exit 1), and the
agent exiting by itself with an error (`agent_exit`; the exit code stays the agent's). Stop rules
that fire after the agent exited by itself classify that exit the same way.
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

from watchdog.agent_startup import DIRECTORY as AGENT_STARTUP
from watchdog.console import Console
from watchdog.events import Events
from watchdog.follow import FileFollower, LogDirectory
from watchdog.incident import Judge, Step, Verdict
from watchdog.lines import LineBuffer
from watchdog.process import LEFTOVER_SEQUENCE, AgentGroup, Descendants, Stopper, become_subreaper
from watchdog.publish import Publisher
from watchdog.redact import Redactor, StreamRedactor, secret_values
from watchdog.report import bailout_block
from watchdog.rules import RuleSet
from watchdog.scanner import (
    BlockEnded,
    Claimed,
    Finding,
    Fired,
    Received,
    Scanner,
    Started,
    Stream,
    Submitted,
    kind_of,
)

FILE_POLL_SECONDS = 0.05
READ_SIZE = 256 * 1024
FINAL_DRAIN_SECONDS = 1.0
PUBLISH_FLUSH_SECONDS = 5.0
BLOCK_QUIET_SECONDS = 0.5
"""A block whose stream has written nothing for this long is over."""
KILL_WAIT_SECONDS = 2.0
"""After a watchdog bug, how long to wait for the SIGKILLed processes to be gone."""
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
    submit_grace: float = 0.5
    """The same once the CustomJob exists: the agent's work is done, and every second it takes to
    wind down is a second of the execution paid for nothing."""
    context_lines: int = 100
    """Agent lines shown at the end of the bailout block."""
    follow: tuple[Path, ...] = ()
    """Extra files to read like the agent's own log files."""
    events_topic: str | None = None
    """Pub/Sub topic that receives every event too."""
    stop_on_submit: bool = True
    """Stop the agent once its CustomJob exists; False only reports it and leaves the agent watching
    its job, as it would without the watchdog, until the execution is cancelled or times out."""


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
    last_data: float = 0.0
    """When bytes last arrived (monotonic seconds); a held block ends after a quiet gap."""


Waiting = list[tuple["int | Source", bytes]]
"""Output read but not yet scanned: (pipe fd or file source, bytes); b"" is a pipe's end."""


def wandb_log_dir(wandb_dir: Path) -> Path:
    """Where wandb's CLI and runs write their logs under WANDB_DIR (`.wandb` when that exists)."""
    hidden = wandb_dir / ".wandb"
    return hidden if hidden.is_dir() else wandb_dir / "wandb"


def core_log_dir(environ: Mapping[str, str]) -> Path | None:
    """Where wandb-core writes `core-debug-*.log`: the user cache directory's `wandb/logs`."""
    cache = environ.get("XDG_CACHE_HOME", "")
    if cache and Path(cache).is_absolute():
        return Path(cache) / "wandb" / "logs"
    home = environ.get("HOME")
    return Path(home) / ".cache" / "wandb" / "logs" if home else None


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
        self.judge = Judge(rules)
        self.item_id: str | None = None
        self.submitted: set[str] = set()
        self.received = False
        self.started = False
        """The agent printed its polling line (or received a job): it got past start-up."""
        self.stopper: Stopper | None = None
        self.sweeper: Stopper | None = None
        """Stops what outlived the agent's group."""
        self.leftovers = Descendants()
        self.signals_received = 0
        self._sources: dict[int, Source] = {}
        self._by_name: dict[str, Source] = {}
        self._selector = selectors.DefaultSelector()
        self._files: list[Source] = []
        self._log_dirs: list[tuple[LogDirectory, str | None]] = []
        self._waiting: Waiting | None = None
        """Output read just before the signal, still to be scanned into the incident."""
        self._detection_ms = 0.0
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
        """The agent's environment, and the WANDB_DIR the watchdog made for it (None: the user's)."""
        env = dict(self.environ)
        owned = None
        if not env.get("WANDB_DIR"):
            owned = Path(tempfile.mkdtemp(prefix="launch-watchdog-"))
            env["WANDB_DIR"] = str(owned)
        logs = wandb_log_dir(Path(env["WANDB_DIR"]))
        try:
            logs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._report(f"cannot create {logs} ({exc.strerror}): the agent's CLI log goes to $TMPDIR, unread")
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(AGENT_STARTUP) + (os.pathsep + existing if existing else "")
        return env, owned

    def _report(self, message: str) -> None:
        self.console.err(self.redactor.redact(f"launch-watchdog: {message}") + "\n")

    def _new_source(self, name: str, kind: str, echo: Callable[[str], None] | None) -> Source:
        source = Source(name, self.scanner.stream(name, kind), self.redactor.stream(), echo)
        self._by_name[name] = source
        return source

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
            # A bug must not leave the agent running on its own: kill everything, then fail loudly.
            self._kill_everything()
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
            submit_grace_s=self.settings.submit_grace,
        )
        # Listed before the agent starts, so that every log it creates counts as new.
        self._log_dirs = [(LogDirectory(wandb_log_dir(Path(env["WANDB_DIR"]))), None)]
        core_logs = core_log_dir(env)
        if core_logs is not None:
            self._log_dirs.append((LogDirectory(core_logs, prefix="core-debug-", newest_only=True), "core_log"))
        try:
            group = self.group = AgentGroup(command, env)
        except OSError as exc:
            self._report(f"cannot start {command[0]!r}: {exc.strerror or exc}; check the command after --")
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            return self._exit(Outcome.SPAWN_FAILED, code, started)
        for path in self.settings.follow:
            self._add_file(FileFollower(path, from_end=path.exists()), "follow")
        selector = self._selector
        for name, fd, echo in (
            ("stdout", group.stdout, self.console.out),
            ("stderr", group.stderr, self.console.err),
        ):
            self._sources[fd] = self._new_source(name, "agent", echo)
            selector.register(fd, selectors.EVENT_READ)
        selector.register(wake_r, selectors.EVENT_READ)
        idle_deadline = started + self.settings.idle_timeout
        next_poll = 0.0
        try:
            while True:
                now = time.monotonic()
                deadlines = [next_poll]
                if not self.received and self.outcome is None:
                    deadlines.append(idle_deadline)
                if (quiet_at := self._quiet_deadline()) is not None:
                    deadlines.append(quiet_at)
                for stopper in (self.stopper, self.sweeper):
                    if stopper is not None and (stop_at := stopper.deadline()) is not None:
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
                self._end_quiet_block(now)
                if not self.received and now >= idle_deadline and self.outcome is None:
                    self._idle_timeout(now, started)
                if self.stopper is not None:
                    self.stopper.tick(now)
                    group.reap()  # SIGCHLD reaps too; while stopping, check on every tick anyway
                if group.exited:
                    if self.outcome is None:
                        self.outcome = Outcome.AGENT_EXITED
                    if group.alive():
                        if self.stopper is None:  # the agent left processes behind: stop them too
                            self.stopper = Stopper(group, self.settings.grace, signal.SIGINT, now)
                    elif self._no_leftovers(now):
                        break
        finally:
            self._final_drain()
            selector.close()
            group.close()
        assert self.outcome is not None
        if self.outcome is Outcome.AGENT_EXITED and self.judge.incident is None and group.exit_code:
            self._emit_bailout(self.judge.explain("agent_exit"), 0.0)
        return self._exit(self.outcome, self._code(group), started, agent_exit_code=group.exit_code)

    def _no_leftovers(self, now: float) -> bool:
        """Whether every descendant is gone; if not, stop them (SIGTERM, then SIGKILL after the grace)."""
        assert self.group is not None
        self.group.reap()
        living = self.leftovers.living()
        if not living:
            return True
        if self.sweeper is None:
            self._report(f"stopping {len(living)} process(es) the agent left running: {sorted(living)}")
            self.sweeper = Stopper(self.leftovers, self._grace(), signal.SIGTERM, now, LEFTOVER_SEQUENCE)
        else:
            self.sweeper.tick(now)
            if self.sweeper.deadline() is None:
                self.leftovers.signal(signal.SIGKILL)  # ones that appeared after the SIGKILL went out
        return False

    def _kill_everything(self) -> None:
        """SIGKILL the agent's group and every other descendant, and reap them (bounded wait)."""
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while True:
            if self.group is not None:
                self.group.signal(signal.SIGKILL)
            self.leftovers.signal(signal.SIGKILL)
            if self.group is not None:
                self.group.reap()
            if not self.leftovers.living() or time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def _idle_timeout(self, now: float, started: float) -> None:
        """No job by the idle timeout: idle if the agent polls; stuck in start-up if it never did."""
        if self.started:
            self._decide(Outcome.IDLE)
            self.events.emit(
                "watchdog.idle_exit",
                "INFO",
                f"no job received within {self.settings.idle_timeout:g}s; stopping the agent",
                idle_seconds=round(now - started, 3),
            )
            return
        self._poll_files()  # the freshest word from wandb-core's log
        if self.outcome is not None:
            return
        self._decide(Outcome.BAILOUT)
        self._emit_bailout(self.judge.explain("agent_start_timeout"), 0.0)

    # -- reading ----------------------------------------------------------------------------

    def _read_raw(self, fd: int) -> bytes | None:
        """One read from a pipe: None when nothing is waiting, b"" at its end."""
        try:
            return os.read(fd, READ_SIZE)
        except BlockingIOError:
            return None

    def _consume(self, fd: int, data: bytes, read_at: float) -> None:
        source = self._sources[fd]
        source.last_data = read_at
        if data:
            self._process(source, source.buffer.feed(data), read_at)
            return
        self._selector.unregister(fd)
        del self._sources[fd]
        self._process(source, source.buffer.flush(), read_at)
        self._end_stream(source, read_at)

    def _end_stream(self, source: Source, read_at: float) -> None:
        ended = self.scanner.end_block(source.stream, "end")
        if ended is not None:
            self._found(ended, read_at)

    def _quiet_deadline(self) -> float | None:
        """When the block the incident waits for ends for want of output."""
        name = self.judge.holding
        source = self._by_name.get(name) if name is not None else None
        return None if source is None else source.last_data + BLOCK_QUIET_SECONDS

    def _end_quiet_block(self, now: float) -> None:
        quiet_at = self._quiet_deadline()
        if quiet_at is None or now < quiet_at:
            return
        name = self.judge.holding
        assert name is not None
        ended = self.scanner.end_block(self._by_name[name].stream, "quiet")
        if ended is not None:
            self._found(ended, now)

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

    def _add_file(self, follower: FileFollower, kind: str | None) -> None:
        name = follower.path.name
        if name in self._by_name:
            name = str(follower.path)
        source = self._new_source(name, kind_of(follower.path.name) if kind is None else kind, None)
        source.follower = follower
        self._files.append(source)

    def _poll_files(self) -> None:
        for directory, kind in self._log_dirs:
            for follower in directory.new_files():
                self._add_file(follower, kind)
        for source in self._files:
            assert source.follower is not None
            data = source.follower.poll()
            if data:
                source.last_data = time.monotonic()
                self._process(source, source.buffer.feed(data), source.last_data)

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
        if self._waiting is not None:
            self._close_incident(read_at)

    # -- deciding ---------------------------------------------------------------------------

    def _found(self, finding: Finding, read_at: float) -> None:
        if isinstance(finding, Fired):
            may_open = self.outcome is None or self.outcome is Outcome.AGENT_EXITED
            step = self.judge.fired(finding, may_open, read_at)
            if step is Step.STOP_NOW:
                # Read what is already waiting *before* signalling: all of it was written before
                # the signal, so it belongs to this incident and nothing the agent prints in
                # reaction to the signal can.
                waiting = self._waiting_output()
                self._claim_bailout()
                self._stop_for_bailout()
                self._detection_ms = (time.monotonic() - read_at) * 1000
                self._waiting = waiting
            elif step is Step.HOLD:
                self._claim_bailout()
        elif isinstance(finding, BlockEnded):
            if self.judge.block_ended(finding) is Step.DECIDED:
                self._stop_for_bailout()
                incident = self.judge.incident
                assert incident is not None
                self._detection_ms = (time.monotonic() - incident.detected_at) * 1000
                self._report_incident()
        elif isinstance(finding, Started):
            self.started = True
        elif isinstance(finding, Received):
            self.received = self.started = True
        elif isinstance(finding, Claimed):
            if finding.item_id != self.item_id:
                self.item_id = finding.item_id
                self.events.emit(
                    "watchdog.claimed", "INFO", f"agent claimed queue item {finding.item_id}", item_id=finding.item_id
                )
        elif isinstance(finding, Submitted) and finding.resource not in self.submitted:
            self.submitted.add(finding.resource)
            stop = self.settings.stop_on_submit
            if self.outcome is None and stop:
                self._decide(Outcome.SUBMITTED)
            self.events.emit(
                "watchdog.submitted",
                "INFO",
                f"CustomJob {finding.resource} created; {'stopping' if stop else 'leaving'} the agent",
                item_id=self.item_id,
                custom_job=finding.resource,
            )

    def _grace(self) -> float:
        """Seconds between stop signals: shorter once the job is submitted."""
        if self.outcome is Outcome.SUBMITTED:
            return min(self.settings.grace, self.settings.submit_grace)
        return self.settings.grace

    def _decide(self, outcome: Outcome) -> None:
        """Record the outcome and start stopping the agent."""
        assert self.group is not None
        self.outcome = outcome
        if self.stopper is None:
            self.stopper = Stopper(self.group, self._grace(), signal.SIGINT, time.monotonic())

    def _claim_bailout(self) -> None:
        """An incident opened: it is the outcome, unless the agent already exited by itself."""
        assert self.group is not None
        self.group.reap()
        if self.outcome is None:
            self.outcome = Outcome.AGENT_EXITED if self.group.exited else Outcome.BAILOUT

    def _stop_for_bailout(self) -> None:
        if self.outcome is Outcome.BAILOUT:
            self._decide(Outcome.BAILOUT)

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
                for stopper in (self.stopper, self.sweeper):
                    if stopper is not None:
                        stopper.escalate_now(time.monotonic())
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
        """Scan the output read before the signal into the incident, then report it once."""
        waiting, self._waiting = self._waiting, None
        assert waiting is not None
        for key, data in waiting:
            if isinstance(key, int):
                self._consume(key, data, read_at)
            else:
                key.last_data = read_at
                self._process(key, key.buffer.feed(data), read_at)
        self.judge.close()
        self._report_incident()

    def _report_incident(self) -> None:
        self._emit_bailout(self.judge.verdict(), self._detection_ms)

    def _emit_bailout(self, verdict: Verdict, detection_ms: float) -> None:
        stopped = self.outcome is Outcome.BAILOUT
        self.events.emit(
            "watchdog.bailout",
            "ERROR",
            f"bailout: {verdict.description} ({verdict.category}); "
            + ("stopping the agent" if stopped else "the agent exited by itself"),
            rule=verdict.rule,
            category=verdict.category,
            trigger_rule=verdict.trigger,
            rules=list(verdict.rules),
            lines=[{"source": line.source, "line": line.number, "text": line.text} for line in verdict.lines],
            detection_ms=round(detection_ms, 3),
            item_id=self.item_id,
        )
        self.console.err(
            bailout_block(
                description=verdict.description,
                rule_id=verdict.rule,
                category=verdict.category,
                trigger=verdict.trigger,
                matches=verdict.lines,
                context=self.context,
                context_lines=self.settings.context_lines,
                stopped=stopped,
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
            self._end_stream(source, time.monotonic())
        self._poll_files()
        for source in self._files:
            self._process(source, source.buffer.flush(), time.monotonic())
            self._end_stream(source, time.monotonic())
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
