"""How far the agent got with its job, from the lines that mark each step.

The idle timeout needs it (an agent that never polled is stuck in start-up, not idle), every later
event names the queue item claimed, and the CustomJob existing is the run's goal: from then on the
agent is stopped, unless it is to be kept watching its job.
"""

from __future__ import annotations

from launch_watchdog.ending import Ending, Outcome
from launch_watchdog.events import Events
from launch_watchdog.scanner import Claimed, Received, Started, Submitted


class Progress:
    """The agent's steps so far; a claimed item and a created CustomJob are reported once each."""

    def __init__(self, events: Events, ending: Ending, stop_on_submit: bool) -> None:
        self.started = False
        """The agent printed its polling line (or received a job): it got past start-up."""
        self.received = False
        self.item_id: str | None = None
        self.submitted: set[str] = set()
        self._events = events
        self._ending = ending
        self._stop_on_submit = stop_on_submit

    def found(self, finding: Started | Received | Claimed | Submitted) -> None:
        if isinstance(finding, Started):
            self.started = True
        elif isinstance(finding, Received):
            self.received = self.started = True
        elif isinstance(finding, Claimed):
            if finding.item_id != self.item_id:
                self.item_id = finding.item_id
                self._events.emit(
                    "watchdog.claimed", "INFO", f"agent claimed queue item {finding.item_id}", item_id=finding.item_id
                )
        elif finding.resource not in self.submitted:
            self.submitted.add(finding.resource)
            stop = self._stop_on_submit
            if self._ending.outcome is None and stop:
                self._ending.decide(Outcome.SUBMITTED)
            self._events.emit(
                "watchdog.submitted",
                "INFO",
                f"CustomJob {finding.resource} created; {'stopping' if stop else 'leaving'} the agent",
                item_id=self.item_id,
                custom_job=finding.resource,
            )
