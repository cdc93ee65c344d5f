"""Who took what: executions, items and CustomJobs."""

from __future__ import annotations

from launch_supervisor.model.executions import Execution, Phase
from launch_supervisor.model.facts import FactKind
from launch_supervisor.model.items import Item, ItemState
from launch_supervisor.model.pairing import confirm_claim, custom_job, infer_claim, link_job
from launch_supervisor.model.vertex import JobState, VertexJob

JOB = "projects/p/locations/r/customJobs/7"


def records() -> tuple[dict[str, Item], dict[str, Execution]]:
    items = {"a": Item("a", ItemState.CLAIMED, first_seen=0.0, run_id="run-a")}
    executions = {name: Execution(name, "q", created=t) for name, t in (("x2", 2.0), ("x1", 1.0))}
    return items, executions


def test_an_inferred_claim_goes_to_the_oldest_execution_without_an_item() -> None:
    """The agent pops whatever is first: only the count is certain, so the oldest takes it."""
    items, executions = records()
    facts = infer_claim("q", executions, items["a"], 5.0)
    assert [(f.kind, f.execution, f.seconds) for f in facts] == [
        (FactKind.CLAIMED, "x1", 4.0),
        (FactKind.QUEUE_WAIT, "x1", 1.0),
    ]
    assert (items["a"].claimed_by, executions["x1"].phase) == ("x1", Phase.CLAIMED)
    assert not items["a"].claim_confirmed


def test_a_claimed_event_moves_an_inferred_item_to_the_execution_that_took_it() -> None:
    """x2's own event wins over the inference that gave the item to x1, and makes it certain."""
    items, executions = records()
    infer_claim("q", executions, items["a"], 5.0)
    confirm_claim("q", items, executions=executions, execution_name="x2", item_id="a", now=6.0)
    assert (items["a"].claimed_by, items["a"].claim_confirmed) == ("x2", True)
    assert (executions["x1"].item_id, executions["x2"].item_id) == (None, "a")


def test_a_job_links_by_trace_id_or_run_id_and_only_certain_pairings_count_as_certain() -> None:
    """The job is the queue's when it carries one of its item ids or run ids; an inferred pairing
    names the job only when certainty is not asked for."""
    items, executions = records()
    infer_claim("q", executions, items["a"], 5.0)
    other = VertexJob("projects/p/locations/r/customJobs/8", "run-z", JobState.RUNNING, 9.0)
    assert link_job("q", items, executions, other, 10.0) is None
    job = VertexJob(JOB, "run-a", JobState.RUNNING, 9.0)
    [fact] = link_job("q", items, executions, job, 10.0) or []
    assert (fact.kind, fact.execution, fact.seconds) == (FactKind.SUBMITTED, "x1", 10.0)
    assert (job.queue, executions["x1"].phase) == ("q", Phase.SUBMITTED)
    assert link_job("q", items, executions, job, 11.0) == []  # known already: no second submission
    jobs = {JOB: job}
    assert custom_job(items, executions["x1"], jobs, certain=False) is job
    assert custom_job(items, executions["x1"], jobs, certain=True) is None


def test_a_corrected_pairing_does_not_lend_another_items_job() -> None:
    """x1 was paired with a by counting and so got a's CustomJob; its own `claimed` says it took b:
    b must not get a's job (b would never be failed), and x1 loses it."""
    items, executions = records()
    items["b"] = Item("b", ItemState.CLAIMED, first_seen=0.0, run_id="run-b")
    infer_claim("q", executions, items["a"], 5.0)
    link_job("q", items, executions, VertexJob(JOB, "run-a", JobState.RUNNING, 9.0), 10.0)
    assert executions["x1"].vertex_job == JOB
    confirm_claim("q", items, executions=executions, execution_name="x1", item_id="b", now=11.0)
    assert (items["a"].vertex_job, items["b"].vertex_job, executions["x1"].vertex_job) == (JOB, None, None)
    assert items["b"].claimed_by == "x1"
