"""An evaluator for the part of Cloud Logging's query language that deploy/gcp/setup-events.sh uses,
so its sink filters can be held against LogEntry fixtures.

Implemented, after Google's "Logging query language" page
(https://cloud.google.com/logging/docs/view/logging-query-language):
- comparisons `FIELD = VALUE`, `FIELD != VALUE` and `FIELD : VALUE` (has: a substring of a string);
- a value list on the right, `FIELD = ("a" OR "b")`, true when any value matches;
- values as double-quoted strings or bare words; `true` and `false` compare with JSON booleans;
- field paths of LogEntry JSON names joined by dots, a segment double-quoted when it holds dots or
  slashes (`labels."run.googleapis.com/execution_name"`);
- `AND`, `OR`, `NOT` and parentheses, with the page's precedence: NOT, then OR, then AND
  (`a AND b OR c` is `a AND (b OR c)`).
A missing field matches nothing. Not implemented, and refused by the tokenizer or the parser: `<`,
`>`, `=~` (regular expressions), implicit AND between juxtaposed terms, functions such as
`SEARCH()`, and global restrictions (a bare word with no field). Strings compare case-sensitively;
the page makes `:` case-insensitive for some fields, so the script's filters use the exact case of
the values Google writes, for which both readings agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|:|\(|\)|\.)|(?P<word>[A-Za-z0-9_@%/\-*]+))')

Test = Callable[[dict[str, Any]], bool]


class QueryError(ValueError):
    """A filter outside the implemented part of the language."""


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise QueryError(f"cannot read the filter at {text[position : position + 20]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _lookup(entry: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(entry, dict) or part not in entry:
            return _MISSING
        entry = entry[part]
    return entry


_MISSING = object()


def _matches(found: Any, op: str, value: str) -> bool:
    if found is _MISSING or isinstance(found, dict | list):
        return False
    text = json.dumps(found) if isinstance(found, bool) else str(found)  # true, false as the query writes them
    if op == ":":
        return value in text
    return text == value


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise QueryError(f"expected {value or 'more'} at token {self.at}, found {token}")
        self.at += 1
        return token

    def conjunction(self) -> Test:
        tests = [self.disjunction()]
        while self.peek() == ("word", "AND"):
            self.take()
            tests.append(self.disjunction())
        return lambda entry: all(t(entry) for t in tests)

    def disjunction(self) -> Test:
        tests = [self.unary()]
        while self.peek() == ("word", "OR"):
            self.take()
            tests.append(self.unary())
        return lambda entry: any(t(entry) for t in tests)

    def unary(self) -> Test:
        if self.peek() == ("word", "NOT"):
            self.take()
            inner = self.unary()
            return lambda entry: not inner(entry)
        if self.peek() == ("op", "("):
            self.take("(")
            inner = self.conjunction()
            self.take(")")
            return inner
        return self.comparison()

    def segment(self) -> str:
        kind, text = self.take()
        if kind == "string":
            return text[1:-1]
        if kind != "word":
            raise QueryError(f"expected a field name, found {text!r}")
        return text

    def comparison(self) -> Test:
        path = [self.segment()]
        while self.peek() == ("op", "."):
            self.take(".")
            path.append(self.segment())
        kind, op = self.take()
        if kind != "op" or op not in ("=", "!=", ":"):
            raise QueryError(f"{'.'.join(path)} needs =, != or : (global restrictions are not implemented)")
        values = self.values()
        if op == "!=":
            return lambda entry: not any(_matches(_lookup(entry, path), "=", v) for v in values)
        return lambda entry: any(_matches(_lookup(entry, path), op, v) for v in values)

    def values(self) -> list[str]:
        if self.peek() == ("op", "("):
            self.take("(")
            values = [self.value()]
            while self.peek() == ("word", "OR"):
                self.take()
                values.append(self.value())
            self.take(")")
            return values
        return [self.value()]

    def value(self) -> str:
        kind, text = self.take()
        if kind == "string":
            return text[1:-1].replace('\\"', '"')
        if kind == "word":
            return text
        raise QueryError(f"expected a value, found {text!r}")


def compile_query(text: str) -> Test:
    """The filter as a test of one LogEntry (as JSON), or QueryError."""
    parser = _Parser(text)
    test = parser.conjunction()
    if parser.peek() is not None:
        raise QueryError(f"unexpected {parser.peek()} (implicit AND is not implemented)")
    return test
