"""What the operator sees: the view drawn over itself on a terminal and as plain lines elsewhere, the
progress lines from records made by hand, the banner and the summary."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from launch_supervisor.sandbox.emulator import free_port
from launch_supervisor.sandbox.view import View, banner, progress, summary_text
from launch_supervisor.surface.asgi import serve_asgi
from tests.sandbox.records import QUEUE, Records

URL = "http://127.0.0.1:9464"
UP = "\x1b["  # a cursor movement: what redrawing in place writes


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_each_view_is_appended_as_plain_lines() -> None:
    out = io.StringIO()
    view = View(out)
    assert not view.live()
    view.draw(["a", "b"])
    view.draw(["c"])
    view.draw(["d"], final=True)
    assert out.getvalue() == "a\nb\nc\nd\n"


def test_on_a_terminal_each_view_replaces_the_last() -> None:
    """Up over the lines drawn and clear them; a message said in between, or a final view, stays."""
    out = Terminal()
    view = View(out)
    assert view.live()
    view.draw(["a", "b"])
    view.draw(["c"])
    assert out.getvalue() == "a\nb\n\x1b[2F\x1b[Jc\n"
    view.say("the daemon was killed by SIGKILL")
    view.draw(["d"], final=True)
    view.draw(["e"])
    assert out.getvalue().endswith("c\nthe daemon was killed by SIGKILL\nd\ne\n")


def test_redrawing_in_place_can_be_chosen_either_way() -> None:
    assert View(Terminal(), redraw=False).live() is False
    assert View(io.StringIO(), redraw=True).live() is True
    out = io.StringIO()
    view = View(out, redraw=False)
    view.draw(["a"])
    view.draw(["b"])
    assert UP not in out.getvalue()


def queue_status(breaker: dict[str, Any], **in_flight: int) -> dict[str, Any]:
    return {"queues": {QUEUE: {"pending": 2, "in_flight": in_flight, "breaker": breaker}}}


def test_progress_shows_items_terminal_each_queue_and_the_custom_jobs(tmp_path: Path) -> None:
    records = Records.empty(tmp_path)
    done = records.item("CLAIMED")
    records.job(done, "JOB_STATE_SUCCEEDED")
    waiting = records.item("CLAIMED")
    records.job(waiting, "JOB_STATE_RUNNING")
    records.job(records.item("LEASED"), "JOB_STATE_RUNNING")
    records.execution()
    status = queue_status(
        {"state": "open", "reason": "permission", "reopens_in_s": 12}, claiming=1, submitted=0, running=2
    )
    lines = progress(records.stack, [done, waiting], items=4, elapsed=7.4, status=status, url=URL)
    assert lines == [
        f"[{'#' * 7}{'.' * 23}] 1/4 items terminal  (7s, 1 executions started)",
        f"queue {QUEUE}: pending 2, in flight: claiming 1 running 2; breaker open (permission, reopens in 12s)",
        "vertex jobs: running 2, succeeded 1",
        f"metrics: {URL}/metrics",
    ]


def test_progress_says_when_the_daemon_does_not_answer(tmp_path: Path) -> None:
    records = Records.empty(tmp_path)
    lines = progress(records.stack, [], items=0, elapsed=0.0, status={}, url=URL)
    assert lines == [
        f"[{'.' * 30}] 0/0 items terminal  (0s, 0 executions started)",
        "vertex jobs: none",
        f"daemon: not answering at {URL}",
    ]
    closed = queue_status({"state": "closed"})
    lines = progress(records.stack, [], items=0, elapsed=0.0, status=closed, url=URL)
    assert lines[1] == f"queue {QUEUE}: pending 2, in flight: none; breaker closed"


def test_progress_counts_the_runs_stopped_in_wandb(tmp_path: Path) -> None:
    records = Records.empty(tmp_path)
    records.stack.wandb.start_run("team", "p", "r1")
    records.stack.wandb.start_run("team", "p", "r2")
    lines = progress(records.stack, [], items=0, elapsed=0.0, status={}, url=URL)
    assert not any("stopped" in line for line in lines)
    records.stack.wandb.stop_run("r2")
    lines = progress(records.stack, [], items=0, elapsed=0.0, status={}, url=URL)
    assert lines[-2] == "runs stopped in W&B: 1"


def test_the_banner_says_how_items_are_dispatched_where_to_look_and_how_to_stop_a_run() -> None:
    work = Path("/tmp/work")
    wandb = "http://127.0.0.1:40000"
    assert banner("mixed", 10, "127.0.0.1:8085", URL, work, wandb_url=wandb) == (
        "launch-supervisor sandbox: scenario mixed, 10 items, Pub/Sub emulator on 127.0.0.1:8085\n"
        f"  metrics  {URL}/metrics\n"
        f"  status   launch-supervisor status --url {URL}\n"
        "  logs     /tmp/work/daemon.log, /tmp/work/executions/\n"
        f"  runs     curl {wandb}/sandbox/runs\n"
        f"  stop     curl -X POST {wandb}/sandbox/runs/RUN_ID/stop   (a run, as from the W&B UI)"
    )
    assert banner("happy", 1, None, URL, work, wandb_url=wandb).startswith(
        "launch-supervisor sandbox: scenario happy, 1 items, polling only\n"
    )


def test_the_summary_is_aligned_with_json_values() -> None:
    text = summary_text({"items_submitted": 2, "outcomes": {"submitted": 2}, "submit_latency_p50_s": None})
    assert text == (
        'summary:\n  items_submitted       2\n  outcomes              {"submitted": 2}\n  submit_latency_p50_s  null'
    )


@pytest.mark.anyio
async def test_the_view_follows_the_daemon_s_status() -> None:
    """It keeps the last /status answer, and redraws whether the daemon answers or not."""
    answer = queue_status({"state": "closed"})

    async def status(request: Request) -> JSONResponse:
        return JSONResponse(answer)

    view = View(io.StringIO(), redraw=True)
    redraws = 0

    def redraw() -> None:
        nonlocal redraws
        redraws += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(view.watch, f"http://127.0.0.1:{free_port()}", redraw)
        with anyio.fail_after(10):
            while not redraws:
                await anyio.sleep(0.01)
        assert view.status is None
        tg.cancel_scope.cancel()

    redraws = 0
    async with anyio.create_task_group() as tg:
        app = Starlette(routes=[Route("/status", status)])
        host, port = await tg.start(serve_asgi, app, "127.0.0.1", 0)
        tg.start_soon(view.watch, f"http://{host}:{port}", redraw)
        with anyio.fail_after(10):
            while not redraws:
                await anyio.sleep(0.01)
        assert view.status == answer
        tg.cancel_scope.cancel()
