"""Finding and stopping what the agent left behind, without starting processes."""

from __future__ import annotations

import signal
from pathlib import Path

from watchdog.process import LEFTOVER_SEQUENCE, Stopper, descendants


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
