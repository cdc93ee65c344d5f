"""Stand-ins for the agent's process group and the events, for tests without processes."""

from __future__ import annotations

from typing import Any

from launch_watchdog.ending import Ending
from launch_watchdog.process import Shutdown


class Group:
    """Stands in for the agent's process group: records the signals it is sent."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.exit_code: int | None = None

    def signal(self, signum: int) -> bool:
        self.sent.append(signum)
        return True

    def reap(self) -> None:
        pass

    @property
    def exited(self) -> bool:
        return self.exit_code is not None

    def alive(self) -> bool:
        return not self.exited


def ending(reports: list[str] | None = None) -> tuple[Ending, Group, Shutdown]:
    """An `Ending` over a stand-in group (grace 10 s, submit grace 0.5 s)."""
    group = Group()
    report = reports.append if reports is not None else [].append
    shutdown = Shutdown(report)
    shutdown.group = group  # type: ignore[assignment]
    return Ending(shutdown, grace=10.0, submit_grace=0.5, report=report), group, shutdown


class Events:
    """Keeps the events instead of printing them."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, str, dict[str, Any]]] = []

    def emit(self, event: str, severity: str, message: str, **data: Any) -> dict[str, Any]:
        self.emitted.append((event, message, data))
        return data
