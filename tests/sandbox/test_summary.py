"""The summary of a sandbox run, counted from records made by hand: no stand-in serves, nothing runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.cloud import aiplatform_v1

from launch_supervisor.sandbox.stack import ENTITY
from launch_supervisor.sandbox.summary import (
    SUMMARY_KEYS,
    count_terminal,
    is_terminal,
    jobs_by_item,
    percentile,
    post_submit_seconds,
    settled,
    summarize,
    watchdog_events,
)
from tests.sandbox.records import Records


@pytest.fixture
def records(tmp_path: Path) -> Records:
    return Records.empty(tmp_path / "executions")


def test_a_run_is_summarized_from_the_stand_ins_records(records: Records) -> None:
    """Each key, in order, from the items, executions and CustomJobs the stand-ins hold and what each
    execution's watchdog printed."""
    submitted = {"event": "watchdog.exited", "reason": "submitted"}
    ok = records.item("CLAIMED", enqueued=0.0, leases=1)
    records.job(ok, created=2.0)
    records.execution(submitted)
    by_vertex = records.item("FAILED", enqueued=10.0, leases=2, failed_by="launch-supervisor/vertex")
    records.job(by_vertex, "JOB_STATE_FAILED", created=14.0)
    records.execution(submitted)
    refused = records.item("FAILED", enqueued=20.0, failed_by="agent")
    records.execution(
        {"event": "watchdog.bailout", "category": "quota"}, {"event": "watchdog.exited", "reason": "bailout"}
    )
    waiting = records.item("CLAIMED", enqueued=30.0)
    records.job(waiting, "JOB_STATE_FAILED", created=36.0)
    records.execution(status="running")

    summary = summarize(records.stack, [ok, by_vertex, refused, waiting], records.executions, "pubsub")

    assert tuple(summary) == SUMMARY_KEYS
    assert summary == {
        "items_submitted": 4,
        "items_terminal": 3,
        "items_non_terminal": 1,  # CLAIMED with a failed job, not yet failed by the supervisor
        "executions_started": 4,
        "max_executions_per_item": 2,
        "vertex_jobs_created": 3,
        "duplicates": 0,
        "outcomes": {"bailout": 1, "running": 1, "submitted": 2},
        "bailouts": {"quota": 1},
        "items_failed_by_supervisor": 1,
        "runs_stopped_in_wandb": 0,
        "cancelled_stopped_in_wandb": 0,
        "submit_latency_p50_s": 4.0,  # of 2, 4 and 6 s from enqueue to CustomJob
        "submit_latency_p95_s": 5.8,
        "dispatch_mode": "pubsub",
    }


def test_an_empty_run_has_every_key(records: Records) -> None:
    summary = summarize(records.stack, [], records.executions, "polling")
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["max_executions_per_item"] == 0
    assert summary["submit_latency_p50_s"] is None
    assert summary["submit_latency_p95_s"] is None


def test_a_second_custom_job_for_an_item_is_a_duplicate(records: Records) -> None:
    """Two CustomJobs carrying one item's trace id: one duplicate; the latency is to the first."""
    item = records.item("CLAIMED", enqueued=0.0)
    records.job(item, created=5.0)
    records.job(item, created=3.0)
    assert [len(jobs) for jobs in jobs_by_item(records.stack).values()] == [2]
    summary = summarize(records.stack, [item], records.executions, "polling")
    assert summary["duplicates"] == 1
    assert summary["vertex_jobs_created"] == 2
    assert summary["submit_latency_p50_s"] == 3.0


def test_a_run_stopped_in_wandb_counts_as_cancelled_once_its_job_is_and_the_item_failed(records: Records) -> None:
    """Stopped, its job CANCELLED and the item FAILED: a correct end, terminal, no duplicate. A stopped
    run whose job ended on its own, or whose item is not failed yet, is stopped but not cancelled."""
    wandb = records.stack.wandb
    ids = []
    for run_id, job_state, item_state in (
        ("cancelled", "JOB_STATE_CANCELLED", "FAILED"),
        ("ended-itself", "JOB_STATE_SUCCEEDED", "CLAIMED"),
        ("cancelling", "JOB_STATE_CANCELLING", "CLAIMED"),
        ("not-stopped", "JOB_STATE_SUCCEEDED", "CLAIMED"),
    ):
        item = records.item(item_state)
        wandb.items[item].run_id = run_id
        records.job(item, job_state)
        wandb.start_run(ENTITY, "sandbox", run_id)
        if run_id != "not-stopped":
            wandb.stop_run(run_id)
        ids.append(item)
    summary = summarize(records.stack, ids, records.executions, "polling")
    assert summary["runs_stopped_in_wandb"] == 3
    assert summary["cancelled_stopped_in_wandb"] == 1
    assert summary["items_non_terminal"] == 1  # the one still cancelling
    assert summary["duplicates"] == 0


def test_an_item_is_terminal_once_nothing_more_will_happen_to_it(records: Records) -> None:
    """CLAIMED with a job that succeeded, or FAILED; CLAIMED with a job that failed is not, until
    the supervisor fails the item."""
    item = records.item("CLAIMED")
    job = records.job(item, "JOB_STATE_RUNNING")
    assert not is_terminal(records.stack, item, jobs_by_item(records.stack))
    records.stack.vertex.jobs[job].job.state = aiplatform_v1.JobState.JOB_STATE_FAILED
    assert not is_terminal(records.stack, item, jobs_by_item(records.stack))
    records.stack.wandb.fail(item, "the CustomJob failed", "run", "launch-supervisor")
    assert is_terminal(records.stack, item, jobs_by_item(records.stack))
    pending = records.item("PENDING")
    assert count_terminal(records.stack, [item, pending]) == 1
    leased = records.item("LEASED")  # the agent has not acknowledged it yet
    records.job(leased, "JOB_STATE_SUCCEEDED")
    assert not is_terminal(records.stack, leased, jobs_by_item(records.stack))


def test_a_run_is_settled_when_no_execution_runs_and_every_item_is_terminal(records: Records) -> None:
    item = records.item("CLAIMED")
    records.job(item, "JOB_STATE_SUCCEEDED")
    execution = records.execution(status="running")
    assert not settled(records.stack, [item])
    records.stack.cloudrun.mark_finished(execution, "succeeded")
    assert settled(records.stack, [item])
    assert not settled(records.stack, [item, records.item("PENDING")])
    records.execution(status="pending")
    assert not settled(records.stack, [item])


def test_post_submit_seconds_run_from_the_custom_job_to_the_execution_s_end(records: Records) -> None:
    """Only executions whose watchdog reported a submission, in Google's times."""
    item = records.item("CLAIMED")
    job = records.job(item, created=10.0)
    reported = records.execution({"event": "watchdog.submitted", "custom_job": job})
    records.finished_at(reported, 12.5)
    silent = records.execution({"event": "watchdog.exited", "reason": "idle"})
    records.finished_at(silent, 30.0)
    records.execution({"event": "watchdog.submitted", "custom_job": job}, status="running")
    assert post_submit_seconds(records.stack, records.executions) == [2.5]


def test_watchdog_events_are_its_json_lines_only(records: Records) -> None:
    """The agent's own output and a line cut short are skipped; no log is no events."""
    name = records.execution({"event": "watchdog.started"}, output='wandb: {"event":"not the watchdog"}')
    log = records.executions / f"{name.rsplit('/', 1)[-1]}.stdout.log"
    log.write_text(log.read_text() + '{"event":"watchdog.exit\n')
    assert watchdog_events(records.executions, name) == [{"event": "watchdog.started"}]
    assert watchdog_events(records.executions, "projects/p/executions/none") == []


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.5, None),
        ([1.23456], 0.95, 1.235),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.5, 3.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0.95, 4.8),
        ([5.0, 1.0], 0.5, 3.0),
    ],
)
def test_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected
