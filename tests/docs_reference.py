"""The reference pages of docs/ checked against the code they describe.

Each `*_drift` function reads every name of one kind from the code (config keys from the pydantic
model, CLI options from click and argparse, metrics from the registry, watchdog rules from
rules.toml, alerts from the Prometheus rules file) and returns one line per problem: what is
missing from the page or out of date there, and where it belongs. The page's text is a parameter,
so a test can show that a removed row is found.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin

import click
import yaml
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def table_rows(text: str) -> Iterator[list[str]]:
    """The cells of every Markdown table row in `text` (header and separator rows included)."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            yield [cell.strip() for cell in stripped[1:-1].split("|")]


def code(cell: str) -> str:
    """A cell's text without the backticks around it: "`10`" → "10"."""
    return cell.strip().strip("`").strip()


def first_code(cell: str) -> str:
    """The first `code` span of a cell, else the cell: "`--follow PATH`" → "--follow PATH"."""
    match = re.search(r"`([^`]+)`", cell)
    return match.group(1) if match else cell.strip()


def section(text: str, heading: str) -> str | None:
    """The text under the level-2 `heading` (a line `## heading`), to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(heading)}[ \t]*$", text, re.M)
    if match is None:
        return None
    rest = text[match.end() :]
    following = re.search(r"^## ", rest, re.M)
    return rest if following is None else rest[: following.start()]


def number(value: object) -> str:
    """A default as the docs write it: 10.0 → "10", True → "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# Configuration -------------------------------------------------------------------------------------

CONFIG_PAGE = "docs/configuration.md"


def config_keys(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted key, default) of every leaf setting; `queues[].` for the items of a list of tables.
    A required key's default is PydanticUndefined; fields excluded from the file (a resolved
    secret) are not settings."""
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        annotation = field.annotation
        inner = get_args(annotation)[0] if get_origin(annotation) is list else None
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            yield from config_keys(inner, f"{prefix}{name}[].")
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from config_keys(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field.default


def config_drift(page: str) -> list[str]:
    """Every key of the Config model in the page's key table with its default, and no other."""
    from launch_supervisor.config import Config

    documented = {code(row[0]): code(row[1]) for row in table_rows(page) if len(row) >= 3 and row[0].startswith("`")}
    problems = []
    keys = dict(config_keys(Config))
    for key, default in keys.items():
        if default is PydanticUndefined:
            want = "required"
        elif default is None or default == "":
            want = None  # unset, empty or derived from other keys: the page says which in words
        else:
            want = number(default)
        row = f"| `{key}` | `{want or 'none'}` | what it does |"
        if key not in documented:
            problems.append(f"config key `{key}` is missing from {CONFIG_PAGE}'s table of keys: add {row}")
        elif want is not None and documented[key] != want:
            problems.append(
                f"config key `{key}` has default {want!r} but {CONFIG_PAGE} says {documented[key]!r}: make it {row}"
            )
        elif want is None and not documented[key]:
            problems.append(f"config key `{key}` has no default in {CONFIG_PAGE}: say `none` or what it derives from")
    for key in documented.keys() - keys.keys():
        problems.append(f"{CONFIG_PAGE} documents `{key}`, which supervisor/config.py does not have: remove its row")
    return problems


# Command lines -------------------------------------------------------------------------------------

CLI_PAGE = "docs/cli.md"
WATCHDOG_PAGE = "docs/watchdog.md"


def _option_default(option: click.Option) -> str:
    if option.is_flag:
        return "off"
    if option.required:
        return "required"
    if option.default is None or option.default in ((), []):  # unset, or a `multiple` option given none
        return "none"
    return number(option.default)


def cli_drift(page: str) -> list[str]:
    """Every `launch-supervisor` command has a section `## \\`launch-supervisor NAME\\`` whose table
    lists each of its options with its default, and the page lists nothing the commands lack."""
    from launch_supervisor.cli import cli

    problems = []
    for name, command in sorted(cli.commands.items()):
        heading = f"`launch-supervisor {name}`"
        text = section(page, heading)
        if text is None:
            problems.append(f"command `{name}` has no section in {CLI_PAGE}: add a heading '## {heading}'")
            continue
        documented = {code(row[0]): code(row[1]) for row in table_rows(text) if row[0].startswith("`--")}
        options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
        names = set()
        for option in options:
            long = max(option.opts, key=len)
            names.add(long)
            default = _option_default(option)
            row = f"| `{long}` | `{default}` | what it does |"
            if long not in documented:
                problems.append(f"option `{long}` of `{name}` is missing from {CLI_PAGE}, section {heading}: add {row}")
            elif not documented[long].startswith(default):
                problems.append(
                    f"option `{long}` of `{name}` defaults to {default!r} but {CLI_PAGE} says"
                    f" {documented[long]!r}: make it {row}"
                )
        for stale in documented.keys() - names:
            problems.append(f"{CLI_PAGE}, section {heading}, documents `{stale}`, which `{name}` does not have")
    for heading in re.findall(r"^## `launch-supervisor ([\w-]+)`", page, re.M):
        if heading not in cli.commands:
            problems.append(f"{CLI_PAGE} has a section for `launch-supervisor {heading}`, which is not a command")
    return problems


HELP_TAIL = re.compile(r"\[(LAUNCH_WATCHDOG_\w+)(?:, ([^\]]+))?\]$")
"""The end of a launch-watchdog option's help: [ENV] or [ENV, default]."""


def watchdog_cli_drift(page: str) -> list[str]:
    """Every launch-watchdog option in the page's option table with its variable and default."""
    from launch_watchdog.cli import _parser

    text = section(page, "Options") or ""
    documented = {first_code(row[0]).split()[0]: row for row in table_rows(text) if row[0].startswith("`--")}
    problems = []
    names = set()
    actions = _parser()._actions  # noqa: SLF001 - argparse keeps no public list of a parser's options
    for action in actions:
        if action.dest in ("help", "version") or not action.option_strings:
            continue
        long = max(action.option_strings, key=len)
        names.add(long)
        match = HELP_TAIL.search(action.help or "")
        env, tail = (match.group(1), match.group(2) or "") if match else ("", "")
        default = tail if tail and " " not in tail else "none"  # "[ENV, paths separated by ':']" is no default
        row = f"| `{long}` | `{env}` | {default} | what it does |"
        if long not in documented:
            problems.append(f"launch-watchdog option `{long}` is missing from {WATCHDOG_PAGE}, Options: add {row}")
            continue
        cells = documented[long]
        if first_code(cells[1]) != env or not code(cells[2]).startswith(default):
            problems.append(
                f"launch-watchdog option `{long}` is out of date in {WATCHDOG_PAGE}, Options: make it {row}"
            )
    for stale in documented.keys() - names:
        problems.append(f"{WATCHDOG_PAGE}, Options, documents `{stale}`, which launch-watchdog does not have")
    return problems


# Metrics -------------------------------------------------------------------------------------------

METRICS_PAGE = "docs/http-and-metrics.md"


def registry_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name → (type, label names) of every metric the daemon registers, counters with `_total`:
    the metric objects' own, and the families its state collector yields (for an empty state)."""
    from launch_supervisor.model.state import State
    from launch_supervisor.surface.metrics import Metrics

    registry = CollectorRegistry()
    Metrics("0", registry=registry).watch(State())
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    # prometheus_client keeps no public list of a registry's collectors, nor of a metric's label
    # names before it has a series: read its own attributes.
    collectors: Any = registry._collector_to_names  # noqa: SLF001 - see above
    for collector in collectors:
        kind = getattr(collector, "_type", None)
        if kind is not None:
            name = getattr(collector, "_name") + ("_total" if kind == "counter" else "")  # noqa: B009 - see above
            found[name] = (kind, tuple(getattr(collector, "_labelnames")))  # noqa: B009 - see above
            continue
        for family in collector.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            found[name] = (family.type, tuple(getattr(family, "_labelnames", ())))
    return found


def metrics_drift(page: str) -> list[str]:
    """Every registered metric in the page's table with its type and exactly its labels."""
    documented = {code(row[0]): row for row in table_rows(page) if row[0].startswith("`launch_supervisor_")}
    problems = []
    metrics = registry_metrics()
    for name, (kind, labels) in sorted(metrics.items()):
        label_cell = ", ".join(f"`{label}`" for label in labels) or "(none)"
        row = f"| `{name}` | {kind} | {label_cell} | what it counts |"
        if name not in documented:
            problems.append(f"metric `{name}` is missing from {METRICS_PAGE}'s table: add {row}")
            continue
        cells = documented[name]
        written = tuple(code(label) for label in cells[2].split(",") if code(label) not in ("", "(none)"))
        if cells[1] != kind or written != labels:
            problems.append(f"metric `{name}` is out of date in {METRICS_PAGE}: make it {row}")
    for stale in documented.keys() - metrics.keys():
        problems.append(f"{METRICS_PAGE} documents `{stale}`, which supervisor/surface/metrics.py does not register")
    return problems


# Watchdog rules ------------------------------------------------------------------------------------


def rules_drift(page: str) -> list[str]:
    """Every rule of watchdog/rules.toml in the page's rules table, its category first in its row."""
    rules = tomllib.loads((ROOT / "watchdog" / "rules.toml").read_text())["rules"]
    text = section(page, "Rules") or ""
    documented = {code(row[0]): row for row in table_rows(text) if row[0].startswith("`")}
    problems = []
    for rule in rules:
        rule_id, category = rule["id"], rule["category"]
        row = f"| `{rule_id}` | {category} | what it fires on |"
        if rule_id not in documented:
            problems.append(f"watchdog rule `{rule_id}` is missing from {WATCHDOG_PAGE}, Rules: add {row}")
        elif documented[rule_id][1].split()[0].strip(",") != category:
            problems.append(f"watchdog rule `{rule_id}` has category {category!r} in rules.toml: make it {row}")
    for stale in documented.keys() - {rule["id"] for rule in rules}:
        problems.append(f"{WATCHDOG_PAGE}, Rules, documents `{stale}`, which watchdog/rules.toml does not have")
    return problems


# Alerts --------------------------------------------------------------------------------------------

OPERATING_PAGE = "docs/operating.md"


def alerts_drift(page: str) -> list[str]:
    """Every alert of deploy/prometheus/alerts.yml in the page's alerts table with its severity."""
    groups = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())["groups"]
    alerts = {r["alert"]: r["labels"]["severity"] for g in groups for r in g["rules"] if "alert" in r}
    text = section(page, "Alerts") or ""
    documented = {}
    for row in table_rows(text):
        match = re.match(r"\[?`?(LaunchSupervisor\w+)", row[0])
        if match:
            documented[match.group(1)] = row
    problems = []
    for name, severity in alerts.items():
        row = f"| [{name}](runbook.md#{name.lower()}) | {severity} | when it fires |"
        if name not in documented:
            problems.append(f"alert `{name}` is missing from {OPERATING_PAGE}, Alerts: add {row}")
        elif documented[name][1] != severity:
            problems.append(f"alert `{name}` has severity {severity!r} in alerts.yml: make it {row}")
    for stale in documented.keys() - alerts.keys():
        problems.append(
            f"{OPERATING_PAGE}, Alerts, documents `{stale}`, which deploy/prometheus/alerts.yml does not have"
        )
    return problems
