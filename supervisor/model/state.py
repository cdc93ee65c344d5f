"""The model's root: every queue's state, the CustomJobs, and the Pub/Sub inbox, in one pure object.

The daemon hands it what it observed (listings, messages, policy changes, the answers to its calls)
with the time, and gets back facts, wake-ups and the calls to make. Nothing here does I/O or
sleeps, so every rule is tested with plain values (docs/architecture.md, Parts).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from launch_supervisor.model import cost, limits, remedies, retention, stops
from launch_supervisor.model.cost import Prices
from launch_supervisor.model.facts import Fact, FactKind
from launch_supervisor.model.inbox import Inbox, Outcome
from launch_supervisor.model.observations import ExecutionSeen, VertexSeen
from launch_supervisor.model.policy import QueuePolicy
from launch_supervisor.model.queue import QueueState
from launch_supervisor.model.remedies import CancelExecution, FailItem
from launch_supervisor.model.stops import CancelJob, StopQuery
from launch_supervisor.model.vertex import VANISHED_JOB, Held, InFlight, JobState, VertexJob


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """What applying a new set of queue policies changed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    resumed: tuple[str, ...] = ()
    """Queues whose polling had stopped (a rejected key) and starts again: the reload may have fixed it."""


@dataclass(frozen=True, slots=True)
class ExecutionsStep:
    """What one listing of a queue's executions changed, and what the daemon must do about it."""

    facts: list[Fact]
    list_items: bool
    """An execution finished after the latest item listing: list the items now, not at the next tick."""
    events: list[Outcome]
    """Buffered Pub/Sub events applied now that their execution is listed, and those that expired."""


@dataclass(frozen=True, slots=True)
class Chores:
    """After a CustomJob listing, for one queue: what to report, and the calls to make."""

    facts: list[Fact]
    fail: list[FailItem]
    cancel: list[CancelExecution]
    stranded: list[FailItem]
    """Items to fail as lost, once a search for a CustomJob of their run found none (`source` is the
    run id); see `remedies.stranded_items`."""


class State:
    """Everything the daemon knows."""

    def __init__(self, counting_from: float = 0.0) -> None:
        self.queues: dict[str, QueueState] = {}
        self.vertex_jobs: dict[str, VertexJob] = {}
        """CustomJobs listed within the lookback, by resource name."""
        self._in_flight = InFlight()
        self._books = cost.Books()
        """The 24 h spend of the jobs that ended, and the jobs to add to it (`cost`)."""
        self.stopped: dict[str, str] = {}
        """Queues whose polling stopped → why (`auth`: W&B rejected the key)."""
        self.inbox = Inbox()
        self.prices = Prices()
        """The price table the costs are counted with (`cost`)."""
        self.counting_from = counting_from
        """When this process started: no cost before it is counted, nor admission wait observed
        (an earlier process did; see `cost`)."""

    @property
    def ready(self) -> bool:
        """Every queue has been listed, and its executions too: decisions are no longer blind. A queue
        whose polling stopped (a rejected key) does not hold the others back: it is reported apart."""
        return all(q.polled and q.recovered for name, q in self.queues.items() if name not in self.stopped)

    def apply_policy(self, policies: Sequence[QueuePolicy]) -> PolicyChange:
        """The configured queues, at start or on reload: new ones are added, gone ones dropped, and the
        others take the new settings while keeping what they know."""
        wanted = {p.name: p for p in policies}
        added, resumed = [], []
        for name, policy in wanted.items():
            queue = self.queues.get(name)
            if queue is None:
                self.queues[name] = QueueState(policy)
                self.queues[name].spending.price_launcher(self.prices)
                added.append(name)
                continue
            self._books.stale |= queue.policy != policy
            queue.apply_policy(policy)
            if self.stopped.pop(name, None) is not None:
                resumed.append(name)
        removed = [name for name in self.queues if name not in wanted]
        for name in removed:
            del self.queues[name]
            self.stopped.pop(name, None)
        self._books.stale |= bool(added or removed)
        return PolicyChange(tuple(added), tuple(removed), tuple(resumed))

    def configure(self, policies: Sequence[QueuePolicy], prices: Prices) -> PolicyChange:
        """The configured queues and the price table, at start or on reload (`apply_policy`)."""
        self.apply_prices(prices)
        return self.apply_policy(policies)

    def apply_prices(self, prices: Prices) -> None:
        """The price table; launcher prices follow at once, the 24 h spend at the next tally."""
        self._books.stale |= prices != self.prices
        self.prices = prices
        for queue in self.queues.values():
            queue.spending.price_launcher(prices)

    def launcher_read(self, queue: str, vcpu: float, gib: float) -> None:
        """The queue's launcher job's CPU and memory limits, read once from Cloud Run."""
        if (state := self.queues.get(queue)) is not None:
            state.spending.launcher_size = (vcpu, gib)
            state.spending.price_launcher(self.prices)

    def stop_polling(self, queue: str, reason: str) -> None:
        """Polling this queue stopped until a reload (W&B rejected the key)."""
        self.stopped[queue] = reason

    def observe_executions(self, queue: str, seen: Iterable[ExecutionSeen], now: float, clock: float) -> ExecutionsStep:
        """A listing of one queue's launcher executions. `clock` is monotonic time (the inbox's deadlines)."""
        state = self.queues[queue]
        facts = state.observe_executions(seen, now)
        facts += state.settle(now)
        facts += remedies.post_submit(state, self.vertex_jobs)
        list_items = state.stale
        retention.prune(state, now, Held(self.vertex_jobs))
        return ExecutionsStep(facts, list_items, self.inbox.retry(self.queues, now, clock))

    def observe_vertex(
        self, seen: Iterable[VertexSeen], now: float, horizon: float, complete: bool = False
    ) -> list[Fact]:
        """A CustomJob listing: fold it in, link new jobs to the queue whose item they run, note jobs
        that ended, and forget ended jobs older than `horizon` (epoch seconds). With `complete`, the
        listing shows every job created after `horizon`: one in flight it keeps leaving out was
        deleted, and ends (CANCELLED) so that its item is failed rather than left CLAIMED."""
        facts: list[Fact] = []
        listed = set()  # only a complete listing needs them: a page or a tick's listing does not
        policies = self._policies()
        for obs in seen:
            if complete:
                listed.add(obs.name)
            job = self.vertex_jobs.get(obs.name)
            was_terminal = job is not None and job.state.terminal
            if job is None:
                job = VertexJob(obs.name, obs.run_id, obs.state, obs.created, item_id=obs.item_id)
                self.vertex_jobs[obs.name] = job
            job.item_id = job.item_id or obs.item_id
            job.listed(now)
            job.entity, job.project = job.entity or obs.entity, job.project or obs.project
            job.launch_queue = job.launch_queue or obs.launch_queue
            job.hardware = job.hardware or obs.hardware
            if job.queue is None:
                facts.extend(self._link(job, now))
                if job.queue is not None and was_terminal:
                    self._books.pending.append(job)  # its queue is known only now
            facts.extend(job.update(obs.state, obs.ended, obs.error, now))
            facts.extend(self._admitted(job, obs.started, policies))
            facts.extend(stops.confirmed(job, policies))
            self._track(job, was_terminal)
        if complete:
            facts.extend(self.vertex_left_out({job.name for job in self._live_jobs()} - listed, now, horizon))
        self._in_flight.forget_ended(self.vertex_jobs, horizon)
        return facts

    def vertex_left_out(self, names: Iterable[str], now: float, horizon: float) -> list[Fact]:
        """Jobs in flight that a complete listing (every job created after `horizon`, maybe folded a
        page at a time) left out: one it keeps leaving out was deleted, and ends (CANCELLED) so that
        its item is failed rather than left CLAIMED."""
        facts: list[Fact] = []
        for name in names:
            job = self.vertex_jobs.get(name)
            if job is not None and not job.state.terminal and job.created > horizon and job.absent(now):
                facts.extend(job.update(JobState.CANCELLED, now, VANISHED_JOB, now))
                self._track(job, was_terminal=False)
        return facts

    def _track(self, job: VertexJob, was_terminal: bool) -> None:
        self._in_flight.track(job, was_terminal)
        if job.state.terminal and not was_terminal:
            self._books.pending.append(job)

    def _live_jobs(self) -> list[VertexJob]:
        return self._in_flight.live(self.vertex_jobs)

    def tally_costs(self, now: float) -> list[Fact]:
        """After a Vertex tick (every job whose cost can have changed is listed): each queue's cost
        since the last tick, its spend over the last 24 hours (the budget gate), and the jobs the
        price table cannot price (see `cost`)."""
        live, policies, jobs = self._live_jobs(), self._policies(), self.vertex_jobs.values()
        facts, spends = self._books.tally(live, jobs, policies, self.prices, now, self.counting_from)
        for name, queue in self.queues.items():
            queue.spending.spend = spends.get(name, 0.0)
        return facts

    def _admitted(self, job: VertexJob, started: float | None, policies: dict[str, QueuePolicy]) -> list[Fact]:
        """Its start_time, the first time a listing gives it: the wait for capacity, observed once (by
        the process that saw it start)."""
        if started is None or job.started is not None:
            return []
        job.started = started
        policy = stops.queue_of(job, policies)
        if policy is None or started < self.counting_from or job.created <= 0:
            return []
        return [Fact(FactKind.ADMITTED, policy.name, seconds=max(0.0, started - job.created), custom_job=job.name)]

    def vertex_in_flight(self) -> list[str]:
        """CustomJobs known in a state that is not an end state: a listing of the live jobs that leaves
        one out means it ended (or was deleted) since, and it is read on its own."""
        return [job.name for job in self._live_jobs()]

    def vertex_gone(self, names: Iterable[str], now: float) -> list[Fact]:
        """CustomJobs in flight that Vertex AI no longer has (GetCustomJob answered NOT_FOUND): they
        were deleted, and end (CANCELLED) so that their items are failed rather than left CLAIMED."""
        facts: list[Fact] = []
        for name in names:
            job = self.vertex_jobs.get(name)
            if job is not None and not job.state.terminal:
                facts.extend(job.update(JobState.CANCELLED, now, VANISHED_JOB, now))
                self._track(job, was_terminal=False)
        return facts

    def _link(self, job: VertexJob, now: float) -> list[Fact]:
        for state in self.queues.values():
            facts = state.link_vertex(job, now)
            if facts is not None:
                return facts
        return []

    def chores(self, queue: str, now: float) -> Chores:
        """For one queue, after a CustomJob listing: items to fail, executions to cancel."""
        state = self.queues[queue]
        jobs = self.vertex_jobs
        fail = remedies.hung_items(state, self._in_flight.hanging(jobs)) + remedies.orphaned_items(state)
        cancel = remedies.stop_after_submit(state, jobs, now)
        return Chores(remedies.post_submit(state, jobs), fail, cancel, remedies.stranded_items(state, now))

    def still_stranded(self, queue: str, item_id: str) -> bool:
        """After the search for its run's CustomJob (whose results were folded in): still none."""
        state = self.queues.get(queue)
        item = state.items.get(item_id) if state is not None else None
        return item is not None and item.vertex_job is None and not item.failed_by_supervisor

    def item_failed(self, queue: str, item_id: str) -> None:
        """failRunQueueItem succeeded."""
        if (state := self.queues.get(queue)) is not None:
            remedies.item_failed(state, item_id)

    def cancel_answered(self, action: CancelExecution, accepted: bool) -> list[Fact]:
        """CancelExecution accepted, or nothing to cancel: never sent again."""
        state = self.queues.get(action.queue)
        return [] if state is None else remedies.cancel_answered(state, action, accepted)

    def cancel_failed(self, action: CancelExecution, error: str) -> bool:
        """CancelExecution failed (tried again later); True when the error is new."""
        state = self.queues.get(action.queue)
        return state is not None and remedies.cancel_failed(state, action, error)

    # -- runs stopped in W&B (see `stops`) ----------------------------------------------------------

    def stop_queries(self) -> list[StopQuery]:
        """The runs of live CustomJobs to ask W&B about, one query per project."""
        return stops.stop_queries(self._live_jobs(), self._policies())

    def runs_read(self, query: StopQuery, stopped: Iterable[str], now: float) -> None:
        """W&B answered a stop query: `stopped` are the runs it reports stopped."""
        stops.runs_read(self._live_jobs(), query, stopped, now)

    def job_cancels(self, now: float) -> list[CancelJob]:
        """CustomJobs to cancel: their run has been stopped in W&B for the queue's grace, or they
        passed their queue's max_queued or max_runtime (`limits`)."""
        live, policies = self._live_jobs(), self._policies()
        return stops.cancels(live, policies, now) + limits.cancels(live, policies, now)

    def stopped_still_running(self, now: float, margin: float) -> dict[str, int]:
        """Per queue, live jobs of runs stopped for longer than the grace plus `margin`."""
        return stops.overdue(self._live_jobs(), self._policies(), now, margin)

    def job_cancel_answered(self, action: CancelJob, accepted: bool) -> list[Fact]:
        return stops.cancel_answered(self.vertex_jobs, action, accepted)

    def job_cancel_failed(self, action: CancelJob, error: str) -> bool:
        return stops.cancel_failed(self.vertex_jobs, action, error)

    def _policies(self) -> dict[str, QueuePolicy]:
        return {name: queue.policy for name, queue in self.queues.items()}

    def receive(self, data: bytes, attributes: dict[str, str] | None, now: float, clock: float) -> Outcome:
        """One Pub/Sub message (docs/architecture.md, Events). Never raises."""
        return self.inbox.receive(data, attributes, self.queues, now, clock)

    def resume(self, queue: str) -> str | None:
        """An operator's resume: the breaker's previous state, or None for an unknown queue."""
        state = self.queues.get(queue)
        if state is None:
            return None
        previous = state.breaker.state.value
        state.resume()
        return previous
