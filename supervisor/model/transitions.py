"""Allowed state changes, checked in one place.

Observations arrive late, twice, or out of order (a poll racing an event). A change a table does
not allow is refused, never applied, so a stale observation cannot move a record back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

S = TypeVar("S", bound=enum.Enum)


def allowed(table: Mapping[S, frozenset[S]], current: S, new: S) -> bool:
    """Whether `current` may become `new`; staying put is always allowed."""
    if current == new:
        return True
    return new in table.get(current, frozenset())
