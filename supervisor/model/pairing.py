"""Who took what: pairing a queue's executions with the items they claimed and the CustomJobs they
created (docs/architecture.md, Data flow).

A watchdog's `claimed` event says which item an execution took, and its `submitted` event which
CustomJob it created. Without them, an item that leaves PENDING is attributed to the oldest
in-flight execution that has not yet claimed anything (the agent pops whatever is first, so only
the numbers are certain anyway), and a CustomJob to the item whose id (its trace id) or run id it
carries. An inferred pairing is never acted on where a wrong one would do harm (see `certain`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from launch_supervisor.model.executions import Execution, Phase
from launch_supervisor.model.facts import Fact, FactKind
from launch_supervisor.model.items import Item, ItemState
from launch_supervisor.model.vertex import VertexJob


def claim(queue: str, execution: Execution, item: Item, now: float) -> list[Fact]:
    """`execution` took `item`."""
    execution.item_id = item.id
    execution.move(Phase.CLAIMED)
    item.claimed_by = execution.name
    return [
        Fact(FactKind.CLAIMED, queue, execution.name, seconds=max(0.0, now - execution.created)),
        Fact(FactKind.QUEUE_WAIT, queue, execution.name, seconds=max(0.0, execution.created - item.first_seen)),
    ]


def infer_claim(
    queue: str, executions: Mapping[str, Execution], item: Item, now: float, since: float | None = None
) -> list[Fact]:
    """`item` left PENDING with no event saying who took it: the oldest execution without an item
    that may have taken it. One that ended after `since` (the listing that last showed the item
    pending) comes first, else one in flight: pairing the item with an execution still running when
    one that ended took it would leave the running one uncounted as about to claim, and the next
    pending item would get a second execution (docs/architecture.md, Dispatch)."""
    unclaimed = [e for e in executions.values() if not e.has_claimed and not e.idle_exit]
    ended = [e for e in unclaimed if since is not None and not e.in_flight and (e.finished or 0.0) >= since]
    candidates = ended or [e for e in unclaimed if e.in_flight]
    if not candidates:
        return []
    return claim(queue, min(candidates, key=lambda e: e.created), item, now)


def confirm_claim(
    queue: str,
    items: dict[str, Item],
    *,
    executions: Mapping[str, Execution],
    execution_name: str,
    item_id: str,
    now: float,
) -> list[Fact]:
    """The execution's own `claimed` event: the pairing becomes certain, correcting an inferred one."""
    execution = executions.get(execution_name)
    if execution is None:
        return []
    if execution.item_id == item_id:  # the listing inferred this pairing first: now it is certain
        inferred = items.get(item_id)
        if inferred is not None and inferred.claimed_by == execution_name:
            inferred.claim_confirmed = True
        return []
    item = items.setdefault(item_id, Item(item_id, ItemState.CLAIMED, first_seen=now, last_seen=now))
    if execution.item_id is not None:  # an inferred pairing was wrong: undo it, and the job it lent
        previous = items.get(execution.item_id)
        if previous is not None and previous.claimed_by == execution_name:
            previous.claimed_by = None
        execution.vertex_job = execution.reported_job
    loser = None
    if item.claimed_by and item.claimed_by != execution_name:  # taken from a wrongly inferred one
        other = executions.get(item.claimed_by)
        if other is not None and other.item_id == item_id:
            other.item_id = None
            other.vertex_job = other.reported_job
            loser = other
    # Only the job the execution itself reported (`submitted` arrived first): one linked through an
    # inferred pairing is another item's, and would keep this item from ever being failed.
    if execution.reported_job and not item.vertex_job:
        item.vertex_job = execution.reported_job
    item.claim_confirmed = True
    facts = claim(queue, execution, item, now)
    if loser is not None and not loser.in_flight:  # it ended, having taken some item all the same
        take_inferred_claim(items, executions, loser)
    return facts


def take_inferred_claim(items: Mapping[str, Item], executions: Mapping[str, Execution], ending: Execution) -> None:
    """`ending` ends holding no item (or ended, and a `claimed` event just took from it the item
    counting gave it), and its watchdog did not say it found none: it may be the one that took an
    item counting paired with an execution still running (the listing saw the item leave PENDING
    after `ending` was created). It takes that item over, so the running one counts again as about
    to claim; else the next pending item would get a second execution. The item may be counted for
    an execution that ended too, which may have taken another one counted for a running one: then
    each takes the next one's over (`_handover`). A wrong guess only holds a start back, until the
    claim timeout or an event (docs/architecture.md, Dispatch)."""
    if ending.has_claimed or ending.idle_exit:
        return
    for item, holder, taker in _handover(items, executions, ending):
        holder.item_id, holder.vertex_job = None, holder.reported_job
        item.claimed_by, taker.item_id = taker.name, item.id


def _handover(
    items: Mapping[str, Item], executions: Mapping[str, Execution], ending: Execution
) -> list[tuple[Item, Execution, Execution]]:
    """The counted claims to move, as (item, from, to) in that order, that free an execution still
    running: `ending` takes over an item counted for it, or for an ended execution that takes one
    over in turn, and so on; the shortest such chain, or none. Only the numbers matter: whichever
    running execution is freed, one more counts as about to claim."""
    reached: dict[str, tuple[Item, Execution]] = {}
    """Each execution the search reached: its item, and the execution that would take it over."""
    takers = deque([ending])
    while takers:
        taker = takers.popleft()
        for item in items.values():
            holder = executions.get(item.claimed_by) if item.claimed_by else None
            if holder is None or holder is ending or holder.name in reached or holder.item_id != item.id:
                continue
            if item.claim_confirmed or holder.reported_job or (item.claimed_seen or 0.0) < taker.created:
                continue  # certain, or it left PENDING before `taker` existed
            reached[holder.name] = (item, taker)
            if not holder.in_flight:
                takers.append(holder)
                continue
            moves, freed = [], holder  # back from the running execution to `ending`
            while freed is not ending:
                moved, by = reached[freed.name]
                moves.append((moved, freed, by))
                freed = by
            return moves[::-1]
    return []


def undo_inferred_claim(items: Mapping[str, Item], execution: Execution) -> None:
    """The execution found no item (`idle_exit`): a claim inferred for it was someone else's."""
    item = items.get(execution.item_id) if execution.item_id else None
    if item is not None and item.claimed_by == execution.name and not item.claim_confirmed:
        item.claimed_by = None
        execution.item_id = None


def report_job(
    queue: str, items: Mapping[str, Item], execution: Execution, custom_job: str, now: float
) -> list[Fact] | None:
    """The execution's own `submitted` event names its CustomJob; None when it was known already."""
    execution.reported_job = custom_job  # even when a listing linked the same job by inference first
    if execution.vertex_job == custom_job:
        return None
    execution.vertex_job = custom_job
    execution.move(Phase.SUBMITTED)
    item = items.get(execution.item_id) if execution.item_id else None
    if item is None or item.vertex_job is not None:
        return []
    item.vertex_job = custom_job
    return [Fact(FactKind.SUBMITTED, queue, execution.name, seconds=max(0.0, now - item.first_seen))]


def link_job(
    queue: str, items: Mapping[str, Item], executions: Mapping[str, Execution], job: VertexJob, now: float
) -> list[Fact] | None:
    """A listed CustomJob whose trace id (the item id) or run id belongs to one of the queue's items:
    the job is the queue's. None when it is not; the `submitted` fact when the item had no job yet."""
    item = items.get(job.item_id) if job.item_id else None
    if item is None and job.run_id:
        item = next((i for i in items.values() if i.run_id == job.run_id), None)
    if item is None:
        return None
    job.queue = queue
    if job.run_id and not item.run_id:
        item.run_id = job.run_id  # the listing that shows associatedRunId may not have come yet
    if item.vertex_job is not None:
        return []
    item.vertex_job = job.name
    if item.claimed_by and (execution := executions.get(item.claimed_by)):
        execution.vertex_job = job.name
        execution.move(Phase.SUBMITTED)
    return [Fact(FactKind.SUBMITTED, queue, item.claimed_by, seconds=max(0.0, now - item.first_seen))]


def custom_job(
    items: Mapping[str, Item], execution: Execution, jobs: Mapping[str, VertexJob], certain: bool
) -> VertexJob | None:
    """The listed CustomJob `execution` submitted. With `certain`, only as the execution itself
    said: its `submitted` event, or its `claimed` event for the item the job runs. A pairing
    inferred by counting may name another execution's item."""
    names = [execution.reported_job]
    item = items.get(execution.item_id) if execution.item_id else None
    if item is not None and item.claimed_by == execution.name and (item.claim_confirmed or not certain):
        names.append(item.vertex_job)
    if not certain:
        names.append(execution.vertex_job)
    return next((jobs[name] for name in names if name and name in jobs), None)
