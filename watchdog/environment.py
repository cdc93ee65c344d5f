"""The agent's environment, prepared before it starts, and where it makes the agent write its logs.

`$WANDB_DIR/wandb` must exist: wandb's CLI writes its log there only if it does, otherwise into
$TMPDIR, where nobody reads it. The start-up hook in `watchdog/agent_startup` goes first on the
agent's PYTHONPATH: without it aiplatform's `CustomJob created` record is dropped. The user's
WANDB_DIR and PYTHONPATH are kept.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from launch_watchdog.agent_startup import DIRECTORY as AGENT_STARTUP
from launch_watchdog.follow import LogDirectory


def wandb_log_dir(wandb_dir: Path) -> Path:
    """Where wandb's CLI and runs write their logs under WANDB_DIR (`.wandb` when that exists)."""
    hidden = wandb_dir / ".wandb"
    return hidden if hidden.is_dir() else wandb_dir / "wandb"


def core_log_dir(environ: Mapping[str, str]) -> Path | None:
    """Where wandb-core writes `core-debug-*.log`: the user cache directory's `wandb/logs`."""
    cache = environ.get("XDG_CACHE_HOME", "")
    if cache and Path(cache).is_absolute():
        return Path(cache) / "wandb" / "logs"
    home = environ.get("HOME")
    return Path(home) / ".cache" / "wandb" / "logs" if home else None


def child_env(environ: Mapping[str, str], report: Callable[[str], None]) -> tuple[dict[str, str], Path | None]:
    """The agent's environment, and the WANDB_DIR made for it (None: the user's, kept)."""
    env = dict(environ)
    owned = None
    if not env.get("WANDB_DIR"):
        try:
            owned = Path(tempfile.mkdtemp(prefix="launch-watchdog-"))
        except OSError as exc:  # no writable temporary directory (a full /tmp): run the agent anyway
            report(f"cannot make a WANDB_DIR ({exc}): the agent's CLI log is not read")
        else:
            env["WANDB_DIR"] = str(owned)
    if env.get("WANDB_DIR"):
        logs = wandb_log_dir(Path(env["WANDB_DIR"]))
        try:
            logs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            report(f"cannot create {logs} ({exc.strerror}): the agent's CLI log goes to $TMPDIR, unread")
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(AGENT_STARTUP) + (os.pathsep + existing if existing else "")
    return env, owned


def log_directories(env: Mapping[str, str]) -> list[tuple[LogDirectory, str | None]]:
    """Where the agent's log files appear, each with the kind of its files (None: the name says)."""
    found: list[tuple[LogDirectory, str | None]] = []
    if env.get("WANDB_DIR"):
        found.append((LogDirectory(wandb_log_dir(Path(env["WANDB_DIR"]))), None))
    core_logs = core_log_dir(env)
    if core_logs is not None:
        found.append((LogDirectory(core_logs, prefix="core-debug-", newest_only=True), "core_log"))
    return found
