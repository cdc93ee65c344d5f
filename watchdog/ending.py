"""How a run ends: its outcome, the stop that deciding it sets off, and the exit code.

Outcomes, first decided wins: submitted (exit 0), idle (exit 0), bailout (exit 1), a signal to the
watchdog (exit 128+N), the agent exiting on its own (its code). Whatever the outcome, the watchdog
exits only once no process it started is left (see `process`).
"""

from __future__ import annotations

import enum
import signal
import time
from collections.abc import Callable

from launch_watchdog.process import Shutdown


class Outcome(enum.Enum):
    SUBMITTED = "submitted"
    IDLE = "idle"
    BAILOUT = "bailout"
    AGENT_EXITED = "agent_exited"
    SIGNAL = "signal"
    SPAWN_FAILED = "spawn_failed"


class Ending:
    """The run's outcome once decided, and the stop of the agent each decision starts."""

    def __init__(self, shutdown: Shutdown, grace: float, submit_grace: float, report: Callable[[str], None]) -> None:
        self.outcome: Outcome | None = None
        self.exit_signal: int | None = None
        """The signal that ended the run, when the outcome is SIGNAL."""
        self.signals_received = 0
        self._shutdown = shutdown
        self._grace = grace
        self._submit_grace = submit_grace
        self._report = report

    @property
    def may_open_incident(self) -> bool:
        """Whether a stop rule may still open an incident: nothing decided, or an exit to classify."""
        return self.outcome is None or self.outcome is Outcome.AGENT_EXITED

    def grace(self) -> float:
        """Seconds between stop signals: shorter once the job is submitted."""
        if self.outcome is Outcome.SUBMITTED:
            return min(self._grace, self._submit_grace)
        return self._grace

    def decide(self, outcome: Outcome) -> None:
        """Record the outcome and start stopping the agent."""
        self.outcome = outcome
        self._shutdown.stop(self.grace(), signal.SIGINT, time.monotonic())

    def claim_bailout(self) -> None:
        """An incident opened: it is the outcome, unless the agent already exited by itself."""
        group = self._shutdown.group
        assert group is not None
        group.reap()
        if self.outcome is None:
            self.outcome = Outcome.AGENT_EXITED if group.exited else Outcome.BAILOUT

    def stop_for_bailout(self) -> None:
        """Stop the agent for the incident, if it is the outcome."""
        if self.outcome is Outcome.BAILOUT:
            self.decide(Outcome.BAILOUT)

    def signalled(self, signum: int) -> None:
        """The watchdog received SIGINT or SIGTERM: forward it to the agent; a second one kills."""
        self.signals_received += 1
        if self.signals_received > 1:
            self._report(f"second {signal.Signals(signum).name}: killing the agent now")
            self._shutdown.kill_now()
            return
        self._report(f"received {signal.Signals(signum).name}: forwarding it to the agent")
        if self.outcome is None:
            self.outcome = Outcome.SIGNAL
            self.exit_signal = signum
        self._shutdown.forward(signum, self._grace, time.monotonic())

    def agent_exited(self) -> None:
        """The agent's process exited: that is the outcome, unless one was decided before."""
        if self.outcome is None:
            self.outcome = Outcome.AGENT_EXITED

    def exit_code(self, agent_exit_code: int | None) -> int:
        """The watchdog's exit code for the outcome (the agent's own when it exited by itself)."""
        if self.outcome in (Outcome.SUBMITTED, Outcome.IDLE):
            return 0
        if self.outcome is Outcome.BAILOUT:
            return 1
        if self.outcome is Outcome.SIGNAL and self.exit_signal is not None:
            return 128 + self.exit_signal
        return agent_exit_code if agent_exit_code is not None else 1
