"""The agent as a process group: start, signal, reap, and know when every member is gone.

The agent runs in a session of its own, so one signal reaches it and everything it started, and a
Ctrl+C in a terminal reaches only the watchdog, which decides what to forward. The watchdog makes
itself a child subreaper (Linux), so grandchildren orphaned by the agent are re-parented to it and
reaped here; as PID 1 in a container it has to reap them anyway. Reaping is `waitpid(-1)`: every
exit status is collected, and the agent's is kept.

Not everything the agent starts stays in its group: wandb-core calls setsid and starts wandb-symon,
and wandb-core may ignore SIGTERM for minutes while it retries. So once the group is gone, the
watchdog's remaining descendants (found through the parent links in /proc, whatever their session)
are stopped too, and the watchdog exits only when none is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

_PR_SET_CHILD_SUBREAPER = 36
KILL_WAIT_SECONDS = 2.0
"""After a watchdog bug, how long to wait for the SIGKILLed processes to be gone."""


def become_subreaper() -> bool:
    """Ask Linux to re-parent orphaned descendants to this process; False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def descendants(root: int, proc: Path = Path("/proc")) -> dict[int, bool]:
    """pid → whether it is a zombie, for every descendant of `root`, from the parent links in /proc.

    Empty where /proc cannot be read. Zombies are listed too: a zombie child is reaped, and one
    whose parent is still alive goes when that parent does.
    """
    parents: dict[int, list[tuple[int, bool]]] = {}
    try:
        entries = list(proc.iterdir())
    except OSError:
        return {}
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        parents.setdefault(int(fields[1]), []).append((int(entry.name), fields[0] == "Z"))
    found: dict[int, bool] = {}
    frontier = [root]
    while frontier:
        for pid, zombie in parents.get(frontier.pop(), ()):
            if pid not in found:
                found[pid] = zombie
                frontier.append(pid)
    return found


class Target(Protocol):
    """Something a `Stopper` signals."""

    def signal(self, signum: int) -> bool: ...


class Descendants:
    """Every process below the watchdog, whatever its session or group: what the agent left behind."""

    def __init__(self, root: int | None = None) -> None:
        self.root = os.getpid() if root is None else root

    def living(self) -> list[int]:
        return [pid for pid, zombie in descendants(self.root).items() if not zombie]

    def signal(self, signum: int) -> bool:
        """Send `signum` to each living descendant; False when there is none."""
        sent = False
        for pid in self.living():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
                sent = True
        return sent


class AgentGroup:
    """The agent process and its process group."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """Start `argv` in a new session; raises OSError when it cannot be started."""
        self._proc = subprocess.Popen(  # noqa: S603 - the command is the operator's, by design
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
        )
        self.pid = self._proc.pid
        self.pgid = self.pid
        self.exit_code: int | None = None
        """The agent's exit code once reaped (128+N when killed by signal N)."""
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        self.stdout = self._proc.stdout.fileno()
        self.stderr = self._proc.stderr.fileno()
        for fd in (self.stdout, self.stderr):
            os.set_blocking(fd, False)

    def reap(self) -> None:
        """Collect every exited child (the agent, and orphans re-parented to us) without blocking."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                code = os.waitstatus_to_exitcode(status)
                self.exit_code = 128 - code if code < 0 else code
                self._proc.returncode = code  # so Popen never waits for it again

    @property
    def exited(self) -> bool:
        return self.exit_code is not None

    def alive(self) -> bool:
        """Whether any process of the group still exists (call `reap` first: zombies count)."""
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal(self, signum: int) -> bool:
        """Send `signum` to the whole group; False when the group is already gone."""
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            return False
        except OSError as exc:  # pragma: no cover - EPERM cannot happen for our own children
            if exc.errno == errno.ESRCH:
                return False
            raise
        return True

    def close(self) -> None:
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


STOP_SEQUENCE = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
"""How the agent is stopped: SIGINT first, the gentlest (click prints `Aborted!` and the agent exits
1; it does not mark itself KILLED on the server), then harder."""
LEFTOVER_SEQUENCE = (signal.SIGTERM, signal.SIGKILL)
"""How what outlived the agent's group is stopped: wandb-core gets SIGTERM, ignores it while it
retries, and is killed after the grace period."""


class Stopper:
    """Escalating stop of a group (or the leftovers), driven by the watchdog's loop: only deadlines."""

    def __init__(
        self,
        target: Target,
        grace: float,
        first: int,
        now: float,
        sequence: Sequence[int] = STOP_SEQUENCE,
    ) -> None:
        steps = list(sequence)
        if first in steps:
            steps = steps[steps.index(first) :]
        else:
            steps.insert(0, first)
        self._target = target
        self._grace = grace
        self._rest = steps[1:]
        self.sent: list[int] = [first]
        self.first_signalled_at = now
        target.signal(first)
        self._next_at = now + grace

    def escalate_now(self, now: float) -> None:
        """Skip the remaining grace (a second stop request): SIGKILL at once."""
        if signal.SIGKILL not in self.sent:
            self._rest = [signal.SIGKILL]
            self._next_at = now
            self.tick(now)

    def tick(self, now: float) -> None:
        if self._rest and now >= self._next_at:
            signum = self._rest.pop(0)
            self.sent.append(signum)
            self._target.signal(signum)
            self._next_at = now + self._grace

    def deadline(self) -> float | None:
        """When `tick` next has something to do."""
        return self._next_at if self._rest else None


class Shutdown:
    """Stops the agent's group, then every descendant that outlived it; or, after a bug, kills all."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.group: AgentGroup | None = None
        """The agent's group, once started."""
        self.stopper: Stopper | None = None
        self.sweeper: Stopper | None = None
        """Stops what outlived the agent's group."""
        self.leftovers = Descendants()
        self.hurried = False
        """A second stop request came: every stop, including one not started yet, skips its grace."""
        self._report = report

    def stop(self, grace: float, first: int, now: float) -> None:
        """Start stopping the group with `first`, unless a stop is under way already."""
        assert self.group is not None
        if self.stopper is None:
            self.stopper = Stopper(self.group, grace, first, now)

    def forward(self, signum: int, grace: float, now: float) -> None:
        """Pass a signal on to the group; the first one starts the stop."""
        assert self.group is not None
        if self.stopper is None:
            self.stopper = Stopper(self.group, grace, signum, now)
        else:
            self.group.signal(signum)

    def kill_now(self) -> None:
        """Skip the remaining grace of every stop, under way or still to come: SIGKILL at once."""
        self.hurried = True
        for stopper in (self.stopper, self.sweeper):
            if stopper is not None:
                stopper.escalate_now(time.monotonic())

    def deadlines(self) -> list[float]:
        """When the stops under way next escalate."""
        return [
            at
            for stopper in (self.stopper, self.sweeper)
            if stopper is not None and (at := stopper.deadline()) is not None
        ]

    def tick(self, now: float) -> None:
        """Escalate the group's stop when due."""
        if self.stopper is not None:
            assert self.group is not None
            self.stopper.tick(now)
            self.group.reap()  # SIGCHLD reaps too; while stopping, check on every tick anyway

    def no_leftovers(self, now: float, grace: float) -> bool:
        """Whether every descendant is gone; if not, stop them (SIGTERM, then SIGKILL after the grace)."""
        assert self.group is not None
        self.group.reap()
        living = self.leftovers.living()
        if not living:
            return True
        if self.sweeper is None:
            self._report(f"stopping {len(living)} process(es) the agent left running: {sorted(living)}")
            self.sweeper = Stopper(self.leftovers, grace, signal.SIGTERM, now, LEFTOVER_SEQUENCE)
            if self.hurried:  # the second signal came while the group was exiting
                self.sweeper.escalate_now(now)
        else:
            self.sweeper.tick(now)
            if self.sweeper.deadline() is None:
                self.leftovers.signal(signal.SIGKILL)  # ones that appeared after the SIGKILL went out
        return False

    def kill_everything(self) -> None:
        """SIGKILL the agent's group and every other descendant, and reap them (bounded wait)."""
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while True:
            if self.group is not None:
                self.group.signal(signal.SIGKILL)
            self.leftovers.signal(signal.SIGKILL)
            if self.group is not None:
                self.group.reap()
            if not self.leftovers.living() or time.monotonic() >= deadline:
                return
            time.sleep(0.01)
