"""The hook clients report each API call through, so they need not import the metrics module."""

from __future__ import annotations

from typing import Protocol


class ObserveCall(Protocol):
    def __call__(self, api: str, method: str, code: str, seconds: float) -> None:
        """One finished API call: which API and method, its status code, its duration."""


def ignore_call(api: str, method: str, code: str, seconds: float) -> None:
    """For clients used without metrics (check tools, tests)."""
