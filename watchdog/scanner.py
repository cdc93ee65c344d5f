"""The rule engine: what the agent's lines mean.

Pure: it takes blocks of lines from named streams and yields findings (a rule fired, the agent
started polling, a job was received, claimed, submitted, a block ended); it neither reads nor
signals. Each stream keeps its own state,
because the agent's stdout, stderr and log files interleave arbitrarily:

- the job payload that follows `Launch agent received job:` is a pprint of the user's config that
  can contain anything, so its lines are skipped (it ends where the brackets balance, at the blank
  line the agent prints after it, or at the first line that is not an indented continuation);
- two-line rules wait for their second line within `within` lines of the same stream;
- windowed rules count matches within `window` lines of the same stream;
- a block rule's line opens a block that lasts while the following lines continue it (they start
  with the same `wandb: ERROR ` prefix, as every line of one multi-line `termerror` does); the
  first line that does not, the caller (a quiet stream, its end) or a length cap ends it. Which
  line ends a block depends only on the lines, so however the text was split into reads, the
  block holds the same lines.

Each stream has a kind (the agent's pipes, its CLI log, a run log, wandb-core's log, a followed
file) and only the rules that read that kind run on it.

Speed: substring checks for the literals every match must contain decide, for a whole block,
whether any line in it can matter, and then which lines do. Most blocks of a healthy agent hold
none of them, and the per-line work is skipped entirely.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from launch_watchdog.literals import required_literals
from launch_watchdog.rules import Rule, RuleSet

RECEIVED = re.compile(r"Launch agent received job:")
STARTED = re.compile(r"\bagent\b.*\bpolling on queues?\b")
"""The agent's status line once it polls (wandb 0.31 prints it when its loop starts):
`wandb: launch: agent NAME polling on queues Q1,Q2, running 0 out of a maximum of 1 jobs`."""
SUBMITTED = re.compile(r"CustomJob created\. Resource name: (projects/[^/\s]+/locations/[^/\s]+/customJobs/[^/\s'\"]+)")
_ITEM_ID = re.compile(r"""['"]runQueueItemId['"]: ['"]([^'"]+)['"]""")
_PREFIX = re.compile(r"^wandb: (?:ERROR |WARNING )?")
_STRING_LITERALS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
MAX_PAYLOAD_LINES = 100_000
"""A payload longer than this is assumed to have ended unseen; rules resume."""
MAX_BLOCK_LINES = 1_000
"""A block longer than this ends there: its verdict cannot wait forever."""
_CLI_LOG = re.compile(r"debug-cli\..*\.log")
_CORE_LOG = re.compile(r"core-debug-.*\.log")


def kind_of(name: str) -> str:
    """The source kind a stream name implies when the caller gives none (see `rules.SOURCE_KINDS`)."""
    if name in ("stdout", "stderr"):
        return "agent"
    if _CLI_LOG.fullmatch(name):
        return "cli_log"
    if _CORE_LOG.fullmatch(name):
        return "core_log"
    if name.startswith("debug") and name.endswith(".log"):
        return "run_log"
    return "follow"


@dataclass(frozen=True, slots=True)
class Line:
    """One line as read, redacted, with its place in the watchdog's combined numbering."""

    source: str
    number: int
    text: str


@dataclass(frozen=True, slots=True)
class Fired:
    """A rule fired on these lines (one, or all that counted for a windowed or two-line rule)."""

    rule: Rule
    lines: tuple[Line, ...]


@dataclass(frozen=True, slots=True)
class Received:
    """The agent took a job off the queue."""

    line: Line


@dataclass(frozen=True, slots=True)
class Claimed:
    """The queue item id, read from the received job's payload."""

    item_id: str
    line: Line


@dataclass(frozen=True, slots=True)
class Started:
    """The agent polls its queues: it got past start-up (credentials, queues)."""

    line: Line


@dataclass(frozen=True, slots=True)
class BlockEnded:
    """The block a block rule opened on this stream is over; `reason` says what ended it."""

    stream: str
    reason: str
    """"line" (a line that does not continue it), "quiet", "end" (of the stream) or "limit"."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """The CustomJob exists on Vertex AI: the agent's work is done."""

    resource: str
    line: Line


Finding = Fired | Received | Claimed | Submitted | Started | BlockEnded

_NONE, _EXPECT, _INSIDE = 0, 1, 2


@dataclass(slots=True)
class Stream:
    """Per-source scanning state."""

    name: str
    kind: str = "agent"
    """Which rules read this stream (see `rules.SOURCE_KINDS`)."""
    index: int = 0
    """Lines of this stream seen so far; windows are measured in these."""
    payload: int = _NONE
    depth: int = 0
    payload_lines: int = 0
    item_found: bool = False
    pending: dict[str, deque[tuple[int, Line]]] = field(default_factory=dict)
    """Two-line rules: first lines still waiting for their second, with the last index it may come at."""
    matches: dict[str, deque[tuple[int, Line]]] = field(default_factory=dict)
    """Windowed rules: recent matching lines."""
    block_prefix: str | None = None
    """While a block is open: what its continuation lines start with ("" = any line continues it)."""
    block_until: int = 0
    """The last index the open block may reach."""

    @property
    def in_block(self) -> bool:
        return self.block_prefix is not None

    @property
    def active(self) -> bool:
        """Whether a block must be looked at line by line even when no pattern occurs in it."""
        return (
            self.payload != _NONE
            or self.block_prefix is not None
            or any(q and q[-1][0] > self.index for q in self.pending.values())
        )


def _scoped(regex: re.Pattern[str]) -> str:
    flags = "i" if regex.flags & re.IGNORECASE else ""
    return f"(?{flags}:{regex.pattern})"


class Prefilter:
    """Which lines of a block can matter to any rule or marker, decided with substring checks.

    Each pattern contributes the literals every match of it contains (see `literals`). A pattern
    without such literals is checked with a combined regex instead; one whose groups would be
    renumbered by combining makes every line a candidate.
    """

    def __init__(self, patterns: list[re.Pattern[str]]) -> None:
        exact: set[str] = set()
        folded: set[str] = set()
        rest: list[re.Pattern[str]] = []
        for pattern in patterns:
            literals = required_literals(pattern)
            if literals is None:
                rest.append(pattern)
            elif pattern.flags & re.IGNORECASE:
                folded |= literals
            else:
                exact |= literals
        self._exact = tuple(sorted(exact))
        self._folded = tuple(sorted(folded))
        self._everything = any(p.groups for p in rest)
        self._regex = None if self._everything or not rest else re.compile("|".join(map(_scoped, rest)), re.M)

    def lines_that_matter(self, block: str) -> Callable[[str], bool] | None:
        """A test for the lines of `block` worth checking, or None when no line of it can match."""
        if self._everything:
            return _always
        exact = [h for h in self._exact if h in block]
        folded = [h for h in self._folded if h in block.lower()] if self._folded else []
        regex = self._regex if self._regex is not None and self._regex.search(block) else None
        if not (exact or folded or regex):
            return None

        def matters(line: str) -> bool:
            if any(h in line for h in exact):
                return True
            if folded:
                lowered = line.lower()
                if any(h in lowered for h in folded):
                    return True
            return regex is not None and regex.search(line) is not None

        return matters


def _always(line: str) -> bool:
    return True


def _never(line: str) -> bool:
    return False


class Scanner:
    """Applies a rule set to the lines of any number of streams."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.lines_seen = 0
        self._by_kind: dict[str, tuple[Rule, ...]] = {}
        patterns = [RECEIVED, SUBMITTED, STARTED]
        for rule in rules.rules:
            patterns.append(rule.regex)
            if rule.then is not None:
                patterns.append(rule.then)
        self._prefilter = Prefilter(patterns)

    def stream(self, name: str, kind: str | None = None) -> Stream:
        """A new stream; its kind defaults to what its name implies (`kind_of`)."""
        kind = kind_of(name) if kind is None else kind
        if kind not in self._by_kind:
            self._by_kind[kind] = self.rules.for_source(kind)
        return Stream(name, kind)

    def end_block(self, stream: Stream, reason: str) -> BlockEnded | None:
        """End the stream's open block from outside (quiet stream, end of stream); None if none is open."""
        if stream.block_prefix is None:
            return None
        stream.block_prefix = None
        return BlockEnded(stream.name, reason)

    def feed(self, stream: Stream, block: str) -> Iterator[Finding]:
        """Findings in `block` (whole lines, each ending in a newline), lazily and in order.

        Line numbers are assigned at once; the findings come as the caller iterates, so it can act
        on the first fatal line before the rest of the block is looked at.
        """
        count = block.count("\n")
        first = self.lines_seen + 1
        self.lines_seen += count
        start = stream.index
        stream.index += count
        matters = self._prefilter.lines_that_matter(block)
        if matters is None:
            if not stream.active:
                return iter(())
            matters = _never  # only the payload, a pending rule or an open block needs the lines walked
        lines = block.split("\n")
        lines.pop()
        return self._scan(stream, lines, first, start, matters)

    def _scan(
        self, stream: Stream, lines: list[str], first: int, start: int, matters: Callable[[str], bool]
    ) -> Iterator[Finding]:
        rules = self._by_kind[stream.kind]
        for offset, text in enumerate(lines):
            index = start + offset + 1
            if stream.block_prefix is not None:
                if index > stream.block_until:
                    stream.block_prefix = None
                    yield BlockEnded(stream.name, "limit")
                elif not text.startswith(stream.block_prefix):
                    stream.block_prefix = None
                    yield BlockEnded(stream.name, "line")
            if stream.payload != _NONE:
                found, consumed = self._payload(stream, text, first + offset)
                if found is not None:
                    yield found
                if consumed:
                    continue
            if not matters(text):
                continue
            line = Line(stream.name, first + offset, text)
            submitted = SUBMITTED.search(text)
            if submitted:
                yield Submitted(submitted.group(1), line)
            if RECEIVED.search(text):
                stream.payload = _EXPECT
                yield Received(line)
                continue
            if STARTED.search(text):
                yield Started(line)
            for rule in rules:
                fired = self._apply(stream, rule, index, line)
                if fired is not None:
                    if rule.block and stream.block_prefix is None:
                        head = _PREFIX.match(text)
                        stream.block_prefix = head.group(0) if head else ""
                        stream.block_until = index + MAX_BLOCK_LINES
                    yield fired

    def _apply(self, stream: Stream, rule: Rule, index: int, line: Line) -> Fired | None:
        if rule.then is not None:
            waiting = stream.pending.setdefault(rule.id, deque())
            while waiting and waiting[0][0] < index:
                waiting.popleft()
            if waiting and rule.then.search(line.text):
                head = waiting.popleft()[1]
                waiting.clear()
                return Fired(rule, (head, line))
            if rule.regex.search(line.text):
                waiting.append((index + rule.within, line))
            return None
        if not rule.regex.search(line.text):
            return None
        if rule.count <= 1:
            return Fired(rule, (line,))
        recent = stream.matches.setdefault(rule.id, deque())
        recent.append((index, line))
        if rule.window:
            while recent[0][0] <= index - rule.window:
                recent.popleft()
        if len(recent) >= rule.count:
            fired = Fired(rule, tuple(counted for _, counted in recent))
            recent.clear()
            return fired
        return None

    def _payload(self, stream: Stream, text: str, number: int) -> tuple[Finding | None, bool]:
        """Handle a line while a payload may be open: (a finding, whether the line was payload)."""
        content = _PREFIX.sub("", text, count=1)
        if stream.payload == _EXPECT:
            if not content.startswith("{"):
                stream.payload = _NONE
                return None, False
            stream.payload, stream.depth, stream.payload_lines = _INSIDE, 0, 0
            stream.item_found = False
        elif not content.strip():
            stream.payload = _NONE  # the blank line the agent prints after the payload
            return None, True
        elif not content[0].isspace():
            stream.payload = _NONE  # not a continuation: the payload ended without our noticing
            return None, False
        bare = _STRING_LITERALS.sub("", content)
        stream.depth += sum(bare.count(c) for c in "{[(") - sum(bare.count(c) for c in "}])")
        stream.payload_lines += 1
        if stream.depth <= 0 or stream.payload_lines >= MAX_PAYLOAD_LINES:
            stream.payload = _NONE
        if not stream.item_found:
            item = _ITEM_ID.search(content)
            if item:
                stream.item_found = True
                return Claimed(item.group(1), Line(stream.name, number, text)), True
        return None, True
