"""structlog set-up: JSON lines for journald, readable console output on a terminal.

Event names are dotted nouns (`dispatch.started`) with ids as fields. Nothing secret is ever passed
to a log call; the W&B key lives only inside the HTTP client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import TextIO

import structlog


class TolerantStream:
    """stderr whose write errors are swallowed: a full disk under journald's file, or a closed pipe,
    must cost log lines, never the daemon (a print that raises would end it at its next log line).
    Lines go straight to the file descriptor, so a failed one leaves nothing buffered to fail again;
    what was lost is counted, and said once the stream works again."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        try:
            self._fd: int | None = stream.fileno()
        except (OSError, ValueError):  # no descriptor (a StringIO): write to the stream itself
            self._fd = None
        self.dropped = 0

    def write(self, text: str) -> int:
        try:
            if self.dropped:
                self._put(f'{{"event": "log.dropped", "lines": {self.dropped}}}\n')
                self.dropped = 0
            self._put(text)
        except (OSError, ValueError):  # ValueError: the stream was closed
            self.dropped += 1
            return 0
        return len(text)

    def _put(self, text: str) -> None:
        if self._fd is None:
            self._stream.write(text)
            return
        data = text.encode("utf-8", "replace")
        while data:
            data = data[os.write(self._fd, data) :]

    def flush(self) -> None:
        if self._fd is None:
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()


LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(format_: str, level: str) -> None:
    console = format_ == "console" or (format_ == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(TolerantStream(sys.stderr)),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(LEVELS[level], logging.WARNING), stream=sys.stderr, format="%(name)s %(message)s")
