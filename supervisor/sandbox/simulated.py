"""A simulated launcher: what one execution of the launcher image does, without a process.

It acts on the W&B and Vertex stand-ins the way `launch-watchdog -- wandb launch-agent` does: pops
the first pending item of its queue (or exits 0 when none comes within the idle timeout), acks it
with a new run id, creates the CustomJob labelled `wandb-run-id` (with the item id in its env as
WANDB_LAUNCH_TRACE_ID), and exits 0; or, as a plan says, bails out (the agent fails the item, the
watchdog exits 1), hangs until the task timeout, or lingers: creates the CustomJob but keeps running,
as when the watchdog misses the success line (no `submitted` event).
With an `events` sink it also emits the watchdog's events (docs/architecture.md, Events) at the moments the watchdog
would: `claimed`, `submitted`, `bailout`, `idle_exit`.

`training_code` is what runs inside each CustomJob, as W&B sees it: `wandb.init` once the job runs,
the run's end with the job's. It ignores a stop from W&B, as training code that catches the
interrupt does: a stopped run's job runs on until its planned end, or until it is cancelled.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from google.cloud import aiplatform_v1

from launch_supervisor.sandbox.cloudrun_server import ExecutionHandle
from launch_supervisor.sandbox.vertex_server import ENDED, RUN_FOR_ARG, VertexStandIn
from launch_supervisor.sandbox.wandb_server import WandbStandIn

S: Any = aiplatform_v1.JobState
DEFAULT_PROJECT = "uncategorized"
"""The project of a run whose spec names none, as `wandb.init` picks it."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What one execution does once it has an item."""

    outcome: str = "submit"
    """submit | bailout | stopped | vanish | hang | linger. `stopped`: the watchdog stopped the agent
    at a fatal line before the agent failed the item (the item stays CLAIMED); `vanish`: the
    container died after popping the item, before acking it (the lease returns it to PENDING)."""
    message: str = "google.api_core.exceptions.PermissionDenied: 403 Permission denied"
    rule: str = "permission_denied"
    category: str = "permission"
    """The watchdog rule a bailout matches, and its category (for the `bailout` event)."""
    vertex_error: str | None = None
    """Set to make the CustomJob it submits end FAILED with this message."""
    runs_for: float | None = None
    """Seconds the CustomJob it submits runs (its container's `--sandbox-run-for`) instead of the
    schedule's: long enough for its run to be stopped in W&B and the job cancelled."""


@dataclass
class SimulatedLauncher:
    wandb: WandbStandIn
    vertex: VertexStandIn
    plan: Callable[[int], Plan] = lambda n: Plan()
    """The plan for the n-th execution (0-based) that gets an item."""
    start_delay: float = 0.05
    poll_interval: float = 0.05
    idle_timeout: float = 1.0
    events: Callable[[dict[str, Any]], None] | None = None
    """Where the watchdog events go (a Pub/Sub publish, say); None emits none."""
    _claims: int = 0

    def _emit(self, handle: ExecutionHandle, event: str, **data: Any) -> None:
        if self.events is not None:
            short = handle.name.rsplit("/", 1)[-1]
            self.events({"event": f"watchdog.{event}", "execution": short, **data})

    async def run(self, handle: ExecutionHandle) -> None:
        await anyio.sleep(self.start_delay)
        handle.running()
        queue, entity = handle.arg("-q", "--queue"), handle.arg("-e", "--entity")
        if queue is None or entity is None:
            handle.finish("failed", "launch-agent needs -q QUEUE and -e ENTITY")
            return
        item = None
        with anyio.move_on_after(self.idle_timeout):
            while (item := self.wandb.pop(entity, queue)) is None:
                await anyio.sleep(self.poll_interval)
        if item is None:
            self._emit(handle, "idle_exit", queue=queue)
            handle.finish("succeeded")  # the watchdog's idle exit
            return
        plan = self.plan(self._claims)
        self._claims += 1
        if plan.outcome == "vanish":
            handle.finish("failed", "Container exited with code 137")
            return
        run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        self.wandb.ack(item.id, run_id)
        self._emit(handle, "claimed", queue=queue, entity=entity, item_id=item.id, run_id=run_id)
        if plan.outcome in ("bailout", "stopped"):
            if plan.outcome == "bailout":
                self.wandb.fail(item.id, plan.message, "agent")
            self._emit(handle, "bailout", queue=queue, rule=plan.rule, category=plan.category)
            handle.finish("failed", "Container exited with code 1")
            return
        if plan.outcome == "hang":
            await anyio.sleep_forever()
        if plan.vertex_error is not None:
            self.vertex.fail_runs[run_id] = plan.vertex_error
        project = str(item.run_spec.get("project") or DEFAULT_PROJECT)
        args = [] if plan.runs_for is None else [f"{RUN_FOR_ARG}{plan.runs_for:g}"]
        job = self.vertex.create(custom_job(queue, item.id, run_id, entity=entity, project=project, args=args))
        if plan.outcome == "linger":
            await anyio.sleep_forever()
        self._emit(handle, "submitted", queue=queue, custom_job=job.name)
        handle.finish("succeeded")


def custom_job(
    queue: str,
    item_id: str,
    run_id: str,
    *,
    entity: str | None = None,
    project: str = DEFAULT_PROJECT,
    args: Sequence[str] = (),
) -> aiplatform_v1.CustomJob:
    """A CustomJob as the agent's Vertex runner builds it: the run id label; the run's id, entity and
    project, the queue it came from and the trace id (the item) in the env."""
    env = {"WANDB_RUN_ID": run_id, "WANDB_PROJECT": project, "WANDB_LAUNCH_TRACE_ID": item_id}
    if entity is not None:
        env["WANDB_ENTITY"] = entity
        env["WANDB_LAUNCH_QUEUE_ENTITY"], env["WANDB_LAUNCH_QUEUE_NAME"] = entity, queue
    container = aiplatform_v1.ContainerSpec(
        image_uri="us-docker.pkg.dev/sandbox/trainers/train:latest",
        args=list(args),
        env=[aiplatform_v1.EnvVar(name=k, value=v) for k, v in env.items()],
    )
    pool = aiplatform_v1.WorkerPoolSpec(
        machine_spec=aiplatform_v1.MachineSpec(machine_type="n1-standard-4"), replica_count=1, container_spec=container
    )
    return aiplatform_v1.CustomJob(
        display_name=f"{queue}-{run_id}",
        labels={"wandb-run-id": run_id},
        job_spec=aiplatform_v1.CustomJobSpec(worker_pool_specs=[pool]),
    )


def agent_job(queue: str, item_id: str, run_id: str, entity: str) -> aiplatform_v1.CustomJob:
    """A CustomJob as the agent builds one: `custom_job`'s label and env, plus the rest of what
    `LaunchProject.get_env_vars_dict` puts there (wandb/sdk/launch/_project_spec.py of wandb 0.31.0;
    the Vertex runner appends it to the container's env, wandb/sdk/launch/runner/vertex_runner.py):
    16 variables, with values of the size real ones have (the API key is 40 characters)."""
    job = custom_job(queue, item_id, run_id, entity=entity)
    values = {
        "WANDB_API_KEY": "0" * 40,
        "WANDB_BASE_URL": "https://api.wandb.ai",
        "WANDB_USERNAME": entity,
        "WANDB_NAME": f"{queue}-{run_id}",
        "WANDB_LAUNCH": "True",
        "WANDB_RESUME": "allow",
        "WANDB_DOCKER": "us-docker.pkg.dev/sandbox/trainers/train:latest",
        "WANDB_ARTIFACTS": '{"_wandb_job": "' + entity + '/proj/job-train:v3"}',
        "WANDB_CONFIG": '{"lr": 0.0003, "epochs": 10, "batch_size": 64, "model": "resnet50"}',
        "WANDB_SWEEP_ID": "",
    }
    pool = job.job_spec.worker_pool_specs[0]
    pool.container_spec.env.extend(aiplatform_v1.EnvVar(name=k, value=v) for k, v in values.items())
    return job


RUN_STATES = {S.JOB_STATE_SUCCEEDED: "finished", S.JOB_STATE_CANCELLED: "killed"}
"""The state a run ends in, by its job's end state; any other end is `failed`."""


def training_code(wandb: WandbStandIn, vertex: VertexStandIn) -> Callable[[aiplatform_v1.CustomJob], None]:
    """What each CustomJob's code does in W&B, for `VertexStandIn.watch`: its run is started when the
    job runs (unless its container fails first: an image that cannot be pulled, an early exit) and
    ends with the job. A stop from W&B changes nothing here: the code ignores it."""

    def changed(job: aiplatform_v1.CustomJob) -> None:
        env = {e.name: e.value for pool in job.job_spec.worker_pool_specs for e in pool.container_spec.env}
        run_id, entity = job.labels.get("wandb-run-id"), env.get("WANDB_ENTITY")
        if not run_id or not entity:
            return
        where = (entity, env.get("WANDB_PROJECT") or DEFAULT_PROJECT, run_id)
        if job.state == S.JOB_STATE_RUNNING and vertex.jobs[job.name].fail_with is None:
            wandb.start_run(*where)
        elif job.state in ENDED:
            wandb.end_run(*where, RUN_STATES.get(job.state, "failed"))

    return changed
