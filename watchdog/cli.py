"""`launch-watchdog`: the launcher image's entrypoint.

Every option can also come from an environment variable, so a Cloud Run job can tune the watchdog
without touching its args (which the supervisor overrides per execution). The command line wins
over the environment. argparse keeps the launcher image free of anything beyond the standard library.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

from launch_watchdog.rules import RulesError, load_rules
from launch_watchdog.runner import Settings, Watchdog

USAGE_EXIT = 2
_TOPIC = re.compile(r"projects/[^/\s]+/topics/[^/\s]+")


class UsageError(Exception):
    """A bad option value; the message says which and how to fix it."""


def _version() -> str:
    try:
        return metadata.version("launch-supervisor")
    except metadata.PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launch-watchdog",
        usage="launch-watchdog [options] -- COMMAND [ARG ...]",
        description=(
            "Run a W&B launch agent and stop it as soon as its job is submitted, it is idle, "
            "or it prints a fatal error. Each option can also be set through the environment "
            "variable shown."
        ),
    )
    add = parser.add_argument
    add(
        "--idle-timeout",
        metavar="SECONDS",
        help="stop when no job is received this long [LAUNCH_WATCHDOG_IDLE_TIMEOUT, 300]",
    )
    add("--grace", metavar="SECONDS", help="time between SIGINT, SIGTERM and SIGKILL [LAUNCH_WATCHDOG_GRACE, 10]")
    add(
        "--submit-grace",
        metavar="SECONDS",
        help="the same once the CustomJob exists, when the agent has nothing left to do "
        "[LAUNCH_WATCHDOG_SUBMIT_GRACE, 0.5]",
    )
    add("--context-lines", metavar="N", help="agent lines in the bailout block [LAUNCH_WATCHDOG_CONTEXT_LINES, 100]")
    add(
        "--follow",
        metavar="PATH",
        action="append",
        help="also scan this file; repeatable [LAUNCH_WATCHDOG_FOLLOW, paths separated by ':']",
    )
    add("--events-topic", metavar="projects/P/topics/T", help="also publish events here [LAUNCH_WATCHDOG_EVENTS_TOPIC]")
    add(
        "--on-submit",
        choices=("stop", "keep"),
        help="once the CustomJob exists: stop the agent, or only report it and keep the agent running "
        "[LAUNCH_WATCHDOG_ON_SUBMIT, stop]",
    )
    add("--rules", metavar="FILE", help="TOML rules that add to or override the defaults [LAUNCH_WATCHDOG_RULES]")
    add("--version", action="version", version=f"launch-watchdog {_version()}")
    return parser


def _number(name: str, env: str, raw: str, integer: bool) -> float:
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number of seconds"
        raise UsageError(f"{name} ({env}) must be {kind} >= 0, not {raw!r}") from None
    if value < 0 or value != value:  # noqa: PLR0124 - NaN check
        raise UsageError(f"{name} ({env}) must be >= 0, not {raw!r}")
    return value


def settings_from(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[Settings, Path | None]:
    """Settings from the command line, falling back to the environment, then defaults."""
    args = list(argv)
    if "--" not in args:
        if any(a in ("-h", "--help", "--version") for a in args):
            _parser().parse_args(args)
        raise UsageError("no agent command: put it after --, e.g. launch-watchdog -- wandb launch-agent -q QUEUE")
    split = args.index("--")
    options, command = args[:split], args[split + 1 :]
    if not command:
        raise UsageError("no agent command after --, e.g. launch-watchdog -- wandb launch-agent -q QUEUE")
    ns = _parser().parse_args(options)

    def pick(value: str | None, env: str) -> str | None:
        return value if value is not None else (environ.get(env) or None)

    idle = pick(ns.idle_timeout, "LAUNCH_WATCHDOG_IDLE_TIMEOUT")
    grace = pick(ns.grace, "LAUNCH_WATCHDOG_GRACE")
    submit_grace = pick(ns.submit_grace, "LAUNCH_WATCHDOG_SUBMIT_GRACE")
    context = pick(ns.context_lines, "LAUNCH_WATCHDOG_CONTEXT_LINES")
    topic = pick(ns.events_topic, "LAUNCH_WATCHDOG_EVENTS_TOPIC")
    on_submit = pick(ns.on_submit, "LAUNCH_WATCHDOG_ON_SUBMIT") or "stop"
    if on_submit not in ("stop", "keep"):
        raise UsageError(f"--on-submit (LAUNCH_WATCHDOG_ON_SUBMIT) must be stop or keep, not {on_submit!r}")
    rules = pick(ns.rules, "LAUNCH_WATCHDOG_RULES")
    follow = ns.follow
    if follow is None:
        follow = [p for p in environ.get("LAUNCH_WATCHDOG_FOLLOW", "").split(":") if p]
    if topic is not None and not _TOPIC.fullmatch(topic):
        raise UsageError(
            f"--events-topic (LAUNCH_WATCHDOG_EVENTS_TOPIC) must look like projects/PROJECT/topics/TOPIC, not {topic!r}"
        )
    settings = Settings(
        command=tuple(command),
        idle_timeout=300.0 if idle is None else _number("--idle-timeout", "LAUNCH_WATCHDOG_IDLE_TIMEOUT", idle, False),
        grace=10.0 if grace is None else _number("--grace", "LAUNCH_WATCHDOG_GRACE", grace, False),
        submit_grace=0.5
        if submit_grace is None
        else _number("--submit-grace", "LAUNCH_WATCHDOG_SUBMIT_GRACE", submit_grace, False),
        context_lines=100
        if context is None
        else int(_number("--context-lines", "LAUNCH_WATCHDOG_CONTEXT_LINES", context, True)),
        follow=tuple(Path(p) for p in follow),
        events_topic=topic,
        stop_on_submit=on_submit == "stop",
    )
    return settings, Path(rules) if rules else None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings, rules_path = settings_from(sys.argv[1:] if argv is None else argv, os.environ)
        rules = load_rules(rules_path)
    except (UsageError, RulesError) as exc:
        print(f"launch-watchdog: {exc}", file=sys.stderr)
        return USAGE_EXIT
    return Watchdog(settings, rules).run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
