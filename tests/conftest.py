"""Shared fixtures: running the installed launch-watchdog over real child processes."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.emulator import Emulator, require_emulator, running_emulator
from tests.faults import figures

# Under CI the property tests run the same examples every time (a gate must not flip on a random
# draw); locally they search afresh at every run, which is how they find new counterexamples.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

# `python -m pytest` puts the working directory first on sys.path; at the repository's root that
# would let its `supervisor/` and `watchdog/` folders shadow installed packages of those names
# (supervisord, the file-system events library). The tests import the installed launch_supervisor
# and launch_watchdog, and pytest runs with --import-mode=importlib, so nothing needs the root there.
_ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _ROOT]

AGENT = Path(__file__).parent / "watchdog" / "agent.py"


def watchdog_exe() -> str:
    exe = shutil.which("launch-watchdog")
    if exe is None:
        pytest.fail("launch-watchdog is not installed; run: pip install -e '.[dev]'")
    return exe


@dataclass
class Run:
    """A finished launch-watchdog run."""

    code: int
    stdout: str
    stderr: str
    signals: list[tuple[int, int]]
    """(signal number, CLOCK_MONOTONIC ns) as the agent received them."""

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith('{"event":"watchdog.')]

    def event(self, name: str) -> dict[str, Any]:
        found = [e for e in self.events if e["event"] == name]
        assert len(found) == 1, f"expected one {name}, got {[e['event'] for e in self.events]}\n{self.stderr}"
        return found[0]

    @property
    def names(self) -> list[str]:
        return [e["event"] for e in self.events]


class Agent:
    """Writes a script for tests/watchdog/agent.py and starts launch-watchdog over it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.signal_log = tmp / "signals.log"
        self.wandb_dir = tmp / "wandb-dir"
        self.wandb_dir.mkdir(exist_ok=True)

    def command(
        self, steps: Sequence[dict[str, Any]], then: str = "poll", on_signal: str = "exit", **extra: Any
    ) -> list[str]:
        script = self.tmp / "script.json"
        body = {"steps": list(steps), "then": then, "on_signal": on_signal, "signal_log": str(self.signal_log)}
        script.write_text(json.dumps({**body, **extra}))
        return [sys.executable, str(AGENT), str(script), "-q", "vertex-ai-queue", "-e", "team-ml", "--max-jobs", "1"]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCH_WATCHDOG_")}
        env["WANDB_DIR"] = str(self.wandb_dir)
        env.pop("PUBSUB_EMULATOR_HOST", None)
        env.update(extra or {})
        return env

    def start(
        self,
        steps: Sequence[dict[str, Any]],
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        then: str = "poll",
        on_signal: str = "exit",
        signal_text: str | None = None,
    ) -> subprocess.Popen[str]:
        extra = {} if signal_text is None else {"signal_text": signal_text}
        argv = [watchdog_exe(), *args, "--", *self.command(steps, then, on_signal, **extra)]
        return subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(env),
            start_new_session=True,
        )

    def signals(self) -> list[tuple[int, int]]:
        if not self.signal_log.exists():
            return []
        return [
            (int(a), int(b)) for a, b in (line.split() for line in self.signal_log.read_text().splitlines() if line)
        ]

    def finish(self, proc: subprocess.Popen[str], timeout: float = 60) -> Run:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"launch-watchdog did not finish in {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
        return Run(proc.returncode, out, err, self.signals())

    def run(self, steps: Sequence[dict[str, Any]], **kwargs: Any) -> Run:
        timeout = kwargs.pop("timeout", 60)
        return self.finish(self.start(steps, **kwargs), timeout)


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    return Agent(tmp_path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A Pub/Sub emulator shared by the tests of one session."""
    require_emulator()
    with running_emulator(tmp_path_factory.mktemp("pubsub")) as emulator:
        SESSION_GROUPS.add(emulator.proc.pid)
        yield emulator


def descendants(root: int) -> dict[int, int]:
    """pid → process group of every live (non-zombie) descendant of `root`, from /proc."""
    parents: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, pgid, state) in parents.items():
            if ppid == parent and pid not in found:
                frontier.append(pid)
                if state != "Z":
                    found[pid] = pgid
    return found


SESSION_GROUPS: set[int] = set()
"""Process groups of session-wide services (the emulator), which outlive single tests."""


def pytest_configure(config: pytest.Config) -> None:
    """Make this process a subreaper: what a test's processes orphan (wandb-core runs in a session
    of its own) is re-parented here instead of to init, so the guard below still sees it. And
    register the fault suite's figures, whose hooks must run on xdist's controller too."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    config.pluginmanager.register(figures, "fault-suite-figures")


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """A test that leaves a process of its own running fails."""
    before = set(descendants(os.getpid()))
    yield
    left: dict[int, int] = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = {
            pid: pgid
            for pid, pgid in descendants(os.getpid()).items()
            if pid not in before and pgid not in SESSION_GROUPS
        }
        if not left:
            return
        time.sleep(0.05)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pytest.fail(f"the test left processes running: {sorted(left)}")


FAST = pytest.mark.fast
"""The inner loop's tier (`pytest -m fast`, docs/contributing.md, Test tiers): the model, units, the
rules on recorded transcripts. Given by where a test is and what it uses, never by its own mark, so
that a new test lands in the right tier without anyone choosing."""

SLOW_PATHS = (
    "bench/",
    "deploy/",
    "faults/",
    "images/",
    "launcher/",
    "sandbox/",
    "supervisor/daemon/",
    "supervisor/test_cli.py",
    "test_code_quality.py",
    "watchdog/test_agent_startup.py",
    "watchdog/test_endings.py",
    "watchdog/test_watchdog.py",
)
"""Under tests/: what starts the real agent, the sandbox, Prometheus, Alertmanager, a deploy script
or docker, injects faults into the whole daemon, runs the daemon (in process against the stand-ins,
or as `launch-supervisor run`), imports google's libraries in a fresh agent process, runs the
watchdog's process mechanics over the scripted agent (signals, grace periods and idle timeouts,
which wait in real time), or runs ruff and mypy (run those directly while you work)."""

PROPERTY_FILES = "test_properties.py"
"""Property tests search hundreds of examples each: the model's strongest tests, and a minute of
the fast tier's budget, so they run with the rest."""

SLOW_MODULES = frozenset(
    {"tests.emulator", "tests.real_agent", "launch_supervisor.sandbox.session", "tests.deploy.monitoring"}
)
"""A test module that uses any of these (the Pub/Sub emulator, the real agent, the sandbox, the
monitoring stack) is slow wherever it is."""

SLOW_FIXTURES = frozenset({"pubsub_emulator"})


def _uses_slow_module(module: object) -> bool:
    for value in vars(module).values():
        is_module = isinstance(value, type(contextlib))
        name = getattr(value, "__name__" if is_module else "__module__", None)
        if name in SLOW_MODULES:
            return True
    return False


def tier_is_fast(item: pytest.Item) -> bool:
    """True for a test of the fast tier: outside the slow paths and the property files, using none
    of the slow modules or fixtures, no hypothesis search, and not marked `slow`."""
    relative = Path(str(item.path)).relative_to(Path(__file__).parent).as_posix()
    if relative.startswith(SLOW_PATHS) or relative.endswith(PROPERTY_FILES):
        return False
    if item.get_closest_marker("slow") is not None or getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        return False
    if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return False
    module = getattr(item, "module", None)
    return module is None or not _uses_slow_module(module)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the fast tier (see FAST)."""
    for item in items:
        if tier_is_fast(item):
            item.add_marker(FAST)


@pytest.fixture
def anyio_backend() -> str:
    """The daemon runs on asyncio (grpc.aio needs it)."""
    return "asyncio"
