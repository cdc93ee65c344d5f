"""Required literals of a regular expression: cheap substring checks that rule lines out.

Python's `re` tries every branch of a large alternation at every character, so one combined regex
over all rules costs microseconds per line. A plain substring search (`in`) costs nanoseconds. For
each pattern we derive a set of literal strings such that *every* match contains at least one of
them; a line containing none of them cannot match, and the regex is never run on it.

The derivation walks the pattern's parse tree (the standard library's own parser): in a sequence,
any literal run is required, and a group or a repeat with a minimum of one passes its requirement
up; an alternation requires one of its branches' requirements. Anything it does not understand
yields "no requirement", which makes the caller fall back to the regex: never unsound, at worst slow.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

MIN_LITERAL = 3
"""Shorter literals occur everywhere; a requirement weaker than this is treated as none."""

Requirement = frozenset[str] | None


def _better(a: Requirement, b: Requirement) -> Requirement:
    """The more selective of two requirements (longer shortest literal, then fewer literals)."""
    if a is None:
        return b
    if b is None:
        return a
    key_a, key_b = (min(map(len, a)), -len(a)), (min(map(len, b)), -len(b))
    return a if key_a >= key_b else b


def _sequence(items: Any, fold: bool) -> Requirement:
    best: Requirement = None
    run: list[str] = []

    def close_run() -> None:
        nonlocal best
        if len(run) >= MIN_LITERAL:
            literal = "".join(run)
            best = _better(best, frozenset({literal.lower() if fold else literal}))
        run.clear()

    for op, av in items:
        if op is _c.LITERAL:
            run.append(chr(av))
            continue
        close_run()
        if op is _c.SUBPATTERN:
            best = _better(best, _sequence(av[-1], fold))
        elif op is _c.ATOMIC_GROUP:
            best = _better(best, _sequence(av, fold))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT) and av[0] >= 1:
            best = _better(best, _sequence(av[2], fold))
        elif op is _c.BRANCH:
            branches = [_sequence(branch, fold) for branch in av[1]]
            if all(branch is not None for branch in branches):
                best = _better(best, frozenset().union(*(b for b in branches if b is not None)))
    close_run()
    return best


def required_literals(regex: re.Pattern[str]) -> frozenset[str] | None:
    """Literals one of which every match of `regex` contains (lower-cased for IGNORECASE), or None."""
    fold = bool(regex.flags & re.IGNORECASE)
    try:
        tree = _parser.parse(regex.pattern, regex.flags)
    except Exception:  # noqa: BLE001 - a parser we cannot follow means "no requirement", never a failure
        return None
    found = _sequence(tree, fold)
    if found is None:
        return None
    # A literal that contains another member adds nothing: the shorter one is in the line anyway.
    return frozenset(a for a in found if not any(b != a and b in a for b in found))
