"""`launch-supervisor`: run the daemon, check a config, read its status, resume a queue."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import click
import httpx
import structlog
from rich.console import Console
from rich.table import Table

from launch_supervisor.clients import CredentialsError
from launch_supervisor.config import DEFAULT_PATH, Config, ConfigError, exposure, load_config
from launch_supervisor.daemon.notify import Notifier
from launch_supervisor.daemon.shell import Daemon, ListenError, version
from launch_supervisor.logs import configure
from launch_supervisor.model.events import ITEM_ADDED, item_added

DEFAULT_URL = "http://127.0.0.1:9464"
STARTUP_ERRORS = (CredentialsError, ListenError)
"""What keeps the daemon from starting and the operator can fix: one line, exit 1, no traceback."""
log = structlog.get_logger("launch_supervisor")


def _load_or_exit(path: Path) -> Config:
    """The configuration at `path`, or every problem printed and exit 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"launch-supervisor: {exc.source} is not a valid configuration:", err=True)
        for problem in exc.problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version(), prog_name="launch-supervisor")
def cli() -> None:
    """Turn W&B Launch queue items into Vertex AI CustomJobs through Cloud Run executions."""


@cli.command("check-config")
@click.argument("path", type=click.Path(path_type=Path), default=DEFAULT_PATH)
def check_config(path: Path) -> None:
    """Validate PATH and print the effective configuration, secrets masked."""
    config = _load_or_exit(path)
    for warning in exposure(path, config):
        click.echo(f"launch-supervisor: warning: {warning}", err=True)
    click.echo(json.dumps(config.masked(), indent=2))


async def _serve(daemon: Daemon, path: Path) -> None:
    async with anyio.create_task_group() as tg:

        async def signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as received:
                stopping = False
                async for signum in received:
                    if signum == signal.SIGHUP:
                        _reload(daemon, path)
                    elif stopping:
                        log.warning("supervisor.killed", signal=signal.Signals(signum).name)
                        os._exit(128 + signum)
                    else:
                        stopping = True
                        daemon.stop(signal.Signals(signum).name)

        tg.start_soon(signals, name="signals")
        await daemon.run()
        tg.cancel_scope.cancel()


def _reload(daemon: Daemon, path: Path) -> None:
    """SIGHUP: apply a valid file, keep the old configuration otherwise; systemd is told the reload
    began (RELOADING=1) and, applied or rejected, that it ended (READY=1)."""
    daemon.notifier.reloading()
    try:
        try:
            config = load_config(path)
        except ConfigError as exc:
            log.error("config.reload_rejected", path=str(path), problems=exc.problems)
            return
        restart = daemon.reload(config)
        log.info("config.reloaded", path=str(path), needs_restart=restart)
    finally:
        daemon.notifier.reloaded()


@cli.command()
@click.option("--config", "path", type=click.Path(path_type=Path), default=DEFAULT_PATH, show_default=True)
def run(path: Path) -> None:
    """Run the daemon (SIGTERM/SIGINT: drain and exit 0; SIGHUP: reload the config)."""
    config = _load_or_exit(path)
    configure(config.log.format, config.log.level)
    for warning in exposure(path, config):
        log.warning("config.exposed", detail=warning)
    daemon = Daemon(config, notifier=Notifier.from_environ(os.environ))
    try:
        anyio.run(_serve, daemon, path)
    except (*STARTUP_ERRORS, BaseExceptionGroup) as exc:
        error = _startup_error(exc)
        if error is None:
            raise  # a bug: its traceback is what finds it
        click.echo(f"launch-supervisor: {error}", err=True)
        sys.exit(1)


def _startup_error(exc: BaseException) -> BaseException | None:
    """The first startup error when `exc` is one, or a group (the task groups wrap what is raised
    in them) of nothing else; None when anything else is in it."""
    if isinstance(exc, BaseExceptionGroup):
        found, rest = exc.split(STARTUP_ERRORS)
        if found is None or rest is not None:
            return None
        first: BaseException = found
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        return first
    return exc if isinstance(exc, STARTUP_ERRORS) else None


def _get(url: str, path: str) -> Any:
    try:
        response = httpx.get(url.rstrip("/") + path, timeout=5)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the daemon at {url}: {exc}; is it running? (--url)") from exc
    return response


def _spend(cost: dict[str, Any]) -> str:
    """`$12.30 / $50.00`, and why dispatch is held when it is."""
    spend = "?" if cost["spend_24h"] is None else f"${cost['spend_24h']:.2f}"
    budget = "" if cost["daily_budget"] is None else f" / ${cost['daily_budget']:.2f}"
    return spend + budget + (f"  HELD: {cost['held']}" if cost["held"] else "")


@cli.command()
@click.option("--url", default=DEFAULT_URL, show_default=True, help="The daemon's HTTP address.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw /status JSON.")
def status(url: str, as_json: bool) -> None:
    """Show queues, executions in flight and breakers of a running daemon."""
    data = _get(url, "/status").json()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(render_status(data), nl=False)


EXECUTIONS_SHOWN = 20
"""Executions `status` lists, newest first; `--json` has all the daemon returns."""


def render_status(data: dict[str, Any]) -> str:
    """`/status` as text tables whose columns are as wide as their longest cell, so a long queue
    name or breaker reason never runs into the next column; nothing is wrapped or cut, so the
    output reads the same in a terminal, a pipe or a log."""
    out = [f"launch-supervisor {data['version']}  ready={data['ready']}  up {data['uptime_s']:.0f}s"]
    queues = [
        [
            name,
            str(q["pending"]),
            str(sum(q["in_flight"].values())),
            q["breaker"]["state"] + (f" ({q['breaker']['reason']})" if q["breaker"]["reason"] else ""),
            q["polling"],
            _spend(q["cost"]),
        ]
        for name, q in data["queues"].items()
    ]
    out.append(_table(["QUEUE", "PENDING", "IN FLIGHT", "BREAKER", "POLLING", "SPEND 24H"], queues))
    if data["executions"]:
        executions = [
            [e["name"].rsplit("/", 1)[-1], e["queue"], e["phase"], e["category"] or "", f"{e['age_s']:.0f}s"]
            for e in data["executions"][:EXECUTIONS_SHOWN]
        ]
        out.append("")
        out.append(_table(["EXECUTION", "QUEUE", "PHASE", "CATEGORY", "AGE"], executions))
    return "\n".join(out) + "\n"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """A borderless table sized by rich, every column left-aligned under its header."""
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 2))
    for header in headers:
        table.add_column(header, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    # Wide enough never to wrap: the table is only as wide as its cells (expand is off).
    console = Console(file=io.StringIO(), width=100_000, color_system=None, highlight=False, markup=False)
    console.print(table)
    assert isinstance(console.file, io.StringIO)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())


@cli.command()
@click.argument("queue")
@click.option("--url", default=DEFAULT_URL, show_default=True, help="The daemon's HTTP address (loopback).")
def resume(queue: str, url: str) -> None:
    """Close QUEUE's breaker so it dispatches again."""
    try:
        response = httpx.post(f"{url.rstrip('/')}/resume/{queue}", timeout=5)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the daemon at {url}: {exc}") from exc
    body = response.json()
    if response.status_code != 200:
        raise click.ClickException(body.get("error", response.text))
    click.echo(f"{queue}: breaker closed (was {body['was']})")


@cli.command()
@click.option("--queue", required=True, help="The queue an item was added to.")
@click.option("--entity", default=None, help="The queue's entity (informational).")
@click.option("--item-id", default=None, help="The new item's id (informational).")
@click.option(
    "--topic",
    envvar="LAUNCH_SUPERVISOR_NOTIFY_TOPIC",
    required=True,
    help="projects/P/topics/T the daemon's subscription reads [LAUNCH_SUPERVISOR_NOTIFY_TOPIC].",
)
def notify(queue: str, entity: str | None, item_id: str | None, topic: str) -> None:
    """Tell the daemon an item was enqueued, so it dispatches now instead of at the next poll."""
    if not re.fullmatch(r"projects/[^/\s]+/topics/[^/\s]+", topic):
        raise click.BadParameter("must look like projects/PROJECT/topics/TOPIC", param_hint="--topic")
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]  # noqa: PLC0415 - only this command needs it

    publisher = pubsub_v1.PublisherClient()
    try:
        body = item_added(queue, entity, item_id)
        message_id = publisher.publish(topic, body, type=ITEM_ADDED).result(timeout=30)
    except Exception as exc:
        raise click.ClickException(f"publishing to {topic} failed: {type(exc).__name__}: {exc}") from exc
    click.echo(f"notified {topic}: queue.item_added for {queue} (message {message_id})")


@cli.command()
@click.option("--items", type=click.IntRange(1, 1000), default=10, show_default=True, help="Items to enqueue.")
@click.option(
    "--scenario",
    type=click.Choice(["happy", "mixed", "burst"]),
    default="happy",
    show_default=True,
    help="happy: all succeed; mixed: some fail as real jobs fail; burst: all at once.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Stop after this many seconds even if items are left.",
)
@click.option(
    "--summary-json", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the summary here."
)
@click.option("--no-pubsub", is_flag=True, help="Polling only, even when the Pub/Sub emulator is installed.")
@click.option(
    "--http", default="127.0.0.1:9464", show_default=True, help="Where the daemon serves /metrics and /status."
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the config and the logs here (default: a temporary directory, removed at the end).",
)
@click.option(
    "--job-seconds",
    type=click.FloatRange(min=3, min_open=True),
    default=8.0,
    show_default=True,
    help="How long each CustomJob runs; raise it to stop a run by hand (the banner's `stop` line).",
)
@click.option(
    "--listing",
    type=click.Choice(["waiting_first", "oldest_first"]),
    default="waiting_first",
    show_default=True,
    help="How the W&B stand-in lists a queue's items: waiting items first (finished ones dropped), or "
    "every item oldest first (history kept). W&B's own order is not documented.",
)
@click.option(
    "--history",
    type=click.IntRange(0, 100_000),
    default=0,
    show_default=True,
    help="Finished items (claimed or failed) the queue holds before the scenario's items.",
)
def sandbox(
    *,
    items: int,
    scenario: str,
    duration: float,
    summary_json: Path | None,
    no_pubsub: bool,
    http: str,
    work_dir: Path | None,
    job_seconds: float,
    listing: str,
    history: int,
) -> None:
    """Run the whole system on this machine: stand-ins for W&B, Cloud Run and Vertex AI, the real
    daemon, and per execution the launcher image's entrypoint: launch-watchdog over the real
    `wandb launch-agent`. Ctrl+C stops it."""
    needed = ("wandb", "google.cloud.compute_v1", "cryptography", "graphql")
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise click.ClickException(
            f"the sandbox runs the real wandb launch-agent, and {', '.join(missing)} is not installed: "
            "pip install 'launch-supervisor[sandbox]'"
        )
    from launch_supervisor.sandbox.session import Options, Sandbox, SandboxError  # noqa: PLC0415 - only this command

    options = Options(
        items=items,
        scenario=scenario,
        duration=duration,
        summary_json=summary_json,
        pubsub=not no_pubsub,
        http=http,
        work_dir=work_dir,
        job_seconds=job_seconds,
        listing=listing,
        history=history,
    )
    try:
        summary = anyio.run(Sandbox(options).run)
    except SandboxError as exc:
        raise click.ClickException(str(exc)) from None
    if summary["duplicates"]:
        sys.exit(1)
