"""The incident logic over the scanner: which rules make a verdict and when it is final.

These drive the same `Judge` the watchdog uses, line by line, without processes: a verdict must
depend on what the agent wrote, never on how its writes were split into reads.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from launch_watchdog.incident import Judge, Step, Verdict
from launch_watchdog.lines import LineBuffer
from launch_watchdog.rules import RuleSet, load_rules
from launch_watchdog.scanner import BlockEnded, Fired, Scanner
from tests.watchdog import agent_lines

RULES = load_rules()
INVALID_ARGUMENT = "google.api_core.exceptions.InvalidArgument: 400 List of found errors: 1.Field: machine_type"
STATUS = agent_lines.STATUS


def judge_chunks(
    chunks: list[bytes], stream: str = "stderr", rules: RuleSet = RULES
) -> tuple[Verdict | None, list[Step]]:
    """Feed `chunks` as successive reads of one stream, then its end; the verdict and the steps taken.

    As in the watchdog, an incident decided at once takes in what has been read with it (the rest
    of the read; the watchdog also drains what is already waiting) and then closes.
    """
    scanner, judge, buffer = Scanner(rules), Judge(rules), LineBuffer()
    state = scanner.stream(stream)
    steps: list[Step] = []

    def handle(text: str) -> None:
        for finding in scanner.feed(state, text):
            if isinstance(finding, Fired):
                steps.append(judge.fired(finding, may_open=True, at=0.0))
            elif isinstance(finding, BlockEnded):
                steps.append(judge.block_ended(finding))
        if Step.STOP_NOW in steps:
            judge.close()

    for chunk in chunks:
        handle(buffer.feed(chunk))
    handle(buffer.flush())
    ended = scanner.end_block(state, "end")
    if ended is not None:
        steps.append(judge.block_ended(ended))
    judge.close()
    return (judge.verdict() if judge.incident is not None else None), [s for s in steps if s is not Step.NONE]


def category(text: str, stream: str = "stderr") -> str | None:
    verdict, _ = judge_chunks([text.encode()], stream)
    return None if verdict is None else verdict.category


BLOCK_THEN_STATUS = agent_lines.chained_grpc_traceback(f"wandb: ERROR {INVALID_ARGUMENT}") + STATUS


def test_a_block_split_at_every_byte_gives_one_verdict() -> None:
    """`Error running job:` + a chained traceback, split in two at every byte: always invalid_spec."""
    data = BLOCK_THEN_STATUS.encode()
    whole, _ = judge_chunks([data])
    assert whole is not None
    assert (whole.rule, whole.category, whole.trigger) == ("invalid_argument", "invalid_spec", "launch_job_error")
    for cut in range(1, len(data)):
        assert judge_chunks([data[:cut], data[cut:]])[0] == whole, cut


def test_a_block_in_random_chunkings_gives_one_verdict() -> None:
    """The same transcript read one byte at a time, line by line, or in random pieces: one verdict."""
    data = BLOCK_THEN_STATUS.encode()
    whole, _ = judge_chunks([data])
    bytewise = [data[i : i + 1] for i in range(len(data))]
    linewise = [line.encode() for line in BLOCK_THEN_STATUS.splitlines(keepends=True)]
    assert judge_chunks(bytewise)[0] == whole
    assert judge_chunks(linewise)[0] == whole
    rng = random.Random(7)  # noqa: S311 - reproducible chunkings, not secrets
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 12)))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert judge_chunks(chunks)[0] == whole, cuts


def test_without_the_block_the_verdict_would_depend_on_the_reads(tmp_path: Path) -> None:
    """The same transcript with `launch_job_error` not a block rule: the split decides (the old bug)."""
    override = tmp_path / "rules.toml"
    override.write_text("[[rules]]\nid = 'launch_job_error'\nblock = false\n")
    rules = load_rules(override)
    data = BLOCK_THEN_STATUS.encode()
    head = data.index(b"\n") + 1
    assert judge_chunks([data], rules=rules)[0].category == "invalid_spec"  # type: ignore[union-attr]
    assert judge_chunks([data[:head], data[head:]], rules=rules)[0].category == "crash"  # type: ignore[union-attr]


def test_the_block_holds_until_it_ends() -> None:
    """The head holds the incident; the first line that does not continue the block decides it."""
    verdict, steps = judge_chunks([BLOCK_THEN_STATUS.encode()])
    assert steps == [Step.HOLD, Step.DECIDED]
    assert verdict is not None
    assert verdict.rules == ("invalid_argument", "launch_job_error", "unhandled_exception")
    assert "wandb: launch: agent" not in " ".join(line.text for line in verdict.lines)


def test_lines_after_the_block_never_join() -> None:
    """A more specific error after the block's end is not part of its verdict."""
    text = agent_lines.job_error_traceback("RuntimeError: boom") + STATUS + agent_lines.FIRING["quota_exceeded"]
    verdict, _ = judge_chunks([text.encode()])
    assert verdict is not None
    assert verdict.category == "crash"
    assert "quota_exceeded" not in verdict.rules


def test_end_of_stream_ends_the_block() -> None:
    """With nothing after it, the block ends with its stream (or, in the watchdog, a quiet gap)."""
    text = agent_lines.job_error_traceback("google.api_core.exceptions.PermissionDenied: 403 denied")
    verdict, steps = judge_chunks([text.encode()])
    assert steps == [Step.HOLD, Step.DECIDED]
    assert verdict is not None
    assert verdict.category == "permission"


def test_a_block_head_that_is_also_specific_still_waits() -> None:
    """A head line that another rule also matches holds all the same (block rules run first)."""
    verdict, steps = judge_chunks([agent_lines.FIRING["machine_type_unsupported"].encode() + STATUS.encode()])
    assert steps[0] is Step.HOLD
    assert verdict is not None
    assert (verdict.category, verdict.trigger) == ("invalid_spec", "launch_job_error")


def test_an_ordinary_rule_decides_at_once() -> None:
    """A single fatal line needs no block: the incident is decided at that line."""
    _, steps = judge_chunks([agent_lines.FIRING["quota_exceeded"].encode()])
    assert steps == [Step.STOP_NOW]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (agent_lines.NO_GCP_CREDENTIALS, "permission"),
        (
            "wandb: ERROR launch: Error running job: Failed to create Vertex job: "
            "google.auth.exceptions.DefaultCredentialsError: Your default credentials were not found.\n",
            "permission",
        ),
        (agent_lines.GCP_UNAVAILABLE, "network"),
        ("Traceback (most recent call last):\n  File x\n" + agent_lines.GCP_UNAVAILABLE, "network"),
        (
            agent_lines.job_error_traceback(
                "google.api_core.exceptions.ServiceUnavailable: 503 DNS resolution failed for "
                "us-central1-aiplatform.googleapis.com"
            ),
            "network",
        ),
        ("requests.exceptions.ConnectionError: [Errno -2] Name or service not known\n", "network"),
        (agent_lines.job_error_traceback(INVALID_ARGUMENT), "invalid_spec"),
        (agent_lines.QUEUES_MISSING, "not_found"),
        (agent_lines.CREDENTIALS_REJECTED, "permission"),
        (agent_lines.CREDENTIALS_DENIED, "permission"),
        (agent_lines.CREDENTIALS_REJECTED_OLD_SDK, "permission"),
        ("wandb: ERROR Error while calling W&B API: permission denied (<Response [401]>)\n", "permission"),
        ("Error: Failed to verify credentials with https://api.wandb.ai: 401 Unauthorized\n", "permission"),
        (agent_lines.WANDB_UNREACHABLE, "network"),
    ],
)
def test_categories_of_real_failures(text: str, expected: str) -> None:
    """What wandb 0.31 and the Google clients print, classed as what it is."""
    assert category(text) == expected


def test_an_explain_rule_never_opens_an_incident() -> None:
    """wandb-core retrying is a hint, kept for an ending that needs explaining."""
    scanner, judge = Scanner(RULES), Judge(RULES)
    state = scanner.stream("core-debug-20261128_100000.log")
    steps = [judge.fired(f, True, 0.0) for f in scanner.feed(state, agent_lines.CORE_RETRYING) if isinstance(f, Fired)]
    assert steps == [Step.NONE]
    assert judge.incident is None
    explained = judge.explain("agent_start_timeout")
    assert (explained.rule, explained.category) == ("agent_start_timeout", "network")
    assert explained.rules == ("wandb_connection_failing",)
    assert explained.lines[0].source == "core-debug-20261128_100000.log"


def test_without_hints_the_fallback_explains() -> None:
    """Nothing said why: the fallback's category (`timeout` for a start that never happened)."""
    judge = Judge(RULES)
    assert judge.explain("agent_start_timeout").category == "timeout"
    exited = judge.explain("agent_exit")
    assert (exited.rule, exited.category, exited.lines) == ("agent_exit", "crash", ())


def test_no_incident_when_the_outcome_is_decided() -> None:
    """A stop rule after another outcome (say, submitted) opens nothing."""
    scanner, judge = Scanner(RULES), Judge(RULES)
    state = scanner.stream("stderr")
    fired = [f for f in scanner.feed(state, agent_lines.FIRING["quota_exceeded"]) if isinstance(f, Fired)]
    assert judge.fired(fired[0], may_open=False, at=0.0) is Step.NONE
    assert judge.incident is None
