"""The agent as a process group: start, signal, reap, and know when every member is gone.

The agent runs in a session of its own, so one signal reaches it and everything it started, and a
Ctrl+C in a terminal reaches only the watchdog, which decides what to forward. The watchdog makes
itself a child subreaper (Linux), so grandchildren orphaned by the agent are re-parented to it and
reaped here; as PID 1 in a container it has to reap them anyway. Reaping is `waitpid(-1)`: every
exit status is collected, and the agent's is kept.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Ask Linux to re-parent orphaned descendants to this process; False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


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
"""How the agent is stopped: SIGINT lets it mark itself KILLED on the server; then harder."""


class Stopper:
    """Escalating stop of a group, driven by the watchdog's loop: no sleeping, only deadlines."""

    def __init__(self, group: AgentGroup, grace: float, first: int, now: float) -> None:
        sequence: list[int] = list(STOP_SEQUENCE)
        if first in sequence:
            sequence = sequence[sequence.index(first) :]
        else:
            sequence.insert(0, first)
        self._group = group
        self._grace = grace
        self._rest = sequence[1:]
        self.sent: list[int] = [first]
        self.first_signalled_at = now
        group.signal(first)
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
            self._group.signal(signum)
            self._next_at = now + self._grace

    def deadline(self) -> float | None:
        """When `tick` next has something to do."""
        return self._next_at if self._rest else None
