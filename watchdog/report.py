"""How a bailout is reported: the `watchdog.bailout` event, and a block printed to stderr.

The block keeps the shape operators already read in the original wrapper's output: what triggered,
every matching line with its line number, then the last lines the agent printed. All of it was
redacted on the way in.
"""

from __future__ import annotations

from collections.abc import Iterable

from launch_watchdog.console import Console
from launch_watchdog.events import Events
from launch_watchdog.incident import Verdict
from launch_watchdog.scanner import Line

RULE = "━" * 72


def bailout_block(
    *,
    description: str,
    rule_id: str,
    category: str,
    trigger: str,
    matches: Iterable[Line],
    context: Iterable[str],
    context_lines: int,
    stopped: bool = True,
) -> str:
    out = [
        RULE,
        f"BAILOUT TRIGGER: {description}",
        f"  rule {rule_id}, category {category}" + (f" (first signalled by {trigger})" if trigger != rule_id else ""),
        RULE,
        "",
        "Matching lines:",
    ]
    out.extend(f"  ► {line.number} [{line.source}]: {line.text}" for line in matches)
    tail = list(context)
    out.extend(["", f"━━━ Last {len(tail)} of up to {context_lines} agent lines ━━━"])
    out.extend(tail)
    ending = "launch-watchdog stopped the agent" if stopped else "the agent exited by itself"
    out.extend([RULE, f"{ending}: {category} ({rule_id})", ""])
    return "\n".join(out)


def report_bailout(
    events: Events,
    console: Console,
    verdict: Verdict,
    *,
    stopped: bool,
    detection_ms: float,
    item_id: str | None,
    context: Iterable[str],
    context_lines: int,
) -> None:
    """Emit the bailout event, then print the block; `stopped`: the watchdog stops the agent for it."""
    events.emit(
        "watchdog.bailout",
        "ERROR",
        f"bailout: {verdict.description} ({verdict.category}); "
        + ("stopping the agent" if stopped else "the agent exited by itself"),
        rule=verdict.rule,
        category=verdict.category,
        trigger_rule=verdict.trigger,
        rules=list(verdict.rules),
        lines=[{"source": line.source, "line": line.number, "text": line.text} for line in verdict.lines],
        detection_ms=round(detection_ms, 3),
        item_id=item_id,
    )
    console.err(
        bailout_block(
            description=verdict.description,
            rule_id=verdict.rule,
            category=verdict.category,
            trigger=verdict.trigger,
            matches=verdict.lines,
            context=context,
            context_lines=context_lines,
            stopped=stopped,
        )
    )
