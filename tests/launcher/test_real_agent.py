"""The launcher image's entrypoint end to end: the real, unmodified `wandb launch-agent` 0.31 under
the real launch-watchdog, against the W&B and Vertex stand-ins, reached as W&B and Google are."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from launch_supervisor.sandbox import traffic
from launch_supervisor.sandbox.emulator import free_port
from launch_supervisor.sandbox.stack import ENTITY, stand_ins
from launch_supervisor.sandbox.wandb_server import REFUSALS
from tests.real_agent import QUEUE, RealAgent, RealRun

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
async def real(tmp_path: Path) -> AsyncIterator[RealAgent]:
    async with stand_ins([QUEUE]) as stack:
        stack.wandb.known_queues.add(QUEUE)
        yield RealAgent(stack, tmp_path)
        assert stack.wandb.unknown == [], "the agent sent operations the W&B stand-in does not answer"
        assert stack.google.unknown == [], "the agent asked Google for something the stand-ins do not answer"


def enqueue(real: RealAgent, kind: traffic.Kind = traffic.OK) -> str:
    return real.stack.wandb.enqueue(ENTITY, QUEUE, traffic.run_spec(kind, ENTITY, 0))


def bailout(run: RealRun) -> dict[str, object]:
    event = run.event("watchdog.bailout")
    assert run.event("watchdog.exited")["exit_code"] == run.code
    return event


async def test_a_submission_stops_the_agent(real: RealAgent) -> None:
    """The agent creates the CustomJob; the watchdog sees it, stops the agent and exits 0."""
    item = enqueue(real)
    run = await real.run()
    assert run.code == 0, run.stderr
    assert run.names == ["watchdog.started", "watchdog.claimed", "watchdog.submitted", "watchdog.exited"]
    (job,) = real.stack.vertex.jobs.values()
    assert run.event("watchdog.submitted")["custom_job"] == job.job.name
    assert run.event("watchdog.claimed")["item_id"] == item
    assert run.event("watchdog.exited")["reason"] == "submitted"
    claimed = real.stack.wandb.items[item]
    assert claimed.state == "CLAIMED"
    assert claimed.run_id == job.job.labels["wandb-run-id"]


async def test_a_missing_queue_is_not_found(real: RealAgent) -> None:
    """`Not all of requested queues … found`: the agent exits 1 by itself, classified not_found."""
    run = await real.run(queue="no-such-queue")
    assert run.code == 1
    assert bailout(run)["category"] == "not_found"


@pytest.mark.parametrize("wording", REFUSALS)
async def test_a_bad_key_is_permission(real: RealAgent, wording: str) -> None:
    """W&B answers 401 in either of its wordings: the agent exits by itself, classified permission."""
    real.stack.wandb.refusal = wording
    run = await real.run(env={"WANDB_API_KEY": "0" * 40})
    assert run.code == 1
    assert f"Failed to verify credentials with {real.stack.wandb_url}: {wording}" in run.stderr
    event = bailout(run)
    assert (event["rule"], event["category"]) == ("wandb_credentials_rejected", "permission")


async def test_wandb_down_at_start_is_network(real: RealAgent) -> None:
    """W&B unreachable: the agent prints nothing while wandb-core retries; at the idle timeout
    that is a bailout, classified from what wandb-core wrote, not an idle exit."""
    run = await real.run(
        env={"WANDB_BASE_URL": f"http://127.0.0.1:{free_port()}"}, options=("--grace", "3", "--idle-timeout", "6")
    )
    assert run.code == 1
    assert bailout(run)["category"] == "network"
    assert run.event("watchdog.exited")["reason"] == "bailout"


async def test_no_google_credentials_is_permission(real: RealAgent) -> None:
    """No metadata server and no ADC: `Failed to create Vertex job: No Google Cloud Platform
    credentials found` is a permission bailout, not a W&B one."""
    enqueue(real)
    nowhere = f"127.0.0.1:{free_port()}"
    run = await real.run(env={"GCE_METADATA_HOST": nowhere, "GCE_METADATA_IP": nowhere})
    assert run.code == 1
    assert bailout(run)["category"] == "permission"
    assert real.stack.vertex.jobs == {}


async def test_vertex_unreachable_is_network(real: RealAgent) -> None:
    """Vertex cannot be reached: the agent's ServiceUnavailable is a network bailout."""
    enqueue(real)
    real.stack.google.vertex_tls_address = f"127.0.0.1:{free_port()}"
    run = await real.run()
    assert run.code == 1
    assert bailout(run)["category"] == "network"


@pytest.mark.parametrize(
    ("kind", "category"),
    [(k, k.bailout) for k in traffic.FAILURES if k.bailout is not None],
    ids=lambda v: v.name if isinstance(v, traffic.Kind) else str(v),
)
async def test_vertex_refusals_are_classified(real: RealAgent, kind: traffic.Kind, category: str) -> None:
    """Each refusal of the Vertex stand-in reaches the watchdog through the real agent's own words."""
    item = enqueue(real, kind)
    run = await real.run()
    assert run.code == 1, run.stderr
    assert bailout(run)["category"] == category
    assert real.stack.vertex.jobs == {}
    assert real.stack.wandb.items[item].state in ("CLAIMED", "FAILED")
