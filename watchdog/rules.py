"""Bailout rules: data, not code.

The rules live in a TOML file shipped with the package (`rules.toml`) so operators can read and
extend them without touching the scanner; `--rules FILE` adds rules, replaces them by id, or turns
a default one off. Loading validates everything up front and names the rule and key at fault.

Where a line comes from matters as much as what it says: a traceback on the agent's stderr is a
crash, the same traceback in a run's `debug.log` is an error wandb handled. So each rule names the
kinds of source it reads (`sources`), and a rule either stops the agent (`action = "stop"`) or only
explains an ending no stop rule accounts for (`action = "explain"`): an agent that never started
polling, or one that exited by itself with an error.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

_RULE_KEYS = frozenset(
    {
        "id",
        "category",
        "description",
        "pattern",
        "ignore_case",
        "count",
        "window",
        "then",
        "within",
        "enabled",
        "action",
        "sources",
        "block",
    }
)
_FILE_KEYS = frozenset({"precedence", "rules", "fallback"})
_FALLBACK_KEYS = frozenset({"category", "description"})

SOURCE_KINDS = ("agent", "cli_log", "run_log", "core_log", "follow")
"""Where lines come from: the agent's stdout/stderr; its CLI log `debug-cli.<user>.log`; the run logs
(`debug.log`, `debug-internal.log`, `debug-core.log`); wandb-core's own log; --follow files."""
DEFAULT_SOURCES = frozenset({"agent", "follow"})
"""A rule without `sources` reads these. Not the log files: their tracebacks are errors wandb caught
and logged (one handled exception lands in debug.log and the CLI log alike), and wandb-core's
retries are routine while the agent works."""
ACTIONS = ("stop", "explain")
FALLBACKS = ("agent_start_timeout", "agent_exit")
"""Endings reported when no stop rule fired: the agent did not start polling by the idle timeout;
the agent exited by itself with an error."""


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file, rule and key."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One bailout rule."""

    id: str
    """Stable name, reported in events."""
    category: str
    """What kind of failure this is; decides how the supervisor's breaker reacts."""
    description: str
    """One line for the bailout block."""
    regex: re.Pattern[str]
    """Searched in every line outside the job payload."""
    count: int = 1
    """How many matching lines it takes to fire."""
    window: int = 0
    """Lines of the same stream the `count` matches must fall in; 0 means the whole run."""
    then: re.Pattern[str] | None = None
    """For two-line rules: what a later line must match after `regex` matched."""
    within: int = 0
    """For two-line rules: how many lines after the first the second may come."""
    stops: bool = True
    """False for an explain rule: it never stops the agent, it only explains an ending."""
    sources: frozenset[str] = DEFAULT_SOURCES
    """The kinds of source whose lines this rule reads (see `SOURCE_KINDS`)."""
    block: bool = False
    """The line heads a block (a multi-line error) whose later lines give the category: the verdict
    waits for the block to end."""

    @property
    def windowed(self) -> bool:
        return self.count > 1


@dataclass(frozen=True, slots=True)
class Fallback:
    """What is reported for an ending no stop rule explains, when no explain rule does either."""

    id: str
    category: str
    description: str


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules in force, the fallbacks, and the category precedence, most specific first."""

    rules: tuple[Rule, ...]
    precedence: tuple[str, ...]
    fallbacks: tuple[Fallback, ...] = ()

    def rank(self, category: str) -> int:
        """Lower is more specific."""
        return self.precedence.index(category)

    def for_source(self, kind: str) -> tuple[Rule, ...]:
        """The rules that read lines of this kind of source, block heads first.

        Block heads come first so that a line which is both a block head and, say, a quota error
        still waits for its block: the incident is opened by the first rule that fires.
        """
        chosen = [rule for rule in self.rules if kind in rule.sources]
        return tuple(sorted(chosen, key=lambda rule: not rule.block))

    def fallback(self, ending: str) -> Fallback:
        for fallback in self.fallbacks:
            if fallback.id == ending:
                return fallback
        raise KeyError(ending)


def _flags(ignore_case: bool) -> int:
    return re.MULTILINE | (re.IGNORECASE if ignore_case else 0)


def _compile(where: str, key: str, value: Any, ignore_case: bool) -> re.Pattern[str]:
    if not isinstance(value, str) or not value:
        raise RulesError(f"{where}: `{key}` must be a non-empty string (a regular expression)")
    try:
        return re.compile(value, _flags(ignore_case))
    except re.error as exc:
        raise RulesError(f"{where}: `{key}` is not a valid regular expression ({exc}): {value!r}") from exc


def _int(where: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RulesError(f"{where}: `{key}` must be a whole number >= {minimum}, not {value!r}")
    return value


def _parse_rule(source: str, index: int, raw: Any, base: dict[str, Any] | None) -> dict[str, Any]:
    """Check one [[rules]] table and merge it over the rule it replaces, if any."""
    where = f"{source}: rules[{index}]"
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: each [[rules]] entry must be a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", rule_id):
        raise RulesError(f"{where}: `id` must be a lower_snake_case name, not {rule_id!r}")
    where = f"{source}: rule {rule_id!r}"
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise RulesError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_RULE_KEYS))}")
    if not isinstance(raw.get("enabled", True), bool):
        raise RulesError(f"{where}: `enabled` must be true or false")
    merged = dict(base or {})
    merged.update(raw)
    merged["_where"] = where
    return merged


def _build(fields: dict[str, Any], precedence: tuple[str, ...]) -> Rule:
    where = fields["_where"]
    for key in ("category", "pattern"):
        if key not in fields:
            raise RulesError(f"{where}: `{key}` is required")
    category = fields["category"]
    if category not in precedence:
        raise RulesError(f"{where}: category {category!r} is not one of: {', '.join(precedence)}")
    ignore_case = fields.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise RulesError(f"{where}: `ignore_case` must be true or false")
    description = fields.get("description", fields["id"])
    if not isinstance(description, str):
        raise RulesError(f"{where}: `description` must be a string")
    then = fields.get("then")
    if then is not None and "count" in fields and fields["count"] != 1:
        raise RulesError(f"{where}: a rule has either `then` or `count`, not both")
    within = _int(where, "within", fields.get("within", 100 if then is not None else 0), 0)
    if then is not None and within < 1:
        raise RulesError(f"{where}: `within` must be >= 1 for a two-line rule")
    action = fields.get("action", "stop")
    if action not in ACTIONS:
        raise RulesError(f"{where}: `action` must be one of {', '.join(ACTIONS)}, not {action!r}")
    block = fields.get("block", False)
    if not isinstance(block, bool):
        raise RulesError(f"{where}: `block` must be true or false")
    if block and action != "stop":
        raise RulesError(f"{where}: only a stop rule can head a block (`block = true`)")
    sources = fields.get("sources", sorted(DEFAULT_SOURCES))
    if (
        not isinstance(sources, list)
        or not sources
        or not all(isinstance(kind, str) and kind in SOURCE_KINDS for kind in sources)
    ):
        raise RulesError(f"{where}: `sources` must be a non-empty list of: {', '.join(SOURCE_KINDS)}")
    return Rule(
        id=fields["id"],
        category=category,
        description=description,
        regex=_compile(where, "pattern", fields["pattern"], ignore_case),
        count=_int(where, "count", fields.get("count", 1), 1),
        window=_int(where, "window", fields.get("window", 0), 0),
        then=None if then is None else _compile(where, "then", then, ignore_case),
        within=within,
        stops=action == "stop",
        sources=frozenset(sources),
        block=block,
    )


def _parse_fallbacks(source: str, value: Any, found: dict[str, dict[str, Any]]) -> None:
    """Merge a `[fallback.ID]` table set over the ones found so far."""
    if not isinstance(value, dict):
        raise RulesError(f"{source}: `fallback` must be a table of [fallback.ID] tables")
    for name, raw in value.items():
        where = f"{source}: fallback {name!r}"
        if name not in FALLBACKS:
            raise RulesError(f"{where}: unknown fallback; allowed: {', '.join(FALLBACKS)}")
        if not isinstance(raw, dict):
            raise RulesError(f"{where}: must be a table")
        unknown = sorted(set(raw) - _FALLBACK_KEYS)
        if unknown:
            raise RulesError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: category, description")
        for key, text in raw.items():
            if not isinstance(text, str) or not text:
                raise RulesError(f"{where}: `{key}` must be a non-empty string")
        merged = {**found.get(name, {}), **raw, "_where": where}
        found[name] = merged


def _build_fallback(name: str, fields: dict[str, Any], precedence: tuple[str, ...]) -> Fallback:
    where = fields.get("_where", f"fallback {name!r}")
    for key in ("category", "description"):
        if key not in fields:
            raise RulesError(f"{where}: `{key}` is required")
    if fields["category"] not in precedence:
        raise RulesError(f"{where}: category {fields['category']!r} is not one of: {', '.join(precedence)}")
    return Fallback(id=name, category=fields["category"], description=fields["description"])


def _read(path: Path | None) -> tuple[str, dict[str, Any]]:
    if path is None:
        text = resources.files(__package__).joinpath("rules.toml").read_text(encoding="utf-8")
        source = "default rules"
    else:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RulesError(f"{source}: cannot read the rules file ({exc.strerror}); check --rules") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML ({exc})") from exc
    unknown = sorted(set(data) - _FILE_KEYS)
    if unknown:
        raise RulesError(
            f"{source}: unknown top-level key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_FILE_KEYS))}"
        )
    return source, data


def load_rules(extra: Path | None = None) -> RuleSet:
    """The default rules, with `extra` (a --rules file) layered on top."""
    ordered: dict[str, dict[str, Any]] = {}
    fallbacks: dict[str, dict[str, Any]] = {}
    precedence: tuple[str, ...] = ()
    for path in (None, extra) if extra is not None else (None,):
        source, data = _read(path)
        if "precedence" in data:
            value = data["precedence"]
            if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
                raise RulesError(f"{source}: `precedence` must be a non-empty list of category names")
            if len(set(value)) != len(value):
                raise RulesError(f"{source}: `precedence` names a category twice")
            precedence = tuple(value)
        if "fallback" in data:
            _parse_fallbacks(source, data["fallback"], fallbacks)
        entries = data.get("rules", [])
        if not isinstance(entries, list):
            raise RulesError(f"{source}: `rules` must be an array of tables ([[rules]])")
        for index, raw in enumerate(entries):
            base = ordered.get(str(raw.get("id"))) if isinstance(raw, dict) else None
            fields = _parse_rule(source, index, raw, base)
            ordered[fields["id"]] = fields
    rules = tuple(_build(fields, precedence) for fields in ordered.values() if fields.get("enabled", True) is not False)
    missing = [name for name in FALLBACKS if name not in fallbacks]
    if missing:
        raise RulesError(f"default rules: missing [fallback.{missing[0]}]")
    built = tuple(_build_fallback(name, fallbacks[name], precedence) for name in FALLBACKS)
    return RuleSet(rules=rules, precedence=precedence, fallbacks=built)
