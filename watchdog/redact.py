"""Redaction of secrets from everything the watchdog writes.

Cloud Logging keeps whatever a container prints, so the agent's output, the bailout block and the
watchdog's own events all pass through here first. Two kinds of secret are removed: the values of
secret-looking environment variables the watchdog was started with, wherever they appear; the value
of any secret-looking variable a text sets (an env entry `{'name': 'X_KEY', 'value': '…'}` as the
agent prints a job's CustomJob spec, in Python, JSON or protobuf text, or `X_KEY=…`), whoever's it
is; and common credential shapes (Authorization headers, Google OAuth and Hugging Face tokens, PEM
private keys). Most text holds none of them, so cheap substring checks come before any regex.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from launch_watchdog.lines import TRUNCATED

MIN_SECRET_LENGTH = 6
"""Shorter values are not redacted: replacing every "1" or "true" would wreck the output."""

_SECRET_NAME = re.compile(r"(?:_KEY|_TOKEN|_SECRET)$|PASSWORD|^HF_TOKEN$|^WANDB_API_KEY$")
_PRIVATE_KEY = "[REDACTED:private-key]"

_SHAPES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (name, regex with the credential in group "secret", substrings one of which must be present)
    (
        "authorization",
        # No \b before it: `HTTP_AUTHORIZATION` (a WSGI environ) carries the same header.
        r"(?i:authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic)\s+)(?P<auth>[A-Za-z0-9._~+/=:-]+)",
        ("uthorization", "UTHORIZATION"),
    ),
    ("oauth-token", r"\bya29\.[A-Za-z0-9._-]+", ("ya29.",)),
    ("hf-token", r"\bhf_[A-Za-z0-9]{10,}", ("hf_",)),
)
_Q = r"['\"]"
_GAP = r"[^'\"\n]*(?:\n[^'\"\n]*)?"
"""Between an env entry's name and its value: the rest of the line, and at most one more line's
prefix (pprint breaks a long entry there)."""
_ENV_VALUE = rf"(?P<vq>{_Q}?)value(?P=vq)\s*:\s*(?P<q>{_Q})(?P<value>[^'\"\n]*)(?P=q)"
_ENV_ENTRY = re.compile(
    rf"(?P<nq>{_Q}?)name(?P=nq)\s*:\s*(?P<q0>{_Q})(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P=q0)\s*,?{_GAP}{_ENV_VALUE}"
)
_ENV_NAME_AT_END = re.compile(rf"{_Q}?name{_Q}?\s*:\s*{_Q}(?P<name>[A-Za-z_][A-Za-z0-9_]*){_Q}\s*,?[^'\"\n]*\n?$")
_ENV_VALUE_AT_START = re.compile(rf"^{_GAP}{_ENV_VALUE}")
_ASSIGNMENT = re.compile(r"\b(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>[^\s'\"]+)")
_ASSIGNMENT_HINTS = ("KEY=", "TOKEN=", "SECRET=", "key=", "token=", "secret=", "PASSWORD", "password", "Password")
"""Most lines with a `=` set nothing secret: the regex runs only on those that may."""
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_BODY = re.compile(r"[^\n]+")


def secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name.upper()))


def _redact_value(match: re.Match[str], name: str) -> str:
    """`match` with its `value` group replaced when `name` is a secret's and the value long enough."""
    value = match.group("value")
    if not secret_name(name) or len(value) < MIN_SECRET_LENGTH or value.startswith("[REDACTED"):
        return match.group()
    start, end = match.start("value") - match.start(), match.end("value") - match.start()
    text = match.group()
    return f"{text[:start]}[REDACTED:{name}]{text[end:]}"


def redact_settings(text: str) -> str:
    """The values of secret-looking variables that `text` itself sets, whoever's they are."""
    if "name" in text and "value" in text:
        text = _ENV_ENTRY.sub(lambda m: _redact_value(m, m.group("name")), text)
    if any(hint in text for hint in _ASSIGNMENT_HINTS):
        text = _ASSIGNMENT.sub(lambda m: _redact_value(m, m.group("name")), text)
    return text


def secret_values(environ: Mapping[str, str]) -> dict[str, str]:
    """Name → value of the environment variables that look like secrets."""
    return {name: value for name, value in environ.items() if secret_name(name) and len(value) >= MIN_SECRET_LENGTH}


class Redactor:
    """Redaction of secret values and token shapes; one per watchdog, shared by its streams."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        # Longest first, so a value that contains another is replaced whole.
        by_length = sorted(secrets.items(), key=lambda item: -len(item[1]))
        self._values = tuple(value for _, value in by_length)
        self._names = {value: name for name, value in by_length}
        parts = [re.escape(value) for value in self._values]
        self._value_regex = re.compile("|".join(parts)) if parts else None
        self._shapes = tuple((re.compile(regex), _shape_replacer(name), hints) for name, regex, hints in _SHAPES)

    def _value(self, match: re.Match[str]) -> str:
        return f"[REDACTED:{self._names[match.group()]}]"

    def redact_inline(self, text: str) -> str:
        """`text` with secret values and token shapes replaced; private keys are left alone."""
        if self._value_regex is not None and any(value in text for value in self._values):
            text = self._value_regex.sub(self._value, text)
        if self._values and TRUNCATED in text:
            *cut, rest = text.split(TRUNCATED)
            text = TRUNCATED.join([*map(self._cut_value, cut), rest])
        for regex, replacer, hints in self._shapes:
            if any(hint in text for hint in hints):
                text = regex.sub(replacer, text)
        return redact_settings(text)

    def _cut_value(self, head: str) -> str:
        """`head`, a line up to where `LineBuffer` cut it, without the start of a secret value the cut
        left at its end: the rest of that value was dropped, so the value itself never matches."""
        stem = head[:-1] if head.endswith("\ufffd") else head  # the cut may fall inside a character
        longest, name = 0, ""
        for value in self._values:
            for size in range(min(len(value) - 1, len(stem)), longest, -1):
                if stem.endswith(value[:size]):
                    longest, name = size, self._names[value]
                    break
        return f"{stem[:-longest]}[REDACTED:{name}]" if longest else head

    def redact(self, text: str) -> str:
        """Redact a self-contained text (an event field, a line): everything, keys included."""
        if "PRIVATE KEY-----" in text:
            text = StreamRedactor(self).redact_keys(text)
        return self.redact_inline(text)

    def stream(self) -> StreamRedactor:
        """A redactor for one stream of blocks, which remembers a private-key block left open."""
        return StreamRedactor(self)


def _shape_replacer(name: str) -> Callable[[re.Match[str]], str]:
    marker = f"[REDACTED:{name}]"

    def replace(match: re.Match[str]) -> str:
        if match.lastgroup == "auth":  # keep "Authorization: Bearer ", drop the credential
            return match.group()[: match.start("auth") - match.start()] + marker
        return marker

    return replace


@dataclass(slots=True)
class StreamRedactor:
    """Redaction for consecutive blocks of one stream; a PEM key may span several blocks."""

    base: Redactor
    in_key: bool = field(default=False)
    value_of: str | None = field(default=None)
    """The secret-looking name of an env entry the previous block ended with, its value not yet read."""

    def redact(self, text: str) -> str:
        if self.in_key or "PRIVATE KEY-----" in text:
            text = self.redact_keys(text)
        if self.value_of is not None:
            name, self.value_of = self.value_of, None
            text = _ENV_VALUE_AT_START.sub(lambda m: _redact_value(m, name), text, count=1)
        text = self.base.redact_inline(text)
        if "name" in text and (end := _ENV_NAME_AT_END.search(text)) and secret_name(end.group("name")):
            self.value_of = end.group("name")
        return text

    def redact_keys(self, text: str) -> str:
        """Replace every line of private-key body, from BEGIN to END, keeping the markers."""
        out: list[str] = []
        pos = 0
        while pos < len(text):
            if not self.in_key:
                begin = _PEM_BEGIN.search(text, pos)
                if begin is None:
                    out.append(text[pos:])
                    break
                out.append(text[pos : begin.end()])
                pos = begin.end()
                self.in_key = True
            end = _PEM_END.search(text, pos)
            stop = end.start() if end else len(text)
            out.append(_PEM_BODY.sub(_PRIVATE_KEY, text[pos:stop]))
            if end is None:
                break
            out.append(end.group())
            pos = end.end()
            self.in_key = False
        return "".join(out)
