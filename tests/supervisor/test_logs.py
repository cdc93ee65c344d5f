"""Logging never ends the daemon: a stream that cannot be written loses lines, counted."""

from __future__ import annotations

import io
from pathlib import Path

from launch_supervisor.logs import TolerantStream


def test_a_full_disk_drops_lines_and_says_how_many_once_it_works_again(tmp_path: Path) -> None:
    """Writes to /dev/full fail with ENOSPC: swallowed and counted; later writes report the loss."""
    log = tmp_path / "log"
    with Path("/dev/full").open("w") as full, log.open("w") as roomy:
        stream = TolerantStream(full)
        assert stream.write("line 1\n") == 0
        stream.write("line 2\n")
        stream.flush()
        assert stream.dropped == 2
        stream._fd = roomy.fileno()  # noqa: SLF001 - the disk has room again
        assert stream.write("line 3\n") == len("line 3\n")
    assert log.read_text() == '{"event": "log.dropped", "lines": 2}\nline 3\n'
    assert stream.dropped == 0


def test_a_closed_stream_is_a_dropped_line_too() -> None:
    """A stream closed under the logger (ValueError) costs the line, not the daemon."""
    closed = io.StringIO()
    closed.close()
    stream = TolerantStream(closed)
    assert stream.write("x\n") == 0
    stream.flush()
    assert stream.dropped == 1
