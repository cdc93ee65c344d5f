"""Writing to the watchdog's own stdout and stderr.

Writes go straight to the file descriptors, whole lines at a time, under a lock (the Pub/Sub
thread reports failures too), so event lines never interleave with passed-through agent output.
A closed reader (EPIPE) must not kill the watchdog while it still has an agent to stop: that
stream is then dropped silently.
"""

from __future__ import annotations

import os
import threading


class Console:
    """The watchdog's stdout and stderr."""

    def __init__(self, out_fd: int = 1, err_fd: int = 2) -> None:
        self._fds = {"out": out_fd, "err": err_fd}
        self._dead: set[str] = set()
        self._lock = threading.Lock()

    def out(self, text: str) -> None:
        self._write("out", text)

    def err(self, text: str) -> None:
        self._write("err", text)

    def _write(self, stream: str, text: str) -> None:
        if not text or stream in self._dead:
            return
        data = memoryview(text.encode("utf-8", errors="replace"))
        with self._lock:
            fd = self._fds[stream]
            while data:
                try:
                    written = os.write(fd, data)
                except InterruptedError:
                    continue
                except BlockingIOError:
                    os.set_blocking(fd, True)
                    continue
                except OSError:  # EPIPE, EBADF: nobody is reading any more
                    self._dead.add(stream)
                    return
                data = data[written:]
