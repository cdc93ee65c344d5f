"""The agent's output: its two pipes and its log files, read as they grow and scanned.

Everything read is cleaned (terminal escapes dropped, secrets redacted) before anything else sees
it; the pipes are passed through to the watchdog's own stdout and stderr, and their last lines kept
for the bailout block. When an incident is decided at once, what was already written is read ahead
before the agent is signalled and scanned into the incident afterwards, so nothing the agent prints
in reaction to the signal can join it (see `incident`).
"""

from __future__ import annotations

import os
import re
import selectors
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from launch_watchdog.follow import FileFollower, LogDirectory
from launch_watchdog.lines import LineBuffer
from launch_watchdog.redact import Redactor, StreamRedactor
from launch_watchdog.scanner import Finding, Scanner, Stream, kind_of

FILE_POLL_SECONDS = 0.05
READ_SIZE = 256 * 1024
FINAL_DRAIN_SECONDS = 1.0
BLOCK_QUIET_SECONDS = 0.5
"""A block whose stream has written nothing for this long is over."""
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(slots=True)
class Source:
    """One place lines come from: a pipe of the agent, or a followed file."""

    name: str
    stream: Stream
    redactor: StreamRedactor
    echo: Callable[[str], None] | None
    """Where the redacted lines are passed through (pipes only)."""
    buffer: LineBuffer = field(default_factory=LineBuffer)
    follower: FileFollower | None = None
    last_data: float = 0.0
    """When bytes last arrived (monotonic seconds); a held block ends after a quiet gap."""


Waiting = list[tuple["int | Source", bytes]]
"""Output read but not yet scanned: (pipe fd or file source, bytes); b"" is a pipe's end."""


class AgentOutput:
    """Reads, cleans, passes through and scans what the agent writes; each finding goes to `found`."""

    def __init__(
        self,
        scanner: Scanner,
        redactor: Redactor,
        context_lines: int,
        found: Callable[[Finding, float], None],
        caught_up: Callable[[], None],
    ) -> None:
        """`found` gets each finding with when its text was read; `caught_up` runs once the output
        read ahead (`read_ahead`) has been scanned."""
        self.scanner = scanner
        self.redactor = redactor
        self.context: deque[str] = deque(maxlen=context_lines)
        """The agent's last lines on its pipes, for the bailout block."""
        self._found = found
        self._caught_up = caught_up
        self._sources: dict[int, Source] = {}
        self._by_name: dict[str, Source] = {}
        self._selector = selectors.DefaultSelector()
        self._files: list[Source] = []
        self._log_dirs: list[tuple[LogDirectory, str | None]] = []
        self._waiting: Waiting | None = None
        """Output read ahead of a signal, still to be scanned into the incident."""

    # -- what is read -------------------------------------------------------------------------

    def watch_directory(self, directory: LogDirectory, kind: str | None) -> None:
        """Read every log file that appears in `directory` (`kind` None: the name says which)."""
        self._log_dirs.append((directory, kind))

    def add_pipe(self, name: str, fd: int, echo: Callable[[str], None]) -> None:
        """Read a pipe of the agent as it is written, passing its lines through to `echo`."""
        self._sources[fd] = self._new_source(name, "agent", echo)
        self._selector.register(fd, selectors.EVENT_READ)

    def add_file(self, follower: FileFollower, kind: str | None) -> None:
        """Read a file by polling (`kind` None: its name says which)."""
        name = follower.path.name
        if name in self._by_name:
            name = str(follower.path)
        source = self._new_source(name, kind_of(follower.path.name) if kind is None else kind, None)
        source.follower = follower
        self._files.append(source)

    def register(self, fd: int) -> None:
        """Also wake `select` when `fd` (not a pipe of the agent) is readable."""
        self._selector.register(fd, selectors.EVENT_READ)

    def _new_source(self, name: str, kind: str, echo: Callable[[str], None] | None) -> Source:
        source = Source(name, self.scanner.stream(name, kind), self.redactor.stream(), echo)
        self._by_name[name] = source
        return source

    # -- reading ------------------------------------------------------------------------------

    def select(self, timeout: float) -> list[int]:
        """The registered descriptors that are readable within `timeout` seconds."""
        return [int(key.fd) for key, _ in self._selector.select(timeout)]

    def read(self, fd: int) -> bool:
        """Read and scan once from a pipe; False when nothing more is available right now.

        A pipe that `select` reported may have had its end read ahead meanwhile (a rule fired on
        another pipe); it is done, and reading it again is a no-op.
        """
        if fd not in self._sources:
            return False
        data = self._read_raw(fd)
        if data is None:
            return False
        self._consume(fd, data, time.monotonic())
        return bool(data)

    def poll_files(self) -> None:
        """Pick up new log files, and read and scan what every file gained since the last poll."""
        for directory, kind in self._log_dirs:
            for follower in directory.new_files():
                self.add_file(follower, kind)
        for source in self._files:
            assert source.follower is not None
            data = source.follower.poll()
            if data:
                source.last_data = time.monotonic()
                self._process(source, source.buffer.feed(data), source.last_data)

    def read_ahead(self) -> None:
        """Read everything already written, unscanned; it is scanned once the current text is."""
        self._waiting = self._unscanned()

    def quiet_deadline(self, holding: str | None) -> float | None:
        """When the block on stream `holding` (the one an incident waits for) ends for want of output."""
        source = self._by_name.get(holding) if holding is not None else None
        return None if source is None else source.last_data + BLOCK_QUIET_SECONDS

    def end_quiet_block(self, holding: str | None, now: float) -> None:
        """End the block on stream `holding` if that stream has been quiet long enough."""
        quiet_at = self.quiet_deadline(holding)
        if quiet_at is None or now < quiet_at:
            return
        assert holding is not None
        ended = self.scanner.end_block(self._by_name[holding].stream, "quiet")
        if ended is not None:
            self._found(ended, now)

    def final_drain(self) -> None:
        """Read what is left in the pipes (until EOF, or a second if something still holds them)."""
        deadline = time.monotonic() + FINAL_DRAIN_SECONDS
        while self._sources and time.monotonic() < deadline:
            for fd in self.select(max(0.0, deadline - time.monotonic())):
                if fd in self._sources:
                    self.read(fd)
        for source in list(self._sources.values()):
            self._process(source, source.buffer.flush(), time.monotonic())
            self._end_stream(source, time.monotonic())
        self.poll_files()
        for source in self._files:
            self._process(source, source.buffer.flush(), time.monotonic())
            self._end_stream(source, time.monotonic())
            if source.follower is not None:
                source.follower.close()

    def close(self) -> None:
        self._selector.close()

    def _read_raw(self, fd: int) -> bytes | None:
        """One read from a pipe: None when nothing is waiting, b"" at its end."""
        try:
            return os.read(fd, READ_SIZE)
        except BlockingIOError:
            return None

    def _consume(self, fd: int, data: bytes, read_at: float) -> None:
        source = self._sources[fd]
        source.last_data = read_at
        if data:
            self._process(source, source.buffer.feed(data), read_at)
            return
        self._selector.unregister(fd)
        del self._sources[fd]
        self._process(source, source.buffer.flush(), read_at)
        self._end_stream(source, read_at)

    def _end_stream(self, source: Source, read_at: float) -> None:
        ended = self.scanner.end_block(source.stream, "end")
        if ended is not None:
            self._found(ended, read_at)

    def _unscanned(self) -> Waiting:
        """Everything already written to the pipes and files, read without scanning it."""
        waiting: Waiting = []
        for fd in list(self._sources):
            while (data := self._read_raw(fd)) is not None:
                waiting.append((fd, data))
                if not data:
                    break
        for source in self._files:
            assert source.follower is not None
            while data := source.follower.poll():
                waiting.append((source, data))
        return waiting

    # -- scanning -----------------------------------------------------------------------------

    def _process(self, source: Source, text: str, read_at: float) -> None:
        if not text:
            return
        if "\x1b" in text:
            # Redacted on both sides of the escapes' removal: a secret split by escapes is whole
            # only after it, and one right after an escape's `ESC [` would lose its first letter.
            text = _ANSI.sub("", self.redactor.redact_inline(text))
        text = source.redactor.redact(text)
        if source.echo is not None:
            source.echo(text)
            if self.context.maxlen:
                tail = text[:-1].rsplit("\n", self.context.maxlen)
                self.context.extend(tail[1:] if len(tail) > self.context.maxlen else tail)
        for finding in self.scanner.feed(source.stream, text):
            self._found(finding, read_at)
        if self._waiting is not None:
            self._scan_read_ahead(read_at)

    def _scan_read_ahead(self, read_at: float) -> None:
        """Scan the output read ahead of the signal, then let the listener close the incident."""
        waiting, self._waiting = self._waiting, None
        assert waiting is not None
        for key, data in waiting:
            if isinstance(key, int):
                self._consume(key, data, read_at)
            else:
                key.last_data = read_at
                self._process(key, key.buffer.feed(data), read_at)
        self._caught_up()
