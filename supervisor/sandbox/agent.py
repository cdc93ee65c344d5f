"""The sandbox agent: behaves like `wandb launch-agent -q Q -e E --max-jobs 1` on Vertex AI (design 2).

It registers with W&B, polls the queue, leases and acks the first pending item, prints the lines the
real agent prints (the received-job pprint, `Error running job:` with its traceback, `Exception:`
when popping fails, status lines), creates the CustomJob through `aiplatform_v1` with the label
`wandb-run-id`, writes `CustomJob created. Resource name: …` to `$WANDB_DIR/wandb/debug-cli.<user>.log`
as aiplatform does, and then keeps polling forever: like the real one, it never exits by itself.
All GraphQL goes through the wandb SDK's own `LaunchApi`, so the W&B stand-in answers the SDK's
real documents.

    python -m supervisor.sandbox.agent -q QUEUE -e ENTITY [--max-jobs 1]

Environment: WANDB_BASE_URL, WANDB_API_KEY, WANDB_DIR; SANDBOX_VERTEX_ENDPOINT (host:port of the
Vertex stand-in) and SANDBOX_VERTEX_PARENT (projects/P/locations/R); SANDBOX_AGENT_POLL (seconds
between polls, default 1; the real agent waits 1 s after a job, a few seconds otherwise).
"""

from __future__ import annotations

import argparse
import copy
import getpass
import logging
import os
import pprint
import secrets
import string
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import grpc
import wandb
from google.cloud import aiplatform_v1
from google.cloud.aiplatform_v1.services.job_service.transports.grpc import JobServiceGrpcTransport
from wandb.sdk.launch.api import LaunchApi

LOG_PREFIX = "launch: "
PROJECT = "model-registry"
STATUS_EVERY = 300.0
"""Seconds between status lines, as the real agent's default print interval."""


def _cli_logger() -> logging.Logger:
    """aiplatform's `CustomJob created` line goes to the CLI log file, as under `wandb launch-agent`."""
    directory = Path(os.environ.get("WANDB_DIR", ".")) / "wandb"
    directory.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(directory / f"debug-cli.{getpass.getuser()}.log")
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)-7s %(threadName)-10s:%(process)d [%(filename)s:%(funcName)s():%(lineno)s] "
            "%(message)s"
        )
    )
    logger = logging.getLogger("google.cloud.aiplatform")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _run_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def custom_job(spec: dict[str, Any], queue: str, item_id: str, run_id: str) -> Any:
    """The CustomJob the Vertex runner builds from the run spec's `resource_args.vertex.spec`."""
    vertex = (spec.get("resource_args") or {}).get("vertex") or {}
    job_spec = dict(vertex.get("spec") or {})
    pools = job_spec.get("worker_pool_specs") or [{"machine_spec": {"machine_type": "n1-standard-4"}}]
    env = [
        {"name": "WANDB_RUN_ID", "value": run_id},
        {"name": "WANDB_LAUNCH_TRACE_ID", "value": item_id},
        {"name": "WANDB_PROJECT", "value": str(spec.get("project", "sandbox"))},
    ]
    worker_pools = []
    for pool in pools:
        container = dict(pool.get("container_spec") or {})
        container.setdefault("image_uri", "us-docker.pkg.dev/sandbox/trainers/train:latest")
        container["env"] = [*container.get("env", []), *env]
        worker_pools.append({**pool, "replica_count": pool.get("replica_count", 1), "container_spec": container})
    job_spec["worker_pool_specs"] = worker_pools
    return aiplatform_v1.CustomJob(
        display_name=f"{queue}-{run_id}",
        job_spec=job_spec,
        labels={"wandb-run-id": run_id},
    )


class Agent:
    def __init__(self, queue: str, entity: str, max_jobs: int) -> None:
        self.queue, self.entity, self.max_jobs = queue, entity, max_jobs
        self.api = LaunchApi(api_key=os.environ.get("WANDB_API_KEY"), overrides={"base_url": _base_url()})
        self.poll = float(os.environ.get("SANDBOX_AGENT_POLL", "1"))
        self.running: list[str] = []
        self.cli_log = _cli_logger()
        self.id = ""
        self._status_at = 0.0

    def termlog(self, message: str) -> None:
        wandb.termlog(f"{LOG_PREFIX}{message}")

    def termerror(self, message: str) -> None:
        wandb.termerror(f"{LOG_PREFIX}{message}")

    def print_status(self) -> None:
        self._status_at = time.monotonic()
        polling = f"polling on queues {self.queue}, " if len(self.running) < self.max_jobs else ""
        self.termlog(f"agent {self.id} {polling}running {len(self.running)} out of a maximum of {self.max_jobs} jobs")

    def loop(self) -> None:
        config = {"entity": self.entity, "queues": [self.queue], "max_jobs": self.max_jobs}
        self.id = self.api.create_launch_agent(self.entity, PROJECT, [self.queue], config, wandb.__version__)[
            "launchAgentId"
        ]
        self.api.update_launch_agent_status(self.id, "POLLING")
        self.print_status()
        try:
            while True:
                if self.api.get_launch_agent(self.id)["stopPolling"]:
                    raise KeyboardInterrupt  # noqa: TRY301 - the real agent stops this way when asked from the UI
                job = None
                if len(self.running) < self.max_jobs:
                    try:
                        job = self.api.pop_from_run_queue(self.queue, self.entity, PROJECT, self.id)
                    except Exception as exc:  # noqa: BLE001 - the real agent prints every pop failure and goes on
                        print("Exception:", exc, flush=True)
                if job:
                    self.run_job(job)
                if time.monotonic() - self._status_at > STATUS_EVERY:
                    self.print_status()
                time.sleep(self.poll)
        except KeyboardInterrupt:
            self.api.update_launch_agent_status(self.id, "KILLED")
            self.termlog("Shutting down, active jobs:")
            self.print_status()
            raise SystemExit(130) from None

    def run_job(self, job: dict[str, Any]) -> None:
        shown = copy.deepcopy(job)
        if "_wandb_api_key" in shown.get("runSpec", {}):
            shown["runSpec"]["_wandb_api_key"] = "<redacted>"
        self.termlog(f"Launch agent received job:\n{pprint.pformat(shown)}\n")
        self.api.update_launch_agent_status(self.id, "RUNNING")
        item_id = str(job["runQueueItemId"])
        try:
            run_id = _run_id()
            self.api.ack_run_queue_item(item_id, run_id)
            name = self.submit(job.get("runSpec") or {}, item_id, run_id)
        except Exception as exc:  # noqa: BLE001 - as the real agent: report, fail the item, keep polling
            self.termerror(f"Error running job: {traceback.format_exc()}")
            self.api.fail_run_queue_item(item_id, str(exc), "agent")
            return
        self.running.append(name)

    def submit(self, spec: dict[str, Any], item_id: str, run_id: str) -> str:
        channel = grpc.insecure_channel(os.environ["SANDBOX_VERTEX_ENDPOINT"])
        try:
            client = aiplatform_v1.JobServiceClient(transport=JobServiceGrpcTransport(channel=channel))
            parent = os.environ["SANDBOX_VERTEX_PARENT"]
            self.cli_log.info("Creating CustomJob")
            created = client.create_custom_job(
                parent=parent, custom_job=custom_job(spec, self.queue, item_id, run_id), timeout=30
            )
        finally:
            channel.close()
        self.cli_log.info("CustomJob created. Resource name: %s", created.name)
        return str(created.name)


def _base_url() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sandbox-agent", description=__doc__.split("\n\n")[0])
    parser.add_argument("-q", "--queue", required=True)
    parser.add_argument("-e", "--entity", required=True)
    parser.add_argument("-j", "--max-jobs", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        Agent(args.queue, args.entity, args.max_jobs).loop()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:
        sys.stdout.flush()


if __name__ == "__main__":
    main()
