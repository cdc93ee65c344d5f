"""The bailout block printed to stderr when a rule stops the agent (or explains why it ended).

It keeps the shape operators already read in the original wrapper's output: what triggered, every
matching line with its line number, then the last lines the agent printed. All of it was redacted
on the way in.
"""

from __future__ import annotations

from collections.abc import Iterable

from watchdog.scanner import Line

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
