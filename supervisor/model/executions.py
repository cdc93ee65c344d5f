"""Cloud Run executions of a launcher job: one per dispatched item (docs/architecture.md, State machines)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from launch_supervisor.model.absence import Absence
from launch_supervisor.model.facts import Fact
from launch_supervisor.model.transitions import allowed


class Phase(enum.Enum):
    DISPATCHED = "dispatched"
    RUNNING = "running"
    CLAIMED = "claimed"
    SUBMITTED = "submitted"
    SUCCEEDED = "succeeded"
    IDLE = "idle"
    BAILOUT = "bailout"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @property
    def finished(self) -> bool:
        # A tuple, not the frozenset: members compare by identity, while hashing an Enum member runs
        # Python code, and this runs for every execution at every tick.
        return self not in IN_FLIGHT


FINISHED = frozenset({Phase.SUCCEEDED, Phase.IDLE, Phase.BAILOUT, Phase.FAILED, Phase.CANCELLED, Phase.TIMEOUT})
IN_FLIGHT = (Phase.DISPATCHED, Phase.RUNNING, Phase.CLAIMED, Phase.SUBMITTED)

_FORWARD = {
    Phase.DISPATCHED: {Phase.RUNNING, Phase.CLAIMED, Phase.SUBMITTED},
    Phase.RUNNING: {Phase.CLAIMED, Phase.SUBMITTED},
    Phase.CLAIMED: {Phase.SUBMITTED},
    Phase.SUBMITTED: set(),
}
TRANSITIONS: dict[Phase, frozenset[Phase]] = {phase: frozenset(_FORWARD[phase] | FINISHED) for phase in IN_FLIGHT}
# A finished execution may still be refined: a plain "failed" learns from a bailout event that it
# was a bailout, and "succeeded" learns it was idle, when those events arrive after the listing.
TRANSITIONS[Phase.FAILED] = frozenset({Phase.BAILOUT, Phase.TIMEOUT})
TRANSITIONS[Phase.SUCCEEDED] = frozenset({Phase.IDLE})


VANISH_LISTINGS = 5
"""Listings in a row an execution in flight may be missing from before it counts as gone. One miss
can be a listing that raced RunJob; five (25 s at the default interval) is no race."""
VANISH_SECONDS = 30.0
"""...and for this long since it was last listed, however often the listings come."""
VANISHED = "vanished: no longer listed by Cloud Run (deleted?)"


@dataclass(slots=True)
class Execution:
    """One Cloud Run execution of a launcher job."""

    name: str
    """Full resource name: projects/…/locations/…/jobs/…/executions/…"""
    queue: str
    created: float
    phase: Phase = Phase.DISPATCHED
    started: float | None = None
    finished: float | None = None
    item_id: str | None = None
    vertex_job: str | None = None
    bailout_rule: str | None = None
    category: str | None = None
    """Bailout category: from the watchdog's event, else `crash` for a failed execution."""
    recovered: bool = False
    """Found in flight on start rather than dispatched by this process."""
    counted: bool = False
    """Its finish has been fed to the breaker and metrics."""
    idle_exit: bool = False
    """Its watchdog reported that it found no item."""
    reported_job: str | None = None
    """The CustomJob its own watchdog's `submitted` event named (`vertex_job` may be inferred)."""
    completed: float | None = None
    """Cloud Run's completion_time (epoch seconds), when the listing gave one."""
    cancel_settled: bool = False
    """CancelExecution was accepted for it, or answered that there is nothing to cancel, or the listing
    shows a cancel under way: never sent again."""
    cancel_error: str | None = None
    """The last CancelExecution error, so a persisting one is logged once."""
    cancel_unconfirmed: Fact | None = None
    """What a CancelExecution that failed with no answer reports once a listing shows it took."""
    post_submit_counted: bool = False
    """Its end, measured from its CustomJob's creation, has been observed."""
    absence: Absence = field(default_factory=lambda: Absence(VANISH_LISTINGS, VANISH_SECONDS))
    """Listings that left it out while in flight (see `absent`)."""
    events: tuple[str, ...] = ()
    """The types of the watchdog events applied to it: a second delivery of one is a duplicate."""

    def move(self, phase: Phase) -> bool:
        """Apply `phase` if the table allows it; False when refused."""
        if not allowed(TRANSITIONS, self.phase, phase):
            return False
        self.phase = phase
        return True

    @property
    def in_flight(self) -> bool:
        return self.phase in IN_FLIGHT

    @property
    def has_claimed(self) -> bool:
        """It holds an item, or reported its own CustomJob. Not its phase: a claim inferred by
        counting moves it to `claimed` for good, and when an event shows that claim was another
        execution's, this one must count again as about to claim (docs/architecture.md, Dispatch)."""
        return self.item_id is not None or self.reported_job is not None

    def outcome(self, status: str, message: str, finished: float, timeout: float) -> Phase:
        """The phase a listing that shows it ended (`status`: succeeded | failed | cancelled) means.
        A failure is a bailout when its watchdog said so, a timeout when it ran its whole task
        timeout (or Cloud Run says so), else a plain failure that waits for its category."""
        if status == "succeeded":
            return Phase.SUCCEEDED if self.has_claimed and not self.idle_exit else Phase.IDLE
        if status == "cancelled":
            return Phase.CANCELLED
        if self.phase is Phase.BAILOUT or self.category is not None:
            return Phase.BAILOUT
        ran = finished - (self.started or self.created)
        return Phase.TIMEOUT if ran >= timeout or "timeout" in message.lower() else Phase.FAILED

    def cancel_under_way(self) -> list[Fact]:
        """A listing shows it cancelling or cancelled: a cancel adds nothing now. If one of ours
        failed with no answer, it took after all: reported now, so that each cancel counts once."""
        self.cancel_settled = True
        fact, self.cancel_unconfirmed = self.cancel_unconfirmed, None
        return [] if fact is None else [fact]

    def absent(self, now: float) -> bool:
        """One more listing did not show it while in flight; True once that happened VANISH_LISTINGS
        times in a row over VANISH_SECONDS at least: it was deleted, or Cloud Run lost it, and it
        will never end by itself."""
        return self.absence.left_out(now, self.created)

    def end(self, status: str, message: str, finished: float | None, now: float, timeout: float) -> bool:
        """A listing shows it ended: move to the phase that means (see `outcome`) and keep Cloud Run's
        completion time; False when the table refuses the move (already ended that way)."""
        if not self.move(self.outcome(status, message, finished or now, timeout)):
            return False
        if self.completed is None:
            self.completed = finished
        if self.finished is None:
            self.finished = finished or now
        return True
