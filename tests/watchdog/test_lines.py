"""Bytes to lines: partial lines, invalid UTF-8, and bounded memory for huge lines."""

from __future__ import annotations

from launch_watchdog.lines import TRUNCATED, LineBuffer


def test_partial_lines_wait_for_their_newline() -> None:
    """Only complete lines come out; the rest waits for the next read."""
    buf = LineBuffer()
    assert buf.feed(b"one\ntw") == "one\n"
    assert buf.feed(b"o\nthr") == "two\n"
    assert buf.flush() == "thr\n"
    assert buf.flush() == ""


def test_invalid_utf8_becomes_replacement_characters() -> None:
    """Undecodable bytes never raise; a multi-byte character split across reads survives."""
    buf = LineBuffer()
    assert buf.feed(b"bad \xff\xfe\n") == "bad \ufffd\ufffd\n"
    assert buf.feed("caf\u00e9".encode()[:-1]) == ""
    assert buf.feed("caf\u00e9".encode()[-1:] + b"\n") == "caf\u00e9\n"


def test_a_huge_line_is_cut_and_the_rest_dropped() -> None:
    """A line without newline beyond the cap is emitted truncated; memory stays at the cap."""
    buf = LineBuffer(max_line=1000)
    out = ""
    for _ in range(100):
        out += buf.feed(b"x" * 4096)
        assert len(buf._partial) <= 1000 + 4096  # noqa: SLF001 - the bound is the point of the test
    out += buf.feed(b"tail\nnext\n")
    lines = out.splitlines()
    assert lines[0] == "x" * 1000 + TRUNCATED
    assert lines[1:] == ["next"]


def test_an_over_long_line_inside_a_block_is_cut() -> None:
    """A long line that arrives whole, among others, is cut too."""
    buf = LineBuffer(max_line=10)
    assert buf.feed(b"short\n" + b"y" * 50 + b"\nok\n") == "short\n" + "y" * 10 + TRUNCATED + "\nok\n"
