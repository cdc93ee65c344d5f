"""Which rules make up a bailout, and when its verdict is final.

Pure: the runner feeds it the scanner's findings and acts on the steps it returns; the same logic
can therefore be driven line by line in a test.

A run has at most one incident. It opens at the first stop rule that fires while the outcome is
still open (or after the agent exited by itself, to classify that exit). What happens next depends
on the rule:

- An ordinary rule decides at once (`STOP_NOW`): the runner reads whatever is already waiting in
  the pipes and files, signals the agent, scans that output into the incident and closes it, so the
  verdict covers everything written before the signal and nothing the agent prints in reaction.
- A block rule's line is only the head of a multi-line error whose category comes from the lines
  after it (`Error running job:` then a traceback). The incident holds (`HOLD`) until the scanner
  reports that block's end: a line that does not continue it, a quiet stream, the stream's end.
  Only then (`DECIDED`) is the agent signalled and the verdict reported; nothing after the block
  joins it. The verdict is thus a function of the block's text, never of how its writes were split
  into reads.

Why the signal waits for the block instead of going out at its head: the agent reacts to SIGINT by
printing (`Aborted!`, shutdown lines) on the very stream the block is still arriving on, and that
reaction must never become part of the verdict. Waiting costs at most the quiet gap after the
block's last line. A traceback's exception line does not end a block by itself: chained exceptions
(a grpc error, then "The above exception was the direct cause…", then the api_core exception) put
the decisive exception last, and only a later line or silence shows which one was last.

Explain rules are kept aside as hints, the first firing of each, for endings no stop rule explains.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from launch_watchdog.rules import RuleSet
from launch_watchdog.scanner import BlockEnded, Fired, Line


class Step(enum.Enum):
    """What the runner does after a finding."""

    NONE = "none"
    STOP_NOW = "stop_now"
    """An incident opened and is decided: read what is waiting, signal, scan it in, close."""
    HOLD = "hold"
    """An incident opened on a block head: wait for the block to end before signalling."""
    DECIDED = "decided"
    """The held block ended: signal the agent and report the verdict."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a bailout reports."""

    rule: str
    category: str
    description: str
    trigger: str
    """The rule that opened the incident (or the ending's own id)."""
    rules: tuple[str, ...]
    """Every rule that fired for it."""
    lines: tuple[Line, ...]
    """The lines those rules fired on, in order."""


@dataclass(slots=True)
class Incident:
    """The stop rules that fired for one bailout."""

    fired: list[Fired]
    detected_at: float
    """When the line that opened it was read (monotonic seconds)."""
    block: str | None
    """While held: the stream whose block decides the verdict."""
    closed: bool = False


class Judge:
    """Findings in, the run's one incident (and the hints) out."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.incident: Incident | None = None
        self.hints: dict[str, Fired] = {}

    @property
    def holding(self) -> str | None:
        """The stream whose block the open incident waits for, if any."""
        incident = self.incident
        return incident.block if incident is not None and not incident.closed else None

    def fired(self, finding: Fired, may_open: bool, at: float) -> Step:
        """A rule fired; `may_open` says whether a new incident may start (no other outcome yet)."""
        if not finding.rule.stops:
            self.hints.setdefault(finding.rule.id, finding)
            return Step.NONE
        incident = self.incident
        if incident is not None:
            if not incident.closed:
                incident.fired.append(finding)
            return Step.NONE
        if not may_open:
            return Step.NONE
        block = finding.lines[-1].source if finding.rule.block else None
        self.incident = Incident([finding], detected_at=at, block=block)
        return Step.STOP_NOW if block is None else Step.HOLD

    def block_ended(self, ended: BlockEnded) -> Step:
        incident = self.incident
        if incident is None or incident.closed or incident.block != ended.stream:
            return Step.NONE
        incident.block = None
        incident.closed = True
        return Step.DECIDED

    def close(self) -> None:
        """No later finding joins the incident."""
        if self.incident is not None:
            self.incident.block = None
            self.incident.closed = True

    def verdict(self) -> Verdict:
        """The incident's verdict: the most specific category among the rules that fired."""
        assert self.incident is not None
        fired = self.incident.fired
        best = min(fired, key=lambda f: self.rules.rank(f.rule.category))
        return Verdict(
            rule=best.rule.id,
            category=best.rule.category,
            description=best.rule.description,
            trigger=fired[0].rule.id,
            rules=tuple(sorted({f.rule.id for f in fired})),
            lines=_lines(fired),
        )

    def explain(self, ending: str) -> Verdict:
        """The verdict for an ending no stop rule explains: from the hints, else the fallback's."""
        fallback = self.rules.fallback(ending)
        hints = list(self.hints.values())
        if not hints:
            return Verdict(fallback.id, fallback.category, fallback.description, fallback.id, (), ())
        best = min(hints, key=lambda f: self.rules.rank(f.rule.category))
        return Verdict(
            rule=fallback.id,
            category=best.rule.category,
            description=f"{fallback.description}: {best.rule.description}",
            trigger=fallback.id,
            rules=tuple(sorted({f.rule.id for f in hints})),
            lines=_lines(hints),
        )


def _lines(fired: list[Fired]) -> tuple[Line, ...]:
    return tuple(sorted({line for f in fired for line in f.lines}, key=lambda line: line.number))
