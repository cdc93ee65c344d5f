"""The stand-ins' records of a run, made by hand: what the summary and the view count, with no server
started and no process run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import aiplatform_v1, run_v2

from launch_supervisor.sandbox.cloudrun_server import CloudRunStandIn
from launch_supervisor.sandbox.simulated import SimulatedLauncher
from launch_supervisor.sandbox.stack import ENTITY, REGION, Stack, launcher_job
from launch_supervisor.sandbox.vertex_server import VertexStandIn
from launch_supervisor.sandbox.wandb_server import WandbStandIn

QUEUE = "sandbox"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Records:
    stack: Stack
    executions: Path
    """Where each execution's output is, as the process launcher writes it."""

    @classmethod
    def empty(cls, executions: Path) -> Records:
        executions.mkdir(parents=True, exist_ok=True)
        wandb = WandbStandIn("key")
        vertex = VertexStandIn(region=REGION)
        cloudrun = CloudRunStandIn([launcher_job(QUEUE)], SimulatedLauncher(wandb, vertex))
        return cls(Stack(wandb, "", cloudrun, "", vertex, "", [QUEUE], "key"), executions)

    def item(self, state: str = "PENDING", *, enqueued: float = 0.0, leases: int = 1, failed_by: str = "") -> str:
        """An item enqueued `enqueued` seconds after T0, in `state`."""
        item_id = self.stack.wandb.enqueue(ENTITY, QUEUE)
        item = self.stack.wandb.items[item_id]
        item.state, item.leases = state, leases
        item.enqueued_at = (T0 + timedelta(seconds=enqueued)).timestamp()
        if failed_by:
            item.failed_by.append(failed_by)
        return item_id

    def job(self, item_id: str, state: str = "JOB_STATE_SUCCEEDED", *, created: float = 0.0) -> str:
        """A CustomJob the agent created for the item, `created` seconds after T0, now in `state`."""
        env = [{"name": "WANDB_CONFIG", "value": "{}"}, {"name": "WANDB_LAUNCH_TRACE_ID", "value": item_id}]
        pool = {"machine_spec": {"machine_type": "g2-standard-8"}, "container_spec": {"image_uri": "i", "env": env}}
        job = self.stack.vertex.create(
            aiplatform_v1.CustomJob(display_name="j", job_spec={"worker_pool_specs": [pool]})
        )
        job.create_time = T0 + timedelta(seconds=created)
        job.state = aiplatform_v1.JobState[state]
        return str(job.name)

    def execution(self, *events: dict[str, Any], status: str = "succeeded", output: str = "") -> str:
        """An execution in `status` whose watchdog printed `events`, after `output` (what the agent printed)."""
        name = f"{launcher_job(QUEUE)}/executions/launcher-{QUEUE}-{len(self.stack.cloudrun.executions):05d}"
        self.stack.cloudrun.executions[name] = run_v2.Execution(name=name)
        if status != "pending":
            self.stack.cloudrun.mark_running(name)
        if status not in ("pending", "running"):
            self.stack.cloudrun.mark_finished(name, status)
        lines = [output] if output else []
        lines += [json.dumps(event, separators=(",", ":")) for event in events]
        (self.executions / f"{name.rsplit('/', 1)[-1]}.stdout.log").write_text("".join(f"{x}\n" for x in lines))
        return name

    def finished_at(self, execution: str, seconds: float) -> None:
        """Cloud Run's completion time of the execution, `seconds` after T0."""
        self.stack.cloudrun.executions[execution].completion_time = T0 + timedelta(seconds=seconds)
