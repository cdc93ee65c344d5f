"""The rule engine alone: what fires, what never fires, windows, two-line rules, the payload."""

from __future__ import annotations

import pytest

from launch_watchdog.rules import load_rules
from launch_watchdog.scanner import BlockEnded, Claimed, Finding, Fired, Received, Scanner, Started, Submitted
from tests.watchdog import agent_lines


def scan(*blocks: str, stream: str = "stderr") -> list[Finding]:
    scanner = Scanner(load_rules())
    state = scanner.stream(stream)
    found: list[Finding] = []
    for block in blocks:
        found.extend(scanner.feed(state, block))
    return found


def fired(found: list[Finding]) -> list[str]:
    return [f.rule.id for f in found if isinstance(f, Fired)]


@pytest.mark.parametrize("rule_id", sorted(agent_lines.FIRING))
def test_every_rule_fires_on_its_line(rule_id: str) -> None:
    """Each rule of the default set fires on a line the real agent or Google client prints."""
    text = agent_lines.FIRING[rule_id] * agent_lines.TIMES.get(rule_id, 1)
    stream = "stdout" if rule_id == "queue_pop_error" else "stderr"
    assert rule_id in fired(scan(text, stream=stream))


@pytest.mark.parametrize("rule_id", sorted(agent_lines.FIRING))
def test_no_rule_fires_inside_the_payload(rule_id: str) -> None:
    """The pprinted job payload holds user config: a firing line inside it is ignored."""
    inner = agent_lines.FIRING[rule_id].strip().replace("'", '"').replace("\n", "\\n")  # as pprint escapes
    extra = ",\n" + "".join(f"wandb:                                           'k{i}': '{inner}',\n" for i in range(3))
    extra += "wandb:                                           'end': 1"
    found = scan(agent_lines.payload("UnVuUXVldWVJdGVtOjE=", extra))
    assert fired(found) == []
    assert [type(f) for f in found] == [Received, Claimed]


def test_payload_in_the_debug_log_form_is_skipped_too() -> None:
    """In the CLI log file the payload has no `wandb:` prefix and ends with a blank line."""
    block = (
        "2026-11-28 10:00:00 INFO launch: Launch agent received job:\n"
        "{'runQueueItemId': 'abc',\n"
        " 'runSpec': {'note': 'PermissionDenied: 403 was fixed last week'}}\n"
        "\n"
        "2026-11-28 10:00:01 INFO next record\n"
    )
    found = scan(block, stream="debug-cli.root.log")
    assert fired(found) == []
    assert any(isinstance(f, Claimed) and f.item_id == "abc" for f in found)


def test_rules_resume_after_the_payload() -> None:
    """The line right after the payload is scanned normally."""
    found = scan(agent_lines.payload("x") + agent_lines.FIRING["permission_denied"])
    assert fired(found) == ["permission_denied"]


def test_payload_that_never_closes_ends_at_a_non_continuation_line() -> None:
    """A payload cut short (no closing brace) ends at the first line that is not indented."""
    block = agent_lines.RECEIVED + "wandb: {'runQueueItemId': 'x',\nwandb:  'runSpec': {\n"
    found = scan(block, agent_lines.FIRING["quota_exceeded"])
    assert fired(found) == ["quota_exceeded"]


@pytest.mark.parametrize(
    "line",
    [
        "wandb:                                           'MAX_TRAIN_SAMPLES': '500',\n",
        "MAX_TRAIN_SAMPLES: 500\n",
        '127.0.0.1 - - [28/Nov/2026 10:00:00] "POST /graphql HTTP/1.1" 503 -\n',
        "wandb: launch: agent abc polling on queues q, running 0 out of a maximum of 1 jobs\n",
        "Job state: FAILED\n",  # once is not repeated
        "wandb: WARNING Failed to fetch optional metadata\n",
        "Exception: Could not pop from queue\n",  # once is not a pattern of pop errors
        "Traceback (most recent call last):\n",  # a header alone is not a crash
    ],
)
def test_lines_that_must_not_fire(line: str) -> None:
    """Bare numbers, HTTP access logs and single occurrences of windowed patterns never fire."""
    assert fired(scan(line)) == []


def test_repeated_failures_counts_within_fifty_lines_only() -> None:
    """Three FAILED lines fire within 50 lines of the stream, not when spread wider."""
    filler = "progress\n" * 30
    spread = "Job state: FAILED\n" + filler + "Job state: FAILED\n" + filler + "Job state: FAILED\n"
    assert fired(scan(spread)) == []
    close = "Job state: FAILED\n" + "x\n" * 10 + "FATAL: stop\n" + "x\n" * 10 + "FAILURE again\n"
    found = scan(close)
    assert fired(found) == ["repeated_failures"]
    rule_fired = next(f for f in found if isinstance(f, Fired))
    assert [line.number for line in rule_fired.lines] == [1, 12, 23]


def test_queue_pop_error_counts_across_the_whole_run() -> None:
    """Three pop failures fire however far apart they are."""
    pop = "Exception: Could not pop from queue\n"
    found = scan(pop, "ok\n" * 500, pop, "ok\n" * 500, pop, stream="stdout")
    assert fired(found) == ["queue_pop_error"]


def test_unhandled_exception_needs_the_exception_line_in_time() -> None:
    """Traceback then `…Error:` fires; KeyboardInterrupt or a too-distant line does not."""
    assert fired(scan("Traceback (most recent call last):\n  File x\nValueError: bad\n")) == ["unhandled_exception"]
    assert fired(scan("Traceback (most recent call last):\n  File x\nKeyboardInterrupt\n")) == []
    far = "Traceback (most recent call last):\n" + "  frame\n" * 250 + "ValueError: late\n"
    assert fired(scan(far)) == []


def test_streams_keep_their_own_state() -> None:
    """A traceback header on stderr is not completed by an exception line on stdout."""
    scanner = Scanner(load_rules())
    err, out = scanner.stream("stderr"), scanner.stream("stdout")
    assert list(scanner.feed(err, "Traceback (most recent call last):\n")) == []
    assert fired(list(scanner.feed(out, "ValueError: elsewhere\n"))) == []
    assert fired(list(scanner.feed(err, "ValueError: here\n"))) == ["unhandled_exception"]


def test_job_error_followed_by_permission_fires_both() -> None:
    """The incident line and the more specific one after it both fire, in order."""
    found = scan(agent_lines.job_error_traceback("google.api_core.exceptions.PermissionDenied: 403 denied"))
    assert fired(found) == ["launch_job_error", "permission_denied"]


def test_submitted_and_numbering() -> None:
    """The CustomJob line yields its resource name; lines are numbered across streams."""
    scanner = Scanner(load_rules())
    a, b = scanner.stream("stderr"), scanner.stream("debug-cli.root.log")
    list(scanner.feed(a, "one\ntwo\n"))
    found = list(scanner.feed(b, agent_lines.SUBMITTED_LOG))
    assert found == [Submitted(agent_lines.SUBMITTED_RESOURCE, found[0].line)]  # type: ignore[union-attr]
    assert found[0].line.number == 3  # type: ignore[union-attr]


def test_ignore_case_rules_keep_their_flag_in_the_prefilter(tmp_path: object) -> None:
    """A case-insensitive extra rule is found by the block prefilter too."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "r.toml"
    path.write_text("[[rules]]\nid = 'oom'\ncategory = 'crash'\npattern = 'oomkilled'\nignore_case = true\n")
    scanner = Scanner(load_rules(path))
    assert fired(list(scanner.feed(scanner.stream("s"), "pod OOMKilled\n"))) == ["oom"]


HANDLED = (
    "2026-11-28 10:00:02,000 ERROR   MainThread:1 [wandb_run.py:_on_stop():900] RunStoppedStatus query failed\n"
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.11/site-packages/wandb/sdk/wandb_run.py", line 250, in check_stop_status\n'
    "wandb.errors.errors.CommError: failed to query RunStoppedStatus: 502 Bad Gateway\n"
    "google.api_core.exceptions.PermissionDenied: 403 caller lacks permission (handled)\n"
)
"""A handled exception as wandb logs it in a run's debug.log: a full traceback, never a crash."""


@pytest.mark.parametrize("name", ["debug.log", "debug-internal.log", "debug-core.log"])
def test_run_logs_hold_handled_errors_and_fire_nothing(name: str) -> None:
    """Tracebacks and exception lines in the run logs are errors wandb handled: no rule fires."""
    assert fired(scan(HANDLED, stream=name)) == []


def test_the_same_traceback_on_stderr_is_a_crash() -> None:
    """On the agent's stderr the same lines are an uncaught exception (and a 403)."""
    assert fired(scan(HANDLED, stream="stderr")) == ["unhandled_exception", "permission_denied"]


def test_the_cli_log_is_read_for_fatal_errors_but_not_for_handled_ones() -> None:
    """debug-cli.<user>.log: the start-up errors the CLI exits with fire, a handled traceback does not
    (wandb logs it there as well as in debug.log); the success line is found."""
    cli = "debug-cli.root.log"
    assert fired(scan(HANDLED, stream=cli)) == []
    assert fired(scan("wandb.errors.errors.CommError: " + agent_lines.QUEUES_MISSING, stream=cli)) == [
        "queue_not_found"
    ]
    assert [type(f) for f in scan(agent_lines.SUBMITTED_LOG, stream=cli)] == [Submitted]


def test_wandb_core_log_only_gives_hints() -> None:
    """wandb-core's log feeds the explain rule only, however alarming its lines."""
    found = scan(agent_lines.CORE_RETRYING + agent_lines.FIRING["quota_exceeded"], stream="core-debug-1.log")
    assert fired(found) == ["wandb_connection_failing"]
    assert not next(f for f in found if isinstance(f, Fired)).rule.stops


def test_explicit_kind_wins_over_the_name() -> None:
    """A --follow file called debug.log is a followed file, read by the default rules."""
    scanner = Scanner(load_rules())
    stream = scanner.stream("debug.log", kind="follow")
    assert fired(list(scanner.feed(stream, HANDLED))) == ["unhandled_exception", "permission_denied"]


def test_polling_line_means_started() -> None:
    """The agent's status line once its loop runs marks it started; the start-up line does not."""
    assert [type(f) for f in scan("wandb: launch: Starting launch agent ✨\n")] == []
    assert [type(f) for f in scan(agent_lines.STATUS)] == [Started]
    assert [type(f) for f in scan("wandb: launch: agent polling on queues q1,q2, running 0 out of 1 jobs\n")] == [
        Started
    ]


def test_a_block_ends_at_the_first_line_that_does_not_continue_it() -> None:
    """Lines with the head's `wandb: ERROR ` prefix continue the block; the next other line ends it."""
    text = agent_lines.job_error_traceback("ValueError: x") + "wandb: ERROR \n" + agent_lines.STATUS
    found = scan(text)
    ended = [f for f in found if isinstance(f, BlockEnded)]
    assert ended == [BlockEnded("stderr", "line")]
    assert isinstance(found[-1], Started)  # the line that ended it is scanned as usual


def test_a_block_can_be_ended_from_outside() -> None:
    """A quiet stream or its end closes the open block; with none open there is nothing to end."""
    scanner = Scanner(load_rules())
    stream = scanner.stream("stderr")
    list(scanner.feed(stream, agent_lines.job_error_traceback("ValueError: x")))
    assert stream.in_block
    assert scanner.end_block(stream, "quiet") == BlockEnded("stderr", "quiet")
    assert scanner.end_block(stream, "end") is None


def test_a_block_ends_at_its_length_limit() -> None:
    """A block that never stops continuing ends after MAX_BLOCK_LINES lines."""
    from launch_watchdog.scanner import MAX_BLOCK_LINES

    text = agent_lines.FIRING["launch_job_error"] + "wandb: ERROR more\n" * (MAX_BLOCK_LINES + 5)
    assert [f for f in scan(text) if isinstance(f, BlockEnded)] == [BlockEnded("stderr", "limit")]
