"""The watchdog's loop: run the agent, read everything it writes, stop it at the right moment.

One thread and one `selectors` loop: the agent's two pipes are read the moment data arrives, log
files are polled every 50 ms, and signals arrive through `signal.set_wakeup_fd` as bytes on a pipe,
so no handler does work and no wake-up is missed. The loop never sleeps past a deadline (idle
timeout, the quiet end of a block, the next escalation of a stop).

A bailout is an incident (see `incident`): the stop rules that fired, the most specific category
wins. Two endings without a stop rule are reported as bailouts too, explained by the explain rules
that matched or else by their fallback: the idle timeout passing before the agent ever polled its
queues (`agent_start_timeout`: it is stuck starting, not idle, and is stopped with exit 1), and the
agent exiting by itself with an error (`agent_exit`; the exit code stays the agent's). Stop rules
that fire after the agent exited by itself classify that exit the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch_watchdog.console import Console
from launch_watchdog.ending import Ending, Outcome
from launch_watchdog.environment import child_env, log_directories
from launch_watchdog.events import Events, run_fields
from launch_watchdog.follow import FileFollower
from launch_watchdog.incident import Judge, Step, Verdict
from launch_watchdog.output import FILE_POLL_SECONDS, AgentOutput
from launch_watchdog.process import AgentGroup, Shutdown, become_subreaper
from launch_watchdog.progress import Progress
from launch_watchdog.publish import Publisher
from launch_watchdog.redact import Redactor, secret_values
from launch_watchdog.report import report_bailout
from launch_watchdog.rules import RuleSet
from launch_watchdog.scanner import BlockEnded, Finding, Fired, Scanner

PUBLISH_FLUSH_SECONDS = 5.0


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


class Watchdog:
    """One run of the agent under watch: the loop, and what each finding does to the run."""

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
        self.output = AgentOutput(Scanner(rules), self.redactor, settings.context_lines, self._found, self._caught_up)
        self.judge = Judge(rules)
        self.shutdown = Shutdown(self._report)
        self.ending = Ending(self.shutdown, settings.grace, settings.submit_grace, self._report)
        self._detection_ms = 0.0
        self._publisher = Publisher(settings.events_topic, self._report) if settings.events_topic else None
        self.events = Events(self.console, self.redactor, run_fields(settings.command, self.environ), self._publisher)
        self.progress = Progress(self.events, self.ending, settings.stop_on_submit)

    def _report(self, message: str) -> None:
        self.console.err(self.redactor.redact(f"launch-watchdog: {message}") + "\n")

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        env, owned_dir = child_env(self.environ, self._report)
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
            self.shutdown.kill_everything()
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
        output, ending, shutdown = self.output, self.ending, self.shutdown
        # Listed before the agent starts, so that every log it creates counts as new.
        for directory, kind in log_directories(env):
            output.watch_directory(directory, kind)
        try:
            group = shutdown.group = AgentGroup(command, env)
        except OSError as exc:
            self._report(f"cannot start {command[0]!r}: {exc.strerror or exc}; check the command after --")
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            return self._exit(Outcome.SPAWN_FAILED, code, started)
        for path in self.settings.follow:
            output.add_file(FileFollower(path, from_end=path.exists()), "follow")
        output.add_pipe("stdout", group.stdout, self.console.out)
        output.add_pipe("stderr", group.stderr, self.console.err)
        output.register(wake_r)
        idle_deadline = started + self.settings.idle_timeout
        next_poll = 0.0
        try:
            while True:
                now = time.monotonic()
                deadlines = [next_poll, *shutdown.deadlines()]
                if not self.progress.received and ending.outcome is None:
                    deadlines.append(idle_deadline)
                if (quiet_at := output.quiet_deadline(self.judge.holding)) is not None:
                    deadlines.append(quiet_at)
                for fd in output.select(max(0.0, min(deadlines) - now)):
                    if fd == wake_r:
                        self._signals(wake_r, group)
                    else:
                        output.read(fd)
                now = time.monotonic()
                if now >= next_poll:
                    output.poll_files()
                    next_poll = now + FILE_POLL_SECONDS
                output.end_quiet_block(self.judge.holding, now)
                if not self.progress.received and now >= idle_deadline and ending.outcome is None:
                    self._idle_timeout(now, started)
                shutdown.tick(now)
                if group.exited:
                    ending.agent_exited()
                    if group.alive():  # the agent left processes behind: stop them too
                        shutdown.stop(self.settings.grace, signal.SIGINT, now)
                    elif shutdown.no_leftovers(now, ending.grace()):
                        break
        finally:
            output.final_drain()
            output.close()
            group.close()
        assert ending.outcome is not None
        if ending.outcome is Outcome.AGENT_EXITED and self.judge.incident is None and group.exit_code:
            self._bailout(self.judge.explain("agent_exit"), 0.0)
        return self._exit(ending.outcome, ending.exit_code(group.exit_code), started, agent_exit_code=group.exit_code)

    def _signals(self, wake_r: int, group: AgentGroup) -> None:
        """Act on the signals the wake-up pipe carries."""
        try:
            received = os.read(wake_r, 512)
        except BlockingIOError:
            return
        for signum in received:
            if signum == signal.SIGCHLD:
                group.reap()
            else:
                self.ending.signalled(signum)

    def _idle_timeout(self, now: float, started: float) -> None:
        """No job by the idle timeout: idle if the agent polls; stuck in start-up if it never did."""
        if self.progress.started:
            self.ending.decide(Outcome.IDLE)
            self.events.emit(
                "watchdog.idle_exit",
                "INFO",
                f"no job received within {self.settings.idle_timeout:g}s; stopping the agent",
                idle_seconds=round(now - started, 3),
            )
            return
        self.output.poll_files()  # the freshest word from wandb-core's log
        if self.ending.outcome is not None:
            return
        self.ending.decide(Outcome.BAILOUT)
        self._bailout(self.judge.explain("agent_start_timeout"), 0.0)

    # -- findings ---------------------------------------------------------------------------

    def _found(self, finding: Finding, read_at: float) -> None:
        """Act on a finding: a bailout incident opens, waits or is decided, or the agent progressed."""
        ending = self.ending
        if isinstance(finding, Fired):
            step = self.judge.fired(finding, ending.may_open_incident, read_at)
            if step is Step.STOP_NOW:
                # Read what is already waiting *before* signalling: all of it was written before
                # the signal, so it belongs to this incident and nothing the agent prints in
                # reaction to the signal can.
                self.output.read_ahead()
                ending.claim_bailout()
                ending.stop_for_bailout()
                self._detection_ms = (time.monotonic() - read_at) * 1000
            elif step is Step.HOLD:
                ending.claim_bailout()
        elif isinstance(finding, BlockEnded):
            if self.judge.block_ended(finding) is Step.DECIDED:
                ending.stop_for_bailout()
                incident = self.judge.incident
                assert incident is not None
                self._detection_ms = (time.monotonic() - incident.detected_at) * 1000
                self._bailout(self.judge.verdict(), self._detection_ms)
        else:
            self.progress.found(finding)

    def _caught_up(self) -> None:
        """The output read ahead of the signal is in the incident: close it and report it once."""
        self.judge.close()
        self._bailout(self.judge.verdict(), self._detection_ms)

    def _bailout(self, verdict: Verdict, detection_ms: float) -> None:
        """Report a bailout; it says the agent is stopped only when the bailout is the outcome."""
        report_bailout(
            self.events,
            self.console,
            verdict,
            stopped=self.ending.outcome is Outcome.BAILOUT,
            detection_ms=detection_ms,
            item_id=self.progress.item_id,
            context=self.output.context,
            context_lines=self.settings.context_lines,
        )

    def _exit(self, outcome: Outcome, code: int, started: float, **data: Any) -> int:
        """Emit the last event, give Pub/Sub a moment to take it, and return the exit code."""
        self.events.emit(
            "watchdog.exited",
            "INFO" if code == 0 else "ERROR",
            f"launch-watchdog exiting with {code} ({outcome.value})",
            exit_code=code,
            reason=outcome.value,
            runtime_seconds=round(time.monotonic() - started, 3),
            item_id=self.progress.item_id,
            **data,
        )
        if self._publisher is not None:
            self._publisher.close(PUBLISH_FLUSH_SECONDS)
        return code


def _note(signum: int, frame: object) -> None:
    """Signals are handled in the loop; the wake-up fd carries their numbers there."""
