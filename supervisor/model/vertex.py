"""Vertex AI CustomJobs created by the agent (docs/architecture.md, Data flow)."""

from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass

from launch_supervisor.model.absence import Absence
from launch_supervisor.model.facts import Fact, FactKind


class JobState(enum.Enum):
    """aiplatform_v1.JobState names, without the JOB_STATE_ prefix."""

    UNSPECIFIED = "UNSPECIFIED"
    QUEUED = "QUEUED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    PAUSED = "PAUSED"
    EXPIRED = "EXPIRED"
    UPDATING = "UPDATING"
    PARTIALLY_SUCCEEDED = "PARTIALLY_SUCCEEDED"

    @classmethod
    def parse(cls, name: str) -> JobState:
        try:
            return cls(name.removeprefix("JOB_STATE_"))
        except ValueError:
            return cls.UNSPECIFIED

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED, JobState.PARTIALLY_SUCCEEDED}
)
LIVE = frozenset({JobState.QUEUED, JobState.PENDING, JobState.RUNNING})
"""States in which a CustomJob still holds (or waits for) its machines: worth cancelling."""
HANGING = frozenset({JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED})
"""End states after which the item would stay CLAIMED forever unless the supervisor fails it."""


@dataclass(frozen=True, slots=True)
class Pool:
    """One worker pool of a CustomJob: `replicas` machines, each with its accelerators."""

    machine_type: str
    replicas: int
    accelerator_type: str | None = None
    accelerator_count: int = 0


@dataclass(frozen=True, slots=True)
class Hardware:
    """What a CustomJob runs on: its worker pools, and whether it is scheduled on spot VMs."""

    pools: tuple[Pool, ...]
    spot: bool = False


VANISH_LISTINGS = 3
VANISHED_JOB = "the CustomJob no longer exists (deleted?)"


@dataclass(slots=True)
class VertexJob:
    name: str
    run_id: str | None
    state: JobState
    created: float
    ended: float | None = None
    error: str | None = None
    queue: str | None = None
    """The queue whose item it runs, once the run id is linked to an item."""
    item_id: str | None = None
    """WANDB_LAUNCH_TRACE_ID from its container env: the queue item it runs, when the agent set it."""
    entity: str | None = None
    project: str | None = None
    """Where its run lives in W&B (the container env): needed to ask whether the run was stopped."""
    launch_queue: tuple[str, str] | None = None
    """(entity, queue) its container env names: its queue even while its item is not listed."""
    stopped_since: float | None = None
    """When the supervisor first saw its run stopped in W&B (None while it is not)."""
    cancel: str | None = None
    """Why the supervisor asked Vertex AI to cancel it (`run_stopped`, `max_queued`, `max_runtime`),
    once the call was answered."""
    cancel_message: str | None = None
    """The item's failure message once the job, cancelled by the supervisor, ends CANCELLED."""
    cancel_error: str | None = None
    """The last error of a CancelCustomJob tried again at the next tick."""
    cancel_wanted: CancelWanted | None = None
    """The cancel whose call failed with no answer: reported once a listing shows it took."""
    started: float | None = None
    """Vertex AI's start_time: when it first ran (its machines were found)."""
    hardware: Hardware | None = None
    """Its worker pools and scheduling, what it costs by (see `cost`)."""
    counted_until: float | None = None
    """Up to when its cost has been added to the cost counter (see `cost.accrue`)."""
    unpriced: bool = False
    """Its hardware is missing from the price table, and that has been reported."""
    billed: bool = False
    """It ended, and its billed span is in the 24 h spend's ledger (see `cost.tally`)."""
    absence: Absence | None = None
    """Complete listings that left it out while it was in flight (see `absent`); made at the first
    that did, so that the day's ended jobs carry none."""

    def listed(self, now: float) -> None:
        """A listing showed it."""
        if self.absence is not None:
            self.absence.seen(now)

    def update(self, state: JobState, ended: float | None, error: str | None, now: float) -> list[Fact]:
        """A listing's (or the supervisor's) state, end time and error; the fact of its end, once,
        when it ends linked to a queue."""
        was_terminal = self.state.terminal
        if self.state is state and self.ended == ended and self.error == error:
            return []  # a listing repeats what is known: the objects the job and the ledger hold stay
        self.state, self.ended, self.error = state, ended, error
        if not state.terminal or was_terminal or self.queue is None:
            return []
        seconds = max(0.0, (ended or now) - self.created)
        return [Fact(FactKind.VERTEX_ENDED, self.queue, outcome=state.value, seconds=seconds)]

    def absent(self, now: float) -> bool:
        """One more complete listing left it out; True once that happened VANISH_LISTINGS times in a
        row: it was deleted."""
        if self.absence is None:
            self.absence = Absence(VANISH_LISTINGS)
        return self.absence.left_out(now, self.created)


@dataclass(frozen=True, slots=True)
class CancelWanted:
    """Why a CancelCustomJob was sent, kept while its answer is unknown."""

    reason: str
    message: str
    seconds: float


class InFlight:
    """The names of the CustomJobs not in an end state, in the order they came, of those that ended
    in a state that leaves their item hanging, and a heap of the ended ones by end (or creation)
    time: a tick walks the jobs in flight (and the few that ended badly), and forgets ended ones as
    they leave the lookback, never walking every job the lookback holds."""

    def __init__(self) -> None:
        self._names: dict[str, None] = {}
        self._hanging: dict[str, None] = {}
        self._ended: list[tuple[float, str]] = []

    def track(self, job: VertexJob, was_terminal: bool) -> None:
        if not job.state.terminal:
            self._names.setdefault(job.name)
            return
        self._names.pop(job.name, None)
        if job.state in HANGING:
            self._hanging.setdefault(job.name)
        if not was_terminal:
            heapq.heappush(self._ended, (job.ended or job.created, job.name))

    def forget_ended(self, jobs: dict[str, VertexJob], horizon: float) -> None:
        """Drop from `jobs` those that ended (or, without an end time, were created) before `horizon`."""
        while self._ended and self._ended[0][0] < horizon:
            _, name = heapq.heappop(self._ended)
            job = jobs.get(name)
            if job is None or not job.state.terminal:
                continue
            if (job.ended or job.created) < horizon:
                del jobs[name]
                self._hanging.pop(name, None)
            else:  # its end time moved since: wait for the new one
                heapq.heappush(self._ended, (job.ended or job.created, name))

    def live(self, jobs: dict[str, VertexJob]) -> list[VertexJob]:
        found = (jobs.get(name) for name in self._names)
        return [job for job in found if job is not None and not job.state.terminal]

    def hanging(self, jobs: dict[str, VertexJob]) -> list[VertexJob]:
        """The known jobs that ended FAILED, CANCELLED or EXPIRED: their items may need failing."""
        found = (jobs.get(name) for name in self._hanging)
        return [job for job in found if job is not None and job.state in HANGING]


class Held:
    """The CustomJobs whose items retention keeps: in flight, or ended badly (their item may still
    need failing). A lookup per item, never a set of every job."""

    def __init__(self, jobs: dict[str, VertexJob]) -> None:
        self._jobs = jobs

    def __contains__(self, name: object) -> bool:
        job = self._jobs.get(name) if isinstance(name, str) else None
        return job is not None and (not job.state.terminal or job.state in HANGING)
