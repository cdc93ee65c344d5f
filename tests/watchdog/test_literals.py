"""Required literals: every match contains one; patterns without them fall back to the regex."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from launch_watchdog.literals import required_literals
from launch_watchdog.rules import load_rules
from launch_watchdog.scanner import Fired, Scanner
from tests.watchdog import agent_lines


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"PermissionDenied: 403", {"PermissionDenied: 403"}),
        (r"QuotaExceeded|ResourceExhausted", {"QuotaExceeded", "ResourceExhausted"}),
        (r"Machine type .*is not supported", {"is not supported"}),
        (r"Failed to initialize|wandb.*ERROR.*Failed", {"Failed"}),
        (r"(?:abc)+def", {"abc"}),
        (r"(?:ab)?xyz", {"xyz"}),
        (r"(?i)OOMKilled", {"oomkilled"}),
        (r"a|bcd", None),
        (r"\d+-\d+", None),
        (r"x*", None),
    ],
)
def test_derivation(pattern: str, expected: set[str] | None) -> None:
    """Literal runs, groups, alternations and repeats give the literals a match must contain."""
    found = required_literals(re.compile(pattern))
    assert (None if found is None else set(found)) == expected


def test_default_rules_are_sound_on_their_samples() -> None:
    """For each default rule, a line that matches contains one of its literals."""
    for rule in load_rules().rules:
        literals = required_literals(rule.regex)
        assert literals, rule.id
        for line in agent_lines.FIRING[rule.id].splitlines():
            if rule.regex.search(line):
                assert any(lit in line for lit in literals), (rule.id, line)


def _fired(rules_toml: str, tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "rules.toml"
    path.write_text(rules_toml)
    scanner = Scanner(load_rules(path))
    return [f.rule.id for f in scanner.feed(scanner.stream("s"), text) if isinstance(f, Fired)]


def test_a_rule_without_literals_still_fires(tmp_path: Path) -> None:
    """A pattern with no required literal is checked by regex, not skipped."""
    toml = "[[rules]]\nid = 'code'\ncategory = 'crash'\npattern = '\\d{3}-\\d{4}'\n"
    assert _fired(toml, tmp_path, "plain\nerror code 123-4567\n") == ["code"]
    assert _fired(toml, tmp_path, "plain\nnothing here\n") == []


def test_a_rule_with_groups_makes_every_line_a_candidate(tmp_path: Path) -> None:
    """Backreferences cannot join a combined regex; such a rule is checked on every line."""
    toml = "[[rules]]\nid = 'twice'\ncategory = 'crash'\npattern = '(\\w)\\1\\1'\n"
    assert _fired(toml, tmp_path, "abc\nzzz\n") == ["twice"]
