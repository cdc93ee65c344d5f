"""Properties of the watchdog's way from the bytes it reads to the verdict and to what it writes.

The way bytes take in a run (`runner.Watchdog`): a read of a pipe or a poll of a followed file goes
to `AgentOutput`: `LineBuffer` makes whole lines of it, terminal escapes are dropped, the stream's
`StreamRedactor` redacts, the pipes' text is passed through and its last lines kept, and
`Scanner.feed` turns the lines into findings for the runner's `_found`, where the `Judge` opens,
holds and closes the incident and `report_bailout` writes the event and the block. `watch` below
builds a real `Watchdog` and drives its output the way its loop does (`select`, `read`,
`poll_files`, `final_drain`) over pipes and a file the test writes; no agent runs (its group is
`fakes.Group`), and the one thing changed is how many bytes each read of a pipe takes: hypothesis
draws it.

What is split-independent, precisely. Time enters the verdict in one place only: a block that a
held incident waits for also ends after `BLOCK_QUIET_SECONDS` of silence on its stream
(`end_quiet_block`, driven by the loop's clock). `watch` never lets that clock fire, so the
properties hold for output that arrives without such a pause inside a held block. Then:

- the verdict, the passthrough and the context tail do not depend on how the bytes already
  written are cut into reads (`test_the_verdict_does_not_depend_on_how_reads_cut_the_output`);
- when the agent writes piece by piece, an incident opened by a block head gets the same verdict
  as the whole output; any other incident is decided by what had been written when the agent was
  signalled, exactly as if those whole lines had been all the output (`test_the_verdict_...
  written_before_the_signal`).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import pprint
import re
import string
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from launch_watchdog import runner
from launch_watchdog.console import Console
from launch_watchdog.follow import FileFollower
from launch_watchdog.lines import MAX_LINE_BYTES, TRUNCATED
from launch_watchdog.output import READ_SIZE, AgentOutput
from launch_watchdog.redact import Redactor
from launch_watchdog.rules import load_rules
from launch_watchdog.runner import Settings, Watchdog
from launch_watchdog.scanner import Fired, Scanner
from tests.conftest import Agent
from tests.watchdog import agent_lines, fakes

RULES = load_rules()
BY_ID = {rule.id: rule for rule in RULES.rules}
TRANSCRIPTS = Path(__file__).parent / "transcripts"
PIPES = ("stdout", "stderr")
SOURCES = (*PIPES, "follow")
PIPE_BYTES = 1 << 20
"""Pipes are made this large, so the whole input fits in before the watchdog reads any of it."""
MAX_READS = 300
"""Reads are at least len(input) / MAX_READS long: a 64 KiB line read a byte at a time is slow, not interesting."""
COMMAND = ("wandb", "launch-agent", "-q", "vertex-ai-queue", "-e", "team-ml")

EXAMPLES = int(os.environ.get("WATCHDOG_PROPERTY_EXAMPLES", "100"))
"""Examples per property; raise it for a deeper search (the suite's budget is seconds)."""
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A failing example is printed in full (64 KiB lines included) and saved as a patch, made with
# libcst, whose import warns: neither warning may turn a property's failure into an internal error.
pytestmark = [
    pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"),
]


# -- the harness ------------------------------------------------------------------------------


class SizedReads(AgentOutput):
    """The runner's `AgentOutput`, each read of a pipe taking at most the next of `sizes` bytes."""

    sizes: Iterator[int] = iter(())

    def _read_raw(self, fd: int) -> bytes | None:
        try:
            return os.read(fd, next(self.sizes, READ_SIZE))
        except BlockingIOError:
            return None


class Capture(Console):
    """The watchdog's stdout and stderr, kept in order."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[str, str]] = []

    def out(self, text: str) -> None:
        self.written.append(("out", text))

    def err(self, text: str) -> None:
        self.written.append(("err", text))


@dataclass
class Watched:
    """What one watched run wrote, and how its incident went."""

    written: list[tuple[str, str]]
    """The watchdog's own stdout and stderr writes: events, the bailout block, reports."""
    echoed: dict[str, str]
    """The passthrough of each pipe."""
    context: list[str]
    opened_after: int | None
    """How many chunks had been written when the incident opened (None: none opened)."""
    trigger: str | None
    progress: tuple[bool, bool, str | None, list[str], list[str]]
    """How far the agent got (started, received, item claimed, CustomJobs), and the explain rules that matched."""
    events: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.events = [json.loads(text) for stream, text in self.written if stream == "out"]

    @property
    def verdict(self) -> list[dict[str, Any]]:
        """The bailouts reported: rule, category, trigger, every rule, the lines, the item."""
        keys = ("rule", "category", "trigger_rule", "rules", "lines", "item_id")
        return [{key: e[key] for key in keys} for e in self.events if e["event"] == "watchdog.bailout"]

    @property
    def texts(self) -> list[str]:
        """Everything the watchdog wrote, stream by stream."""
        return [
            "".join(text for stream, text in self.written if stream == "out"),
            "".join(text for stream, text in self.written if stream == "err"),
            *self.echoed.values(),
        ]


def _drain(output: AgentOutput) -> None:
    """What the runner's loop does while something is readable: read the ready pipes, poll files."""
    while ready := output.select(0):
        for fd in ready:
            output.read(fd)
    output.poll_files()


def watch(
    chunks: Sequence[tuple[str, bytes]],
    *,
    environ: Mapping[str, str] | None = None,
    read_sizes: Sequence[int] = (),
    written_first: bool = False,
    closing: Sequence[str] = PIPES,
) -> Watched:
    """Run a `Watchdog` over `chunks` (source, bytes), each written to its pipe or the followed file.

    `written_first`: every chunk is written before the watchdog reads anything (it then reads in
    `read_sizes`, cycled); else each chunk is written, then read completely, before the next.
    Then the pipes close, in the order `closing`.
    """
    console = Capture()
    with mock.patch.object(runner, "AgentOutput", SizedReads):
        dog = Watchdog(Settings(command=COMMAND), RULES, dict(environ or {}), console)
    output = dog.output
    assert isinstance(output, SizedReads)
    output.sizes = itertools.cycle(read_sizes) if read_sizes else iter(())
    dog.shutdown.group = fakes.Group()  # type: ignore[assignment]
    echoed: dict[str, list[str]] = {name: [] for name in PIPES}
    ends: dict[str, tuple[int, int]] = {}
    opened_after: int | None = None
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "follow.log"
        try:
            for name in PIPES:
                read_end, write_end = os.pipe()
                ends[name] = (read_end, write_end)
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
                os.set_blocking(read_end, False)
                output.add_pipe(name, read_end, echoed[name].append)
            output.add_file(FileFollower(log, from_end=False), "follow")
            for done, (source, data) in enumerate(chunks, 1):
                if source == "follow":
                    with log.open("ab") as f:
                        f.write(data)
                else:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(ends[source][1], view) :]
                if not written_first:
                    _drain(output)
                    if opened_after is None and dog.judge.incident is not None:
                        opened_after = done
            for name in closing:  # the agent is gone: its pipes close
                os.close(ends[name][1])
            _drain(output)
            if opened_after is None and dog.judge.incident is not None:
                opened_after = len(chunks)
            output.final_drain()
        finally:
            output.close()
            for read_end, write_end in ends.values():
                os.close(read_end)
                with contextlib.suppress(OSError):  # closed already, unless the test failed first
                    os.close(write_end)
    incident = dog.judge.incident
    return Watched(
        written=console.written,
        echoed={name: "".join(parts) for name, parts in echoed.items()},
        context=list(output.context),
        opened_after=opened_after,
        trigger=incident.fired[0].rule.id if incident is not None else None,
        progress=(
            dog.progress.started,
            dog.progress.received,
            dog.progress.item_id,
            sorted(dog.progress.submitted),
            sorted(dog.judge.hints),
        ),
    )


def cut(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    """`data` in consecutive pieces of the given sizes (cycled), at least len(data) / MAX_READS long."""
    smallest = len(data) // MAX_READS + 1
    pieces: list[bytes] = []
    at = 0
    for size in itertools.cycle(sizes):
        if at >= len(data):
            break
        step = max(size, smallest)
        pieces.append(data[at : at + step])
        at += step
    return pieces


def read_sizes(length: int, sizes: Sequence[int]) -> list[int]:
    """The read sizes that cut `length` bytes as `cut` does."""
    return [len(piece) for piece in cut(bytes(length), sizes)] or [1]


# -- what the agent writes --------------------------------------------------------------------


def _recorded() -> list[list[str]]:
    """The lines of every recorded transcript, one list per scenario and source, in order."""
    found: list[list[str]] = []
    for scenario in sorted(TRANSCRIPTS.iterdir()):
        timeline = scenario / "timeline.jsonl"
        if not timeline.exists():
            continue
        by_source: dict[str, list[str]] = {}
        for line in timeline.read_text().splitlines():
            if line:
                chunk = json.loads(line)
                source = "agent" if chunk["source"] in PIPES else chunk["source"]
                by_source.setdefault(source, []).append(chunk["text"])
        found.extend("".join(texts).splitlines(keepends=True) for texts in by_source.values())
    return found


RECORDED = _recorded()
EXCEPTIONS = (
    "google.api_core.exceptions.ResourceExhausted: 429 Quota exceeded for aiplatform.googleapis.com/"
    "custom_model_training_nvidia_h100_gpus",
    "google.api_core.exceptions.PermissionDenied: 403 Permission 'aiplatform.customJobs.create' denied",
    "google.api_core.exceptions.InvalidArgument: 400 List of found errors: 1.Field: job_spec",
    "google.api_core.exceptions.NotFound: 404 Artifact Registry repository not found",
    "ValueError: boom",
)
FIRING = tuple(text * agent_lines.TIMES.get(rule_id, 1) for rule_id, text in sorted(agent_lines.FIRING.items()))
ONCE = tuple(text for _, text in sorted(agent_lines.FIRING.items()))
"""One line of each rule: a windowed rule's lines may then come apart, among others and across reads."""
COUNTED = tuple(agent_lines.FIRING[rule.id] for rule in RULES.rules if rule.windowed)
CONTROLS = (
    "\r",
    "\r\n",
    "\n",
    "\x00",
    "\t",
    "\x1b",
    "\x1b[",
    "\x1b[31;",
    "\x1b[?",
    "\x1b[0m",
    "\x1b[1;31m",
    "\x1b[?25l",
    "\x1b[2K\r",
    "wandb: ",
    "wandb: ERROR ",
    "    ",
    "\xff",
)

recorded_lines = st.sampled_from(RECORDED).flatmap(
    lambda lines: st.tuples(st.integers(0, len(lines) - 1), st.integers(1, 40)).map(
        lambda span: "".join(lines[span[0] : span[0] + span[1]])
    )
)
rule_lines = st.one_of(
    st.sampled_from(FIRING),
    st.sampled_from(ONCE),
    st.sampled_from(COUNTED),
    st.sampled_from(EXCEPTIONS).map(agent_lines.job_error_traceback),
    st.sampled_from(EXCEPTIONS).map(agent_lines.chained_grpc_traceback),
    st.sampled_from(
        (
            agent_lines.payload("UnVuUXVldWVJdGVtOjQy"),
            agent_lines.RECEIVED,
            agent_lines.STATUS,
            agent_lines.SUBMITTED_LOG,
        )
    ),
)
noise_text = st.one_of(
    st.text(max_size=60),
    st.sampled_from(CONTROLS),
    st.text(max_size=40).map(lambda text: f"wandb: ERROR {text}\n"),
)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


agent_piece = st.one_of(recorded_lines, rule_lines, noise_text).map(_encode)
"""A piece of what the agent writes: recorded lines, lines that fire rules, noise."""
raw_piece = st.one_of(
    agent_piece,
    st.binary(max_size=80),
    st.integers(MAX_LINE_BYTES - 40, MAX_LINE_BYTES + 40).map(lambda n: b"y" * n),
)
"""The same, with arbitrary bytes and lines around the 64 KiB cap."""
agent_output = st.lists(agent_piece, max_size=14).map(b"".join)
sizes = st.lists(st.one_of(st.integers(1, 8), st.integers(1, 64), st.integers(1, 4096)), min_size=1, max_size=8)


# -- 1. arbitrary bytes -----------------------------------------------------------------------


@PROPERTY
@given(
    chunks=st.lists(st.tuples(st.sampled_from(SOURCES), st.lists(raw_piece, max_size=6).map(b"".join)), max_size=10),
    reads=sizes,
    written_first=st.booleans(),
    closing=st.permutations(PIPES),
)
def test_no_bytes_make_the_watchdog_raise(
    chunks: list[tuple[str, bytes]], reads: list[int], written_first: bool, closing: list[str]
) -> None:
    """Any bytes on either pipe or a followed file, in any reads: nothing raises, the output stays well-formed."""
    watched = watch(
        chunks,
        environ={"WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567", "DB_PASSWORD": "hunter22"},
        read_sizes=read_sizes(sum(len(data) for _, data in chunks), reads),
        written_first=written_first,
        closing=closing,
    )
    for text in watched.echoed.values():
        assert not text or text.endswith("\n")
        for line in text.split("\n"):
            assert len(line.encode()) <= MAX_LINE_BYTES * 3 + len(TRUNCATED)  # U+FFFD is 3 bytes
    for event in watched.events:  # one JSON object per write (json.loads in Watched)
        assert event["schema"] == "launch-supervisor/1"
    for verdict in watched.verdict:
        assert verdict["rule"] in BY_ID
        assert verdict["category"] in RULES.precedence


def test_a_shattered_line_still_fires() -> None:
    """The harness is live: a quota error read a byte at a time among escapes and bad bytes is a quota bailout."""
    data = b"\xff\xfe\r\x1b[1m" + agent_lines.FIRING["quota_exceeded"].encode() + b"\x00\n"
    watched = watch([("stderr", data)], read_sizes=[1], written_first=True)
    assert [v["category"] for v in watched.verdict] == ["quota"]
    assert watched.echoed["stderr"].startswith("\ufffd\ufffd\rgoogle.api_core")


def test_a_pipe_whose_end_was_read_ahead_is_not_read_again() -> None:
    """Regression: a pipe whose end a rule's read-ahead took is not read again (KeyError killed the watchdog)."""
    # select reports both pipes at their end; reading the first fires a rule, whose read-ahead
    # takes the second pipe's end too; the loop then goes on to read the second.
    output = AgentOutput(
        Scanner(RULES),
        Redactor({}),
        10,
        lambda finding, read_at: output.read_ahead() if isinstance(finding, Fired) else None,
        lambda: None,
    )
    fds = {name: os.pipe() for name in PIPES}
    echoed: list[str] = []
    try:
        for name, (read_end, _) in fds.items():
            os.set_blocking(read_end, False)
            output.add_pipe(name, read_end, echoed.append)
        os.write(fds["stderr"][1], agent_lines.QUEUES_MISSING.encode())
        for _, write_end in fds.values():
            os.close(write_end)
        assert sorted(output.select(0)) == sorted(read_end for read_end, _ in fds.values())
        assert output.read(fds["stderr"][0])
        assert not output.read(fds["stdout"][0])
        assert output.select(0) == []
    finally:
        output.close()
        for read_end, _ in fds.values():
            os.close(read_end)


# -- 2. the verdict does not depend on how the output is split --------------------------------


@PROPERTY
@given(data=agent_output, reads=sizes)
def test_the_verdict_does_not_depend_on_how_reads_cut_the_output(data: bytes, reads: list[int]) -> None:
    """All written before it is read: any read sizes give the verdict, passthrough and context of one read."""
    whole = watch([("stderr", data)], written_first=True)
    split = watch([("stderr", data)], read_sizes=read_sizes(len(data), reads), written_first=True)
    assert split.verdict == whole.verdict
    assert split.progress == whole.progress
    assert split.echoed == whole.echoed
    assert split.context == whole.context


@PROPERTY
@given(data=agent_output, writes=sizes)
def test_the_verdict_depends_only_on_what_was_written_before_the_signal(data: bytes, writes: list[int]) -> None:
    """Written in pieces: a held block's verdict is the whole output's, any other that of the lines then written."""
    pieces = cut(data, writes)
    spread = watch([("stderr", piece) for piece in pieces])
    whole = watch([("stderr", data)], written_first=True)
    assert spread.echoed == whole.echoed
    assert spread.progress == whole.progress
    assert spread.trigger == whole.trigger
    if spread.opened_after is None or BY_ID[spread.trigger or ""].block:
        assert spread.verdict == whole.verdict
        return
    written = sum(len(piece) for piece in pieces[: spread.opened_after])
    before_signal = data[: data.rfind(b"\n", 0, written) + 1]
    assert spread.verdict == watch([("stderr", before_signal)], written_first=True).verdict


def test_what_is_written_after_the_signal_is_not_in_the_verdict() -> None:
    """The property above can tell: written after the permission error was read, the quota error does not join it."""
    permission, quota = (agent_lines.FIRING[rule].encode() for rule in ("permission_denied", "quota_exceeded"))
    together = watch([("stderr", permission), ("stderr", quota)], written_first=True)
    apart = watch([("stderr", permission), ("stderr", quota)])
    assert [v["category"] for v in together.verdict] == ["quota"]
    assert [v["category"] for v in apart.verdict] == ["permission"]


# -- 3. redaction -----------------------------------------------------------------------------

HEX = "0123456789abcdef"
ALNUM = string.ascii_letters + string.digits
SIGNS = "!#$%&*+=?@^~"
PASSWORD_CHARS = ALNUM + SIGNS + "-._äöüéß€"
secret_shapes = st.one_of(
    st.tuples(st.just("WANDB_API_KEY"), st.text(HEX, min_size=40, max_size=40)),
    st.tuples(st.just("WANDB_API_KEY"), st.text(HEX, min_size=40, max_size=40).map("local-".__add__)),
    st.tuples(st.just("HF_TOKEN"), st.text(ALNUM, min_size=34, max_size=34).map("hf_".__add__)),
    st.tuples(st.just("GITHUB_TOKEN"), st.text(ALNUM, min_size=36, max_size=36).map("ghp_".__add__)),
    st.tuples(st.just("GOOGLE_OAUTH_TOKEN"), st.text(ALNUM + "-_", min_size=60, max_size=120).map("ya29.".__add__)),
    st.tuples(st.just("AWS_SECRET_ACCESS_KEY"), st.text(ALNUM + "/+", min_size=40, max_size=40)),
    st.tuples(
        st.sampled_from(("DB_PASSWORD", "MY_SERVICE_SECRET", "SMTP_PASSWORD")),
        st.text(PASSWORD_CHARS, min_size=6, max_size=32).filter(
            lambda p: any(c.isdigit() for c in p) and any(c in SIGNS for c in p)
        ),
    ),
)
"""(variable, value): W&B keys (40 hex, or local-...), Hugging Face, GitHub and OAuth tokens, AWS
keys and passwords (with a digit and a sign, so that no text of the watchdog's own contains one)."""
RANDOM = frozenset(
    {"WANDB_API_KEY", "HF_TOKEN", "GITHUB_TOKEN", "GOOGLE_OAUTH_TOKEN", "AWS_SECRET_ACCESS_KEY", "shape", "private-key"}
)
"""Secrets too random to occur in other text: no long piece of them may be written either."""
BASE64 = ALNUM + "+/"
shaped = st.one_of(
    st.text(ALNUM, min_size=34, max_size=34).map(lambda t: (f"token=hf_{t}\n", f"hf_{t}")),
    st.text(ALNUM + "-_", min_size=60, max_size=120).map(lambda t: (f"{{'access_token': 'ya29.{t}'}}\n", f"ya29.{t}")),
    st.text(ALNUM + "._~+/-", min_size=24, max_size=80).map(lambda t: (f"Authorization: Bearer {t}\n", t)),
    st.text(ALNUM + "._~+/-", min_size=24, max_size=80).map(lambda t: (f"{{'HTTP_AUTHORIZATION': 'Bearer {t}'}}\n", t)),
    st.text(BASE64, min_size=24, max_size=80).map(lambda t: (f"headers={{'authorization': 'Basic {t}'}}\n", t)),
)
"""(line, credential): credentials the watchdog is not told about but knows by their shape."""


def _pem(body: list[str]) -> str:
    return "-----BEGIN PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END PRIVATE KEY-----\n"


private_keys = st.lists(st.text(BASE64, min_size=64, max_size=64), min_size=1, max_size=4).flatmap(
    lambda body: st.sampled_from(((_pem(body), body), (json.dumps({"private_key": _pem(body)}) + "\n", body)))
)
"""(text, body lines): a PEM private key as it is, or JSON-escaped on one line (a service account file)."""


def received_job(key: str) -> str:
    """What wandb 0.31's agent prints on taking a job whose CustomJob env sets WANDB_API_KEY to `key`:
    `termlog(f"launch: Launch agent received job:\\n{pprint.pformat(job)}\\n")`, each line prefixed."""
    container = {
        "args": ["--epochs", "3"],
        "env": [{"name": "WANDB_API_KEY", "value": key}, {"name": "WANDB_PROJECT", "value": "sandbox"}],
        "image_uri": "us-docker.pkg.dev/sandbox-project/trainers/train:v1",
    }
    pool = {
        "container_spec": container,
        "machine_spec": {
            "accelerator_count": 8,
            "accelerator_type": "NVIDIA_H100_80GB",
            "machine_type": "a3-highgpu-8g",
        },
        "replica_count": 1,
    }
    job = {
        "runQueueItemId": "UnVuUXVldWVJdGVtOjE=",
        "runSpec": {
            "_wandb_api_key": "<redacted>",
            "docker": {"docker_image": "us-docker.pkg.dev/sandbox-project/trainers/train:v1"},
            "entity": "sandbox-team",
            "overrides": {"run_config": {"MAX_TRAIN_SAMPLES": "500", "lr": 0.0003}},
            "project": "sandbox",
            "resource": "gcp-vertex",
            "resource_args": {
                "vertex": {
                    "run": {"service_account": "trainer@sandbox-project.iam.gserviceaccount.com"},
                    "spec": {"staging_bucket": "gs://sandbox-project-staging", "worker_pool_specs": [pool]},
                }
            },
        },
    }
    message = f"launch: Launch agent received job:\n{pprint.pformat(job)}\n"
    return "".join(f"wandb: {line}\n" for line in message.split("\n"))


def cli_log_record(printed: str) -> str:
    """The same message as the agent's CLI log holds it: one record, one timestamp, colour kept."""
    message = printed.replace("wandb: ", "").replace("launch:", "\x1b[35mlaunch:\x1b[0m", 1)
    return f"2026-12-01 15:16:29 INFO {message}"


def _inserted(line: str, at: int, text: str) -> str:
    """`text` put into `line` at `at`, or just before its newline."""
    at = min(at, len(line) - 1)
    return line[:at] + text + line[at:]


def _around(text: str) -> st.SearchStrategy[str]:
    """`text` inside a line of noise, a recorded line or a line that fires a rule."""
    return st.one_of(
        st.tuples(st.text(max_size=30), st.text(max_size=30)).map(lambda s: s[0] + text + s[1]),
        st.tuples(st.sampled_from(FIRING), st.integers(0, 200)).map(lambda f: _inserted(f[0], f[1], text)),
        st.just(agent_lines.job_error_traceback(f"ValueError: bad credentials {text}")),
        st.tuples(st.sampled_from(CONTROLS), st.sampled_from(CONTROLS)).map(lambda c: c[0] + text + c[1]),
        st.integers(0, len(text)).map(lambda i: f"{text[:i]}\x1b[0m{text[i:]}\n"),
        st.just(f"Authorization: Bearer {text}\n"),
        st.just(received_job(text)),
    )


def _secret_pieces(secrets: list[tuple[str, str]]) -> st.SearchStrategy[bytes]:
    values = st.sampled_from([value for _, value in secrets])
    named = st.sampled_from(secrets)
    return st.one_of(
        values.flatmap(_around).map(_encode),
        named.map(lambda s: f"{s[0]}={s[1]}\n{{'{s[0]}': '{s[1]}'}}\n{json.dumps({s[0]: s[1]})}\n".encode()),
        values.flatmap(  # a line over the cap, cut anywhere in the value
            lambda value: st.integers(0, len(value.encode())).map(
                lambda k: b"\n" + b"y" * (MAX_LINE_BYTES - k) + value.encode() + b" tail\n"
            )
        ),
    )


def _pieces(text: str, size: int = 10) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def _apart(values: list[str]) -> bool:
    """No value holds a piece of another: drawn credentials never do, shrunk ones (all zeros) may."""
    pieces = [_pieces(value) for value in values]
    return all(not (a & b) for a, b in itertools.combinations(pieces, 2)) and len(set(values)) == len(values)


Case = tuple[dict[str, str], list[tuple[str, str]], dict[str, bytes], list[tuple[str, bytes]]]


@st.composite
def redaction_cases(draw: st.DrawFn) -> Case:
    """Secrets in the environment, and credentials known by their shape; what each source writes,
    all of them among noise; that cut into chunks, interleaved across the sources.

    Returns (environment, every (kind, secret) to look for, what each source wrote, the chunks).
    """
    secrets = draw(st.lists(secret_shapes, min_size=1, max_size=3, unique_by=lambda s: s[0]))
    shapes = draw(st.lists(shaped, max_size=2))
    keys = draw(st.lists(private_keys, max_size=1))
    checked = [*secrets, *(("shape", credential) for _, credential in shapes)]
    checked.extend(("private-key", line) for _, body in keys for line in body)
    assume(_apart([value for _, value in checked]))
    known = [text for text, _ in [*shapes, *keys]] or [""]
    pieces = st.one_of(agent_piece, _secret_pieces(secrets), st.sampled_from(known).map(_encode))
    streams = {source: b"".join(draw(st.lists(pieces, max_size=6))) for source in SOURCES}
    # Credentials known only by their shape are credentials only in it: none in the noise.
    noise = "".join(data.decode("utf-8", "replace") for data in streams.values())
    for text in known:
        noise = noise.replace(text, "")
    assume(not any(_pieces(value) & _pieces(noise) for kind, value in checked if kind in ("shape", "private-key")))
    chunks = {source: cut(data, draw(sizes)) for source, data in streams.items()}
    order = draw(st.permutations([source for source, pieces in chunks.items() for _ in pieces]))
    taken = {source: iter(pieces) for source, pieces in chunks.items()}
    return dict(secrets), checked, streams, [(source, next(taken[source])) for source in order]


def _strings(value: Any) -> Iterator[str]:
    """Every string in a decoded JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def leaks(watched: Watched, secrets: Sequence[tuple[str, str]], written: str) -> list[str]:
    """Secrets, or long pieces of the random ones, in anything the watchdog wrote; `written` is what
    the agent wrote, decoded: a piece found there outside every secret does not count."""
    found: list[str] = []
    texts = [*watched.texts, *(s for event in watched.events for s in _strings(event))]
    elsewhere = written
    for _, other in sorted(secrets, key=lambda secret: -len(secret[1])):
        elsewhere = elsewhere.replace(other, "\x00")
    for kind, value in secrets:
        found.extend(f"{kind} in {text!r}" for text in texts if value in text)
        if kind not in RANDOM:
            continue
        size = len(value) // 2
        for start in range(len(value) - size + 1):
            piece = value[start : start + size]
            if piece not in elsewhere:
                found.extend(f"{kind}[{start}:{start + size}] in {text!r}" for text in texts if piece in text)
    return found


@PROPERTY
@given(case=redaction_cases(), reads=sizes, written_first=st.booleans())
def test_no_secret_is_ever_written(case: Case, reads: list[int], written_first: bool) -> None:
    """Secrets anywhere in what any source writes, in any reads: none reaches the passthrough, block or events."""
    environ, secrets, streams, chunks = case
    total = sum(len(data) for data in streams.values())
    watched = watch(chunks, environ=environ, read_sizes=read_sizes(total, reads), written_first=written_first)
    written = "\n".join(data.decode("utf-8", "replace") for data in streams.values())
    assert leaks(watched, secrets, written) == []


def test_the_redaction_property_can_tell() -> None:
    """`leaks` sees a secret the watchdog was not told about, and a long piece of a random one."""
    key = "0123456789abcdef0123456789abcdef01234567"
    watched = watch([("stderr", f"key {key}\n{agent_lines.FIRING['quota_exceeded']}".encode())])
    assert leaks(watched, [("WANDB_API_KEY", key)], "") != []
    assert leaks(watched, [("WANDB_API_KEY", "x" + key[:20] + "y" * 19)], "") != []
    assert leaks(watched, [("WANDB_API_KEY", "x" + key[:20] + "y" * 19)], key) == []


def test_a_secret_cut_by_the_line_cap_is_redacted() -> None:
    """Regression: a line over 64 KiB cut inside a secret wrote the secret's first part unredacted."""
    key = "0123456789abcdef0123456789abcdef01234567"
    line = b"y" * (MAX_LINE_BYTES - 30) + key.encode() + b" tail\n"
    watched = watch([("stderr", line)], environ={"WANDB_API_KEY": key})
    assert watched.echoed["stderr"] == "y" * (MAX_LINE_BYTES - 30) + "[REDACTED:WANDB_API_KEY]" + TRUNCATED + "\n"
    cut_in_a_character = Redactor({"DB_PASSWORD": "pässwörd1"}).redact("x" * 9 + "pä\ufffd" + TRUNCATED)
    assert cut_in_a_character == "x" * 9 + "[REDACTED:DB_PASSWORD]" + TRUNCATED


def test_a_secret_right_after_an_escape_keeps_its_first_letter() -> None:
    """Regression: `ESC [` then a secret lost the secret's first letter with the escape, and the rest went out."""
    key = "f0123456789abcdef0123456789abcdef0123456"
    watched = watch([("stderr", f"\x1b[{key}\n\x1b[1m{key[:9]}\x1b[0m{key[9:]}\n".encode())], environ={"MY_KEY": key})
    assert watched.echoed["stderr"] == "\x1b[[REDACTED:MY_KEY]\n[REDACTED:MY_KEY]\n"


def test_an_authorization_header_after_a_word_character_is_redacted() -> None:
    """Regression: the header's shape wanted a word boundary before it, so HTTP_AUTHORIZATION (WSGI) went out whole."""
    out = Redactor({}).redact("{'HTTP_AUTHORIZATION': 'Bearer abc.def-123'} 0Authorization: Basic YXBpOmtleQ==")
    redacted = "[REDACTED:authorization]"
    assert out == f"{{'HTTP_AUTHORIZATION': 'Bearer {redacted}'}} 0Authorization: Basic {redacted}"


# -- 4. the job payload's CustomJob env --------------------------------------------------------

JOB_KEY = "9f4c1e7ab2d86035e1f7c4a9b03d5e2f6a8c1b7d"
"""A real-looking W&B API key: 40 hex digits."""


@PROPERTY
@given(writes=sizes)
def test_the_key_in_the_received_jobs_env_is_redacted(writes: list[int]) -> None:
    """The job's CustomJob env holds the watchdog's WANDB_API_KEY: passthrough, block and events carry it redacted."""
    # The agent prints the job on stderr and logs it to its CLI log, then fails to create the job.
    payload = received_job(JOB_KEY)
    assert re.search(rf"^wandb: +'value': '{JOB_KEY}'}},$", payload, re.M)  # pprint: the value on a line of its own
    failure = agent_lines.job_error_traceback(EXCEPTIONS[0])
    stderr = (payload + "INFO google.cloud.aiplatform.jobs: Creating CustomJob\n" + failure).encode()
    chunks = [("stderr", piece) for piece in cut(stderr, writes)] + [("follow", cli_log_record(payload).encode())]
    watched = watch(chunks, environ={"WANDB_API_KEY": JOB_KEY})
    assert [(v["category"], v["item_id"]) for v in watched.verdict] == [("quota", "UnVuUXVldWVJdGVtOjE=")]
    assert leaks(watched, [("WANDB_API_KEY", JOB_KEY)], "") == []
    assert "'value': '[REDACTED:WANDB_API_KEY]'}," in watched.echoed["stderr"]
    block = "".join(text for stream, text in watched.written if stream == "err")
    assert "'value': '[REDACTED:WANDB_API_KEY]'}," in block  # among the agent's last lines


def test_the_real_watchdog_writes_no_secret(agent: Agent) -> None:
    """The installed launch-watchdog with secrets in its environment and its agent's output writes none of them."""
    environ = {"WANDB_API_KEY": JOB_KEY, "HF_TOKEN": "hf_Zq8rT2mX9vB4nL6kP1wY3cJ5", "DB_PASSWORD": "s3cr3t#pw!"}
    payload = received_job(JOB_KEY)
    steps: list[dict[str, Any]] = [
        {"err": payload},
        {"log": "debug-cli.root.log", "text": cli_log_record(payload)},
        {"out": f"token {environ['HF_TOKEN']} password {environ['DB_PASSWORD']}\n"},
        {"err": f"\x1b[31m{JOB_KEY[:10]}\x1b[0m{JOB_KEY[10:]}\n"},
        {"err": agent_lines.job_error_traceback(f"{EXCEPTIONS[0]} (key {JOB_KEY})")},
        {"sleep": 1.0},
    ]
    run = agent.run(steps, args=["--grace", "2", "--idle-timeout", "30"], env=environ)
    assert run.code == 1, run.stderr
    assert run.event("watchdog.bailout")["category"] == "quota"
    for name, value in environ.items():
        assert value not in run.stdout, name
        assert value not in run.stderr, name
        for event in run.events:
            assert not any(value in text for text in _strings(event)), name
    assert "'value': '[REDACTED:WANDB_API_KEY]'}," in run.stderr


def test_a_key_the_watchdog_was_not_given_is_redacted_from_the_job() -> None:
    """Another W&B key in the job's CustomJob env (say a queue config's own) is not written either."""
    other = "1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c"
    watched = watch([("stderr", received_job(other).encode())], environ={"WANDB_API_KEY": JOB_KEY})
    assert leaks(watched, [("WANDB_API_KEY", other)], "") == []
