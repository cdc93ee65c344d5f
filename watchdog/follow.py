"""Following log files the agent writes, by polling.

wandb logs the agent's success line (`CustomJob created. Resource name: …`) to its CLI log file
under `$WANDB_DIR/wandb/` (the agent's start-up hook also prints it to stderr), and wandb-core
writes its retries to a log of its own, so files are read like the pipes. Polling (every 50 ms or
less) keeps this dependency-free and works on any filesystem; a poll is a `stat` and, when the file
grew, one read.

A file that exists when the watchdog starts is read from its end: an old log must not announce an
old submission. A file that appears later is read from its start. A file that shrinks was truncated
and is read again from the start; one replaced by another inode is reopened.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_SETTLED_NS = 1_000_000_000
READ_LIMIT = 256 * 1024
"""At most this much is read from one file per poll, so one busy file cannot stall the others."""


class FileFollower:
    """New bytes of one file, poll by poll."""

    def __init__(self, path: Path, from_end: bool) -> None:
        self.path = path
        self._fd: int | None = None
        self._inode: int | None = None
        self._offset = 0
        self._from_end = from_end

    def poll(self) -> bytes:
        """What was appended since the last poll (b"" when nothing, or the file does not exist)."""
        try:
            st = self.path.stat()
        except OSError:
            return b""
        if self._fd is None or st.st_ino != self._inode:
            self._open(st)
            if self._fd is None:
                return b""
        if st.st_size < self._offset:
            self._offset = 0
        if st.st_size == self._offset:
            return b""
        assert self._fd is not None
        try:
            data = os.pread(self._fd, READ_LIMIT, self._offset)
        except OSError:
            return b""
        self._offset += len(data)
        return data

    def _open(self, st: os.stat_result) -> None:
        self.close()
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        self._inode = st.st_ino
        self._offset = st.st_size if self._from_end else 0
        self._from_end = False  # a replacement file is new content

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LogDirectory:
    """Every `PREFIX*.log` in a directory, including ones created later.

    With `newest_only`, files there before the start are ignored and only the newest of the later
    ones (by name: wandb-core names its logs by their start time) is followed: wandb-core starts a
    new log each time it starts, and an old one says nothing about this run.
    """

    def __init__(self, directory: Path, prefix: str = "debug", newest_only: bool = False) -> None:
        self.directory = directory
        self._prefix = prefix
        self._newest_only = newest_only
        self._known: set[str] = set()
        self._listed_at: int | None = None
        self._initial = self._names()
        if newest_only:
            self._known |= self._initial

    def _names(self) -> set[str]:
        try:
            return {
                p.name for p in self.directory.iterdir() if p.name.startswith(self._prefix) and p.name.endswith(".log")
            }
        except OSError:
            return set()

    def new_files(self) -> list[FileFollower]:
        """Followers for the files that appeared since the last call."""
        # Creating a file changes its directory's mtime: list only then, not on every poll. File
        # times tick with the kernel's coarse clock (milliseconds), so a file created right after
        # a listing may leave the mtime unchanged: trust an unchanged mtime only once it is old.
        try:
            mtime = self.directory.stat().st_mtime_ns
        except OSError:
            return []
        if mtime == self._listed_at and time.time_ns() - mtime > _SETTLED_NS:
            return []
        self._listed_at = mtime
        new = sorted(self._names() - self._known)
        self._known.update(new)
        if self._newest_only:
            new = new[-1:]
        return [FileFollower(self.directory / name, from_end=name in self._initial) for name in new]
