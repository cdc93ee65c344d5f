"""Facts: what an observation or an answer changed, for the metrics and the log.

The model keeps no counters. Each change it makes that an operator may want to see comes back as a
`Fact`; the daemon turns each kind into its metric and log line through one table
(`supervisor/surface/report.py`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FactKind(enum.StrEnum):
    CLAIMED = "claimed"
    """An execution took an item (its `claimed` event, or inferred): `seconds` since its dispatch."""
    QUEUE_WAIT = "queue_wait"
    """Beside `claimed`: `seconds` from the item first seen to the dispatch of the execution that took it."""
    SUBMITTED = "submitted"
    """The item's CustomJob exists: `seconds` since the item was first seen."""
    FINISHED = "finished"
    """An execution ended, counted once: its `outcome`, `seconds` since its dispatch, and the
    `dollars` its task cost (its seconds by the launcher job's CPU and memory), once priced."""
    BAILOUT = "bailout"
    """A finished execution that failed, with its `category`: it counts toward the breaker."""
    ADOPTED = "adopted"
    """An execution in flight before this process started, found by a listing."""
    BREAKER_OPENED = "breaker_opened"
    BREAKER_CLOSED = "breaker_closed"
    VERTEX_ENDED = "vertex_ended"
    """A CustomJob reached an end state (`outcome`) after `seconds`."""
    CANCEL_REQUESTED = "cancel_requested"
    """CancelExecution was accepted (`detail`: the reason) `seconds` after the job's creation."""
    VERTEX_CANCEL_REQUESTED = "vertex_cancel_requested"
    """CancelCustomJob was accepted (`detail`: the reason): `seconds` since the run was seen stopped,
    the job was created (max_queued) or started (max_runtime)."""
    ADMITTED = "admitted"
    """A CustomJob started running: `seconds` from its creation to its start_time (capacity wait)."""
    VERTEX_COST = "vertex_cost"
    """The queue's CustomJobs cost `dollars` more since the last tick."""
    UNPRICED = "unpriced"
    """A CustomJob whose machine or accelerator type (`detail`) the price table lacks; `outcome`
    `new` the first time this process meets that type (worth a log line)."""
    POST_SUBMIT = "post_submit"
    """An execution that submitted ended `seconds` after its CustomJob was created."""
    DISPATCH_REFUSED = "dispatch_refused"
    """RunJob refused: `outcome` `new` when the error differs from the previous refusal's (worth a
    log line), else `repeated`; `seconds` until the next try."""
    DISPATCH_RECOVERED = "dispatch_recovered"
    """RunJob accepted after refusals: `seconds` since the first of them."""


@dataclass(frozen=True, slots=True)
class Fact:
    kind: FactKind
    queue: str
    execution: str | None = None
    outcome: str | None = None
    """An execution's outcome, a CustomJob's end state; see `FactKind` for the others."""
    category: str | None = None
    seconds: float | None = None
    """Latency or duration the metric records, when there is one."""
    detail: str | None = None
    custom_job: str | None = None
    """The CustomJob the fact is about, when it names one."""
    dollars: float | None = None
    """A cost, for the cost facts."""
