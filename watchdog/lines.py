"""Turning raw bytes from a pipe or file into blocks of whole lines, with bounded memory.

Data is handled a block at a time (everything up to the last newline of what arrived) rather than a
line at a time: a burst of a million lines then costs a few large decodes and splits, not a million
small ones. A line longer than `max_line` is cut at that length and the rest of it dropped, so an
agent printing megabytes without a newline cannot grow the watchdog's memory. Invalid UTF-8 becomes
U+FFFD; a newline byte is never part of a multi-byte sequence, so cutting at newlines is safe.
"""

from __future__ import annotations

MAX_LINE_BYTES = 64 * 1024
TRUNCATED = " [... line truncated by launch-watchdog]"


class LineBuffer:
    """Accumulates bytes; hands out whole lines as one decoded block."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._max_line = max_line
        self._partial = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> str:
        """The complete lines that `data` finishes, as text ending in a newline ("" when none)."""
        out: list[bytes] = []
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return ""
            data = data[newline + 1 :]
            self._discarding = False
        last = data.rfind(b"\n")
        if last >= 0:
            if self._partial:
                first = data.find(b"\n")
                head = self._partial + data[: first + 1]
                self._partial.clear()
                out.append(self._cap_line(bytes(head)))
                data_whole = data[first + 1 : last + 1]
            else:
                data_whole = data[: last + 1]
            if data_whole:
                out.append(self._cap_block(data_whole))
            rest = data[last + 1 :]
        else:
            rest = data
        if rest:
            self._partial += rest
            if len(self._partial) > self._max_line:
                out.append(bytes(self._partial[: self._max_line]) + TRUNCATED.encode() + b"\n")
                self._partial.clear()
                self._discarding = True
        if not out:
            return ""
        return b"".join(out).decode("utf-8", errors="replace")

    def flush(self) -> str:
        """What is left at end of stream, as a final line."""
        if not self._partial:
            return ""
        tail = bytes(self._partial) + b"\n"
        self._partial.clear()
        return tail.decode("utf-8", errors="replace")

    def _cap_line(self, line: bytes) -> bytes:
        if len(line) - 1 > self._max_line:
            return line[: self._max_line] + TRUNCATED.encode() + b"\n"
        return bytes(line)

    def _cap_block(self, block: bytes) -> bytes:
        # Blocks come from reads of at most a few hundred KiB, so one over-long line inside a block
        # is rare; checking the block size first keeps the common case a single comparison.
        if len(block) <= self._max_line:
            return block
        lines = block.split(b"\n")[:-1]
        if all(len(line) <= self._max_line for line in lines):
            return block
        return b"".join(self._cap_line(line + b"\n") for line in lines)
