"""The sandbox's traffic: run specs that succeed, run specs that fail the way real jobs fail, and
the enqueuer that adds a scenario's items to the queue.

Each failure is produced by the system, not announced to it: the Vertex stand-in refuses the spec
(quota, permission, a machine type that does not take the accelerator) and the watchdog classifies
what the agent prints, or Vertex creates the job and it fails there (an image that cannot be pulled,
a container that exits before `wandb.init`) and the supervisor fails the item.

One kind is stopped by a user in W&B (`stop_runs`, as from the W&B UI) once its run exists; its
training code ignores the stop and runs long, so it is the supervisor that cancels its CustomJob and
fails the item.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from launch_supervisor.sandbox.vertex_server import RUN_FOR_ARG
from launch_supervisor.sandbox.wandb_server import WandbStandIn

SCENARIOS = ("happy", "mixed", "burst")
IMAGE = "us-docker.pkg.dev/sandbox-project/trainers/train:v1"
STAGING_BUCKET = "gs://sandbox-project-staging"


def _spec(
    *,
    machine_type: str = "n1-standard-4",
    accelerator: str | None = None,
    count: int = 1,
    image: str = IMAGE,
    args: list[str] | None = None,
    service_account: str = "trainer@sandbox-project.iam.gserviceaccount.com",
) -> dict[str, Any]:
    """An image job for the agent's Vertex runner, in the shape it reads: the pools and the staging
    bucket under `vertex.spec`, the service account under `vertex.run`. By default a CPU machine:
    n1-standard-4 is the training machine the example price table (prices-us-central1.toml) has a
    sourced price for, so the sandbox's cost panels have data."""
    machine: dict[str, Any] = {"machine_type": machine_type}
    if accelerator is not None:
        machine |= {"accelerator_type": accelerator, "accelerator_count": count}
    pool = {
        "machine_spec": machine,
        "replica_count": 1,
        "container_spec": {"image_uri": image, "args": args or ["--epochs", "3"]},
    }
    vertex = {
        "spec": {"worker_pool_specs": [pool], "staging_bucket": STAGING_BUCKET},
        "run": {"service_account": service_account},
    }
    return {
        "docker": {"docker_image": image},
        "project": "sandbox",
        "resource": "gcp-vertex",
        "overrides": {"run_config": {"lr": 0.0003, "MAX_TRAIN_SAMPLES": "500"}},
        "resource_args": {"vertex": vertex},
    }


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    """What happens to an item of this kind."""
    spec: dict[str, Any]
    bailout: str | None = None
    """The bailout category the watchdog should report, when the agent fails."""
    fails_on_vertex: bool = False
    """The CustomJob is created and then ends FAILED: the supervisor fails the item."""
    stopped_in_wandb: bool = False
    """Its run is stopped in W&B once it exists; its job ignores the stop, so the supervisor cancels
    the CustomJob and fails the item."""


STOPPED_RUN_SECONDS = 60
"""How long the stopped run's job would run if nobody cancelled it: well past the sandbox's stop_grace."""
OK = Kind("ok", _spec())
STOPPED = Kind(
    "stopped_in_wandb", _spec(args=["--epochs", "3", f"{RUN_FOR_ARG}{STOPPED_RUN_SECONDS}"]), stopped_in_wandb=True
)
FAILURES = (
    Kind("quota", _spec(machine_type="a3-highgpu-8g", accelerator="NVIDIA_H100_80GB", count=8), bailout="quota"),
    Kind(
        "permission", _spec(service_account="no-access@sandbox-project.iam.gserviceaccount.com"), bailout="permission"
    ),
    Kind("machine_type", _spec(machine_type="n1-standard-4", accelerator="NVIDIA_L4"), bailout="invalid_spec"),
    Kind("image_pull", _spec(image=IMAGE.replace(":v1", ":does-not-exist")), fails_on_vertex=True),
    Kind("vertex_exit", _spec(args=["--epochs", "3", "--sandbox-exit=1"]), fails_on_vertex=True),
)


def kinds(scenario: str, items: int) -> list[Kind]:
    """The kind of each item to enqueue, in order. `mixed` alternates good items and each failure,
    its first item a run stopped in W&B."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}")
    if scenario != "mixed":
        return [OK] * items
    plan: list[Kind] = []
    failures = iter(FAILURES * (items // 2 + 1))
    for index in range(items):
        plan.append(OK if index % 2 == 0 else next(failures))
    plan[0] = STOPPED
    return plan


def run_spec(kind: Kind, entity: str, index: int) -> dict[str, Any]:
    spec = copy.deepcopy(kind.spec)
    spec["entity"] = entity
    spec["overrides"]["run_config"]["sandbox_item"] = index
    return spec


async def enqueue(
    wandb: WandbStandIn,
    entity: str,
    queue: str,
    scenario: str,
    items: int,
    *,
    every: float,
    enqueued: dict[str, Kind],
    stopping: anyio.Event,
    publish: Callable[[str], None] | None = None,
) -> None:
    """Enqueue the scenario's items, `every` seconds apart (`burst`: all at once), recording each in
    `enqueued` by id, and announce each with `publish` (a hint) when given. Ends early once `stopping`
    is set: a stopped run takes no more items."""
    burst = scenario == "burst"
    for index, kind in enumerate(kinds(scenario, items)):
        if stopping.is_set():
            return
        item_id = wandb.enqueue(entity, queue, run_spec(kind, entity, index))
        enqueued[item_id] = kind
        if publish is not None:
            await anyio.to_thread.run_sync(publish, item_id)
        if not burst:
            await anyio.sleep(every)


async def stop_runs(
    wandb: WandbStandIn,
    enqueued: dict[str, Kind],
    *,
    stopped: dict[str, str],
    say: Callable[[str], None],
    every: float = 0.2,
) -> None:
    """Stop in W&B the run of each item whose kind says so, as soon as the run exists (its CustomJob
    runs), as a user would from the W&B UI; each recorded in `stopped` (item id → run id) and said.
    Runs until cancelled."""
    while True:
        for item_id, kind in list(enqueued.items()):
            run_id = wandb.run_of(item_id)
            if kind.stopped_in_wandb and item_id not in stopped and run_id and wandb.stop_run(run_id):
                stopped[item_id] = run_id
                say(f"stopped run {run_id} in W&B; its training code ignores the stop")
        await anyio.sleep(every)
