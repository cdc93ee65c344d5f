"""Finding and stopping the agent's processes and what it left behind, without starting processes."""

from __future__ import annotations

import signal
from pathlib import Path

from launch_watchdog.process import LEFTOVER_SEQUENCE, Shutdown, Stopper, descendants
from tests.watchdog.fakes import Group


def fake_proc(tmp_path: Path, table: dict[int, tuple[int, str]]) -> Path:
    """A /proc with `pid → (ppid, state)`; command names with spaces and parentheses, as real ones can have."""
    for pid, (ppid, state) in table.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (wandb core) x) {state} {ppid} {pid} {pid} 0 -1\n")
    (tmp_path / "self").mkdir()
    return tmp_path


def test_descendants_follow_parent_links_across_sessions(tmp_path: Path) -> None:
    """Children, grandchildren and re-parented orphans, zombies marked; other trees left out."""
    proc = fake_proc(
        tmp_path,
        {
            10: (1, "S"),  # the watchdog
            11: (10, "S"),  # the agent
            12: (11, "S"),  # wandb-core, its own session
            13: (12, "S"),  # wandb-symon
            14: (10, "Z"),  # a zombie child
            15: (10, "S"),  # a daemon re-parented to the watchdog
            20: (1, "S"),  # someone else's
            21: (20, "S"),
        },
    )
    assert descendants(10, proc) == {11: False, 12: False, 13: False, 14: True, 15: False}
    assert descendants(13, proc) == {}


def test_descendants_without_proc_is_empty(tmp_path: Path) -> None:
    assert descendants(1, tmp_path / "missing") == {}


class Recorder:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def signal(self, signum: int) -> bool:
        self.sent.append(signum)
        return True


def test_leftovers_get_sigterm_then_sigkill_after_the_grace() -> None:
    """wandb-core ignores SIGTERM while it retries: SIGKILL follows one grace period later."""
    target = Recorder()
    stopper = Stopper(target, 2.0, signal.SIGTERM, 100.0, LEFTOVER_SEQUENCE)
    assert target.sent == [signal.SIGTERM]
    assert stopper.deadline() == 102.0
    stopper.tick(101.0)
    assert target.sent == [signal.SIGTERM]
    stopper.tick(102.0)
    assert target.sent == [signal.SIGTERM, signal.SIGKILL]
    assert stopper.deadline() is None


class Leftovers(Recorder):
    """Stands in for the watchdog's descendants: these pids live until SIGKILL."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__()
        self.pids = pids

    def living(self) -> list[int]:
        return [] if signal.SIGKILL in self.sent else self.pids


def shutdown(leftovers: list[int]) -> tuple[Shutdown, Group, Leftovers, list[str]]:
    reports: list[str] = []
    stop = Shutdown(reports.append)
    stop.group = group = Group()  # type: ignore[assignment]
    stop.leftovers = gone = Leftovers(leftovers)  # type: ignore[assignment]
    return stop, group, gone, reports


def test_one_stop_at_a_time_and_signals_go_to_it() -> None:
    """A second stop request starts nothing new; a forwarded signal reaches the group."""
    stop, group, _, _ = shutdown([])
    stop.stop(10.0, signal.SIGINT, 100.0)
    stop.stop(1.0, signal.SIGTERM, 101.0)
    assert group.sent == [signal.SIGINT]
    assert stop.deadlines() == [110.0]
    stop.forward(signal.SIGTERM, 10.0, 102.0)
    assert group.sent == [signal.SIGINT, signal.SIGTERM]
    stop.tick(110.0)
    assert group.sent == [signal.SIGINT, signal.SIGTERM, signal.SIGTERM]
    stop.kill_now()
    assert group.sent[-1] == signal.SIGKILL
    assert stop.deadlines() == []


def test_a_forwarded_signal_starts_the_stop_when_none_is_under_way() -> None:
    stop, group, _, _ = shutdown([])
    stop.forward(signal.SIGTERM, 10.0, 100.0)
    assert group.sent == [signal.SIGTERM]
    assert stop.deadlines() == [110.0]


def test_leftovers_are_swept_once_the_group_is_gone() -> None:
    """SIGTERM to what the agent left running, SIGKILL after the grace; done once none is left."""
    stop, _, gone, reports = shutdown([41, 42])
    assert not stop.no_leftovers(100.0, 2.0)
    assert gone.sent == [signal.SIGTERM]
    assert reports == ["stopping 2 process(es) the agent left running: [41, 42]"]
    assert stop.deadlines() == [102.0]
    assert not stop.no_leftovers(101.0, 2.0)
    assert gone.sent == [signal.SIGTERM]
    assert not stop.no_leftovers(102.0, 2.0)
    assert gone.sent == [signal.SIGTERM, signal.SIGKILL, signal.SIGKILL]
    assert stop.no_leftovers(102.1, 2.0)


def test_a_second_signal_before_the_sweep_kills_the_leftovers_at_once() -> None:
    """The second signal may come after the group exited but before the sweep began: no grace then."""
    stop, group, gone, _ = shutdown([41, 42])
    stop.forward(signal.SIGTERM, 60.0, 100.0)
    stop.kill_now()
    assert group.sent == [signal.SIGTERM, signal.SIGKILL]
    assert not stop.no_leftovers(100.5, 60.0)
    assert gone.sent == [signal.SIGTERM, signal.SIGKILL]
    assert stop.no_leftovers(100.6, 60.0)


def test_after_a_bug_everything_is_killed() -> None:
    stop, group, gone, _ = shutdown([41])
    stop.kill_everything()
    assert group.sent == [signal.SIGKILL]
    assert gone.sent == [signal.SIGKILL]
