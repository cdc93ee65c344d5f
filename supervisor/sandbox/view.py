"""What the operator sees of a sandbox run: a banner, a progress view, and the summary at the end.

The progress view reads the daemon's /status as an operator would, next to the stand-ins' own counts.
On a terminal it is redrawn in place every second; elsewhere (a log, a pipe) it is appended every
5 s, so the output stays readable as plain lines.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx

from launch_supervisor.sandbox.stack import Stack
from launch_supervisor.sandbox.summary import count_terminal

BAR_WIDTH = 30


@dataclass
class View:
    """The sandbox's output: lines said once, and the progress view, redrawn over itself when live."""

    out: TextIO
    redraw: bool | None = None
    """Redraw the progress view in place; None: when `out` is a terminal."""
    status: dict[str, Any] | None = None
    """The daemon's last /status answer."""
    _lines_drawn: int = 0
    """Lines of the progress view a redraw replaces; 0 after anything else was written."""

    def live(self) -> bool:
        return self.redraw if self.redraw is not None else self.out.isatty()

    def say(self, text: str) -> None:
        """Print a message below the view, which is then left as it is."""
        self._lines_drawn = 0
        print(text, file=self.out, flush=True)

    def draw(self, lines: list[str], *, final: bool = False) -> None:
        """Show the progress view, over the last one when live; a final view is left in place."""
        if self.live() and self._lines_drawn:
            self.out.write(f"\x1b[{self._lines_drawn}F\x1b[J")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._lines_drawn = len(lines) if self.live() and not final else 0

    async def watch(self, url: str, redraw: Callable[[], None]) -> None:
        """Read the daemon's /status and redraw, every second when live, every 5 s otherwise; forever."""
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    self.status = (await client.get(f"{url}/status")).json()
                redraw()
                await anyio.sleep(1.0 if self.live() else 5.0)


def banner(scenario: str, items: int, emulator_host: str | None, url: str, work: Path, *, wandb_url: str) -> str:
    """What runs, and where to look: the daemon's metrics, its status command, the logs; and how to
    stop a run in W&B, as a user would from the W&B UI."""
    events = f"Pub/Sub emulator on {emulator_host}" if emulator_host else "polling only"
    return (
        f"launch-supervisor sandbox: scenario {scenario}, {items} items, {events}\n"
        f"  metrics  {url}/metrics\n"
        f"  status   launch-supervisor status --url {url}\n"
        f"  logs     {work}/daemon.log, {work}/executions/\n"
        f"  runs     curl {wandb_url}/sandbox/runs\n"
        f"  stop     curl -X POST {wandb_url}/sandbox/runs/RUN_ID/stop   (a run, as from the W&B UI)"
    )


def progress(
    stack: Stack, item_ids: Iterable[str], *, items: int, elapsed: float, status: dict[str, Any], url: str
) -> list[str]:
    """The progress view: items terminal out of `items`, each queue as the daemon's /status answer
    (`status`, empty when it did not answer) shows it, and the CustomJobs by state."""
    done = count_terminal(stack, item_ids)
    filled = BAR_WIDTH * done // max(1, items)
    bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{items} items terminal"
    lines = [f"{bar}  ({elapsed:.0f}s, {len(stack.cloudrun.executions)} executions started)"]
    for name, q in (status.get("queues") or {}).items():
        flying = " ".join(f"{phase} {n}" for phase, n in q["in_flight"].items() if n) or "none"
        breaker = q["breaker"]
        why = f" ({breaker['reason']}, reopens in {breaker['reopens_in_s']}s)" if breaker["state"] != "closed" else ""
        lines.append(f"queue {name}: pending {q['pending']}, in flight: {flying}; breaker {breaker['state']}{why}")
    states = Counter(t.job.state.name.removeprefix("JOB_STATE_").lower() for t in stack.vertex.jobs.values())
    lines.append("vertex jobs: " + (", ".join(f"{s} {n}" for s, n in sorted(states.items())) or "none"))
    stopped = sum(1 for run in stack.wandb.runs.values() if run.stopped)
    if stopped:
        lines.append(f"runs stopped in W&B: {stopped}")
    lines.append(f"metrics: {url}/metrics" if status else f"daemon: not answering at {url}")
    return lines


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as aligned `key  value` lines, each value as JSON."""
    width = max(len(k) for k in summary)
    return "summary:\n" + "\n".join(f"  {k:<{width}}  {json.dumps(v)}" for k, v in summary.items())
