"""Telling a record that is gone from one a listing happened to leave out.

Executions and CustomJobs in flight end by being listed as ended. One deleted while in flight is
never listed again, and would hold its slot or its item for ever; but a listing may also race the
call that created it. So a record counts as gone only after `listings` listings in a row left it
out, and `seconds` since it was last listed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Absence:
    listings: int
    seconds: float = 0.0
    missed: int = 0
    """Listings in a row that left it out while it was in flight."""
    listed: float | None = None
    """When a listing last showed it."""

    def seen(self, now: float) -> None:
        self.missed, self.listed = 0, now

    def left_out(self, now: float, since: float) -> bool:
        """One more listing left it out; True once it is gone. `since`: when it came to be, for a
        record never listed yet."""
        self.missed += 1
        return self.missed >= self.listings and now - (self.listed or since) >= self.seconds
