"""The launcher job's size: its CPU and memory limits as Kubernetes quantities, Cloud Run's defaults
where it sets none, and GetJob against the Cloud Run stand-in."""

from __future__ import annotations

import pytest
from google.cloud import run_v2

from launch_supervisor.clients import build_clients
from launch_supervisor.engines.trackers.launcher import LimitError, cpu, gib, size_of
from launch_supervisor.sandbox.stack import launcher_job, stand_ins


def test_quantities_as_cloud_run_takes_them() -> None:
    """deploy/gcp/launcher-job.yaml says cpu "2", memory 2Gi; the other forms Kubernetes allows."""
    assert cpu("2") == 2.0
    assert cpu("1000m") == 1.0
    assert cpu("0.5") == 0.5
    assert gib("2Gi") == 2.0
    assert gib("512Mi") == 0.5
    assert gib("1G") == pytest.approx(10**9 / 2**30)


@pytest.mark.parametrize("bad", ["two", "2 cores", "", "1.5x"])
def test_a_limit_that_is_no_quantity_is_a_clear_error(bad: str) -> None:
    """A limit that is no quantity is an error naming the value and the form it should take."""
    with pytest.raises(LimitError, match="is not"):
        cpu(bad)
    with pytest.raises(LimitError, match="is not a quantity such as 512Mi or 2Gi"):
        gib(bad)


def test_a_container_without_limits_gets_cloud_run_s_defaults() -> None:
    """1 vCPU and 512 MiB (Cloud Run documentation, CPU and memory limits for jobs)."""
    job = run_v2.Job(template=run_v2.ExecutionTemplate(template=run_v2.TaskTemplate(containers=[run_v2.Container()])))
    assert size_of(job) == (1.0, 0.5)
    assert size_of(run_v2.Job()) == (1.0, 0.5)


@pytest.mark.anyio
async def test_get_job_reads_the_size_from_the_stand_in() -> None:
    """The production client reads the job's limits with GetJob."""
    async with stand_ins(["q"]) as stack:
        stack.cloudrun.limits = {"cpu": "4", "memory": "8Gi"}
        clients = build_clients(stack.config())
        try:
            assert await clients.launcher.size(launcher_job("q")) == (4.0, 8.0)
        finally:
            await clients.aclose()
