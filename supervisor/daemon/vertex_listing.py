"""Which CustomJobs the Vertex loop reads at each tick: what changed, not what happened today
(docs/architecture.md, What each loop costs).

A project keeps thousands of ended CustomJobs within the lookback; reading them all at every tick
cost about a millisecond of CPU each. So a tick lists the live jobs (any state but an end state) and
the jobs created since the previous tick began, less `RECENT_MARGIN`; a job the model holds in
flight that neither listing shows has ended (or was deleted) meanwhile, and is read with one
GetCustomJob. That costs two calls plus one per job that ended, however many jobs the lookback holds.
The whole lookback is listed at start (to adopt every job the agents made while the daemon was
down) and every `poll.vertex_full_interval` as a safety net, and folded a page at a time: what it
holds at once is one page of jobs, not the lookback.
"""

from __future__ import annotations

import time
from contextlib import aclosing
from dataclasses import dataclass

from launch_supervisor.daemon import clock
from launch_supervisor.engines.trackers.vertex import VertexTracker
from launch_supervisor.model.facts import Fact
from launch_supervisor.model.observations import VertexSeen
from launch_supervisor.model.state import State

RECENT_MARGIN = 60.0
"""Seconds the listing of new jobs reaches back before the previous tick began: room for the clock of
this machine and Vertex AI's to differ, and for a job created during a listing to show only later."""


@dataclass(slots=True)
class VertexListing:
    lookback: float
    """`gcp.vertex_lookback`: how far back the full listing reaches."""
    full_every: float
    """`poll.vertex_full_interval`."""
    full_at: float | None = None
    """Monotonic time of the latest full listing; None before the first."""
    high_water: float | None = None
    """The daemon's clock when the latest successful tick began: jobs created after it (less the
    margin) are listed at the next."""

    async def tick(self, state: State, tracker: VertexTracker) -> list[Fact]:
        """List what the next tick needs, fold it into the model and return the facts."""
        now = clock.now()
        horizon = now - self.lookback
        if self.full_at is None or self.high_water is None or time.monotonic() - self.full_at >= self.full_every:
            started = time.monotonic()
            unseen = set(state.vertex_in_flight())
            facts = []
            async with aclosing(tracker.pages(horizon)) as listing:
                async for page in listing:  # folded as it comes: one page held at a time
                    facts += state.observe_vertex(page, now, horizon)
                    unseen.difference_update(job.name for job in page)
            facts += state.vertex_left_out(unseen, now, horizon)
            self.full_at = started
        else:
            live = await tracker.live()
            recent = await tracker.list(max(horizon, self.high_water - RECENT_MARGIN))
            listed = {job.name for job in live} | {job.name for job in recent}
            read: list[VertexSeen] = []
            gone: list[str] = []
            for name in state.vertex_in_flight():
                if name not in listed:
                    job = await tracker.get(name)
                    if job is None:
                        gone.append(name)
                    else:
                        read.append(job)
            facts = state.observe_vertex([*live, *recent, *read], now, horizon)
            facts += state.vertex_gone(gone, now)
        self.high_water = now
        return facts + state.tally_costs(now)
