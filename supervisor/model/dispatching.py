"""How many executions a queue starts now, and what RunJob's answers do to that (docs/architecture.md,
Dispatch).

The formula takes the smallest of its terms: the work there is, the room under `max_inflight`, the
per-minute budget, the breaker's allowance, and zero while the queue's view cannot be trusted
(starting up, a RunJob with an unknown result, a stale item listing, a refusal's backoff).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from launch_supervisor.model.breaker import Breaker
from launch_supervisor.model.executions import Execution
from launch_supervisor.model.policy import QueuePolicy

BUDGET_PERIOD = 60.0
"""dispatch_budget counts executions started within this many seconds."""
REFUSAL_BACKOFF = 5.0
"""Seconds nothing is dispatched for a queue after Cloud Run refused its RunJob; doubled on each
refusal in a row, up to REFUSAL_BACKOFF_MAX. A refusal seldom passes within seconds (a permission, a
missing job: a person must act), so retrying it at every wake-up would only flood the API and the log."""
REFUSAL_BACKOFF_MAX = 300.0


@dataclass(frozen=True, slots=True)
class Decision:
    start: int
    """Executions to start now."""
    probe: bool
    """The (single) execution started is the half-open breaker's probe."""
    pending: int
    want: int
    """Pending items that no execution in flight is about to claim: the work there is."""
    why: str
    """Which term of the formula decided; logged at debug level whenever there is work."""
    not_before: float | None = None
    """While RunJob refusals back the queue off: nothing is dispatched before this time."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """RunJob refusals in a row, since the last dispatch that Cloud Run accepted."""

    error: str
    """The latest refusal's error."""
    since: float
    """The first refusal in the row."""
    backoff: float
    """Seconds from the latest refusal to `until`."""
    until: float
    """No dispatch before this time."""


@dataclass(slots=True)
class Dispatching:
    """A queue's record of its RunJob calls: the budget's window, an unknown result, refusals."""

    times: deque[float] = field(default_factory=deque)
    """When each RunJob of the last BUDGET_PERIOD was sent."""
    uncertain_since: float | None = None
    """A RunJob whose result is unknown: no dispatching until the executions are listed again."""
    refusal: Refusal | None = None
    """RunJob refused since the last accepted dispatch: the queue backs off."""

    def decide(
        self,
        now: float,
        *,
        policy: QueuePolicy,
        breaker: Breaker,
        pending: int,
        in_flight: Sequence[Execution],
        holds: dict[str, bool],
    ) -> Decision:
        """The formula; `holds` names the conditions under which the queue's view cannot be trusted."""
        while self.times and self.times[0] <= now - BUDGET_PERIOD:
            self.times.popleft()
        unclaimed = sum(1 for e in in_flight if not e.has_claimed and now - e.created < policy.claim_timeout)
        want = max(0, pending - unclaimed)
        terms = {
            "want": want,
            "room": max(0, policy.max_inflight - len(in_flight)),
            "budget": max(0, policy.dispatch_budget - len(self.times)),
        }
        allowance = breaker.allowance()
        if allowance is not None:
            terms["breaker"] = allowance
        if self.uncertain_since is not None:
            holds = {**holds, "uncertain": True}
        not_before = self.refusal.until if self.refusal is not None and now < self.refusal.until else None
        if not_before is not None:
            holds = {**holds, "refused": True}
        terms.update({name: 0 for name, holding in holds.items() if holding})
        why = min(terms, key=lambda k: terms[k])
        start = terms[why]
        return Decision(start, allowance == 1 and start > 0, pending, want, why, not_before)

    def started(self, now: float) -> Refusal | None:
        """RunJob created an execution; returns the row of refusals it ended, if any."""
        self.times.append(now)
        refusal, self.refusal = self.refusal, None
        return refusal

    def refused(self, now: float, error: str) -> tuple[Refusal, bool]:
        """RunJob refused: back off, doubling with each refusal in a row, capped. Also returns
        whether the error is new (not the previous refusal's)."""
        previous = self.refusal
        if previous is None:
            backoff, since = REFUSAL_BACKOFF, now
        else:
            backoff, since = min(REFUSAL_BACKOFF_MAX, previous.backoff * 2), previous.since
        self.refusal = Refusal(error, since, backoff, now + backoff)
        return self.refusal, previous is None or previous.error != error

    def unknown(self, now: float) -> None:
        """RunJob failed in a way that may still have created an execution."""
        self.times.append(now)
        self.uncertain_since = now
