"""`launch-supervisor status` over HTTP: tables sized to their longest cell, columns under their headers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import Any

from click.testing import CliRunner

from launch_supervisor.cli import cli
from launch_supervisor.model.state import State
from launch_supervisor.surface.status import status_view
from tests.supervisor.model.test_queue import ex, pending, policy

LONG_QUEUE = "vertex-ai-queue-for-the-vision-team-a100"
assert len(LONG_QUEUE) == 40


@contextmanager
def serving(body: dict[str, Any]) -> Iterator[str]:
    """A loopback HTTP server answering GET /status with `body`, as the daemon does."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body).encode()
            self.send_response(200 if self.path == "/status" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads the command's output, not the server's."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="status-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def view() -> dict[str, Any]:
    """/status of a daemon with a 40-character queue whose breaker a permission bailout opened."""
    state = State()
    state.apply_policy([policy(name=LONG_QUEUE), policy(name="q")])
    queue = state.queues[LONG_QUEUE]
    queue.observe_items(pending("a", "b", "c"), 0.0)
    queue.dispatched(ex(1), 1.0)
    queue.breaker.bailout(3.0, "permission")
    state.stop_polling("q", "auth")
    return status_view(state, 13.0, version="1.2.3", ready=True, uptime=20.0)


def table(lines: list[str], header: str) -> list[list[str]]:
    """The rows under `header` cut at the columns where its headers start, or a failure naming the
    line where a cell runs past the start of the next column."""
    names = header.split("  ")
    names = [n.strip() for n in names if n.strip()]
    starts = [header.index(n) for n in names]
    rows = []
    for line in lines:
        for start in starts[1:]:
            assert line[start - 2 : start] == "  ", f"a cell runs into the column at {start}: {line!r}"
        bounds = [*starts, len(line)]
        rows.append([line[a:b].strip() for a, b in pairwise(bounds)])
    return rows


def test_long_cells_keep_every_column_under_its_header() -> None:
    """A 40-character queue name and a breaker reason widen their columns: no cell runs into the next."""
    body = view()
    with serving(body) as url:
        result = CliRunner().invoke(cli, ["status", "--url", url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "launch-supervisor 1.2.3  ready=True  up 20s"
    assert lines[1].startswith("QUEUE ")
    queues = table(lines[2:4], lines[1])
    assert queues == [
        [LONG_QUEUE, "3", "1", "open (permission bailout needs a person)", "ok", "?"],
        ["q", "0", "0", "closed", "auth", "?"],
    ]
    assert lines[4] == ""
    assert lines[5].startswith("EXECUTION ")
    executions = table(lines[6:], lines[5])
    assert executions == [[ex(1).rsplit("/", 1)[-1], LONG_QUEUE, "dispatched", "", "12s"]]
    assert all(line == line.rstrip() for line in lines)


def test_json_prints_the_body_as_the_daemon_sent_it() -> None:
    """--json is the raw /status answer, for scripts."""
    body = view()
    with serving(body) as url:
        result = CliRunner().invoke(cli, ["status", "--url", url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == body
