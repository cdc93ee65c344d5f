"""Run by the agent's Python at start-up: lets `CustomJob created. Resource name: …` reach the watchdog.

launch-watchdog puts this directory first on the agent's PYTHONPATH; Python's `site` imports
`sitecustomize` before any wandb or Google code runs.

Why it is needed: aiplatform logs the success line at INFO on `google.cloud.aiplatform.base`. It
adds its own stdout handler only when no StreamHandler sits up the logger hierarchy, and wandb's CLI
log (a FileHandler, which is one) is on the root logger, so it adds none. On first use google-auth
then sets `logging.getLogger("google").propagate = False` unless that logger is already configured
(has a handler, a level, or propagation off: `_logger_configured` in google/auth/_helpers.py), and
the record never reaches the CLI log either: it is lost.

What it does: give the `google` logger one handler. google-auth then finds the logger configured
and leaves propagation on, so the record reaches wandb's CLI log as wandb intended; the handler also
writes it to stderr, which the watchdog reads the moment it is written. The handler passes records
of `google.cloud.aiplatform` at INFO and above, and any `google` record at WARNING and above (those
reached stderr before, through logging's last-resort handler), as plain `LEVEL logger: message`
lines without the traceback of a handled exception, which the watchdog's rules would read as a
crash.

Not chosen: `GOOGLE_SDK_PYTHON_LOGGING_SCOPE`, google-api-core's supported switch, configures the
named logger only when a generated client starts, and then at DEBUG with request and response
bodies as JSON; a level on `google` would change which Google records reach every handler.

Only the standard library is imported and nothing is patched. A `sitecustomize` found later on
sys.path (the image's or the user's own) runs afterwards, as Python would have run it. Python
processes the agent starts inherit PYTHONPATH and run this too; all it does there is the same
handler on `google`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import sys
from pathlib import Path

_AIPLATFORM = "google.cloud.aiplatform"


class _Plain(logging.Formatter):
    """`LEVEL logger: message`, without any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname} {record.name}: {record.getMessage()}"


def _wanted(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name == _AIPLATFORM or record.name.startswith(_AIPLATFORM + ".")


def _install() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.INFO)
    handler.addFilter(_wanted)
    handler.setFormatter(_Plain())
    logging.getLogger("google").addHandler(handler)


def _same_directory(entry: str, here: Path) -> bool:
    try:
        return Path(entry or ".").resolve() == here
    except OSError:
        return False


def _chain() -> None:
    """Run the sitecustomize this one shadows, if there is one."""
    here = Path(__file__).resolve().parent
    rest = [entry for entry in sys.path if not _same_directory(entry, here)]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_install()
_chain()
