"""The launcher job's size: the CPU and memory each execution's task is billed for (docs/architecture.md,
Cost).

Read once per queue with Cloud Run's GetJob (`template.template.containers[0].resources.limits`).
Limits are Kubernetes quantities: CPU as `2` or `1000m`, memory as `2Gi`, `512Mi` or `1G`. A container
without limits gets Cloud Run's defaults for jobs: 1 vCPU and 512 MiB (Cloud Run documentation,
"Configure CPU limits for jobs" and "Configure memory limits for jobs").
"""

from __future__ import annotations

import re

from google.cloud import run_v2

from launch_supervisor.calls.gcp import observed, read_retry
from launch_supervisor.calls.observe import ObserveCall, ignore_call

DEFAULT_CPU = 1.0
DEFAULT_GIB = 0.5
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")
_MEMORY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


class LimitError(ValueError):
    """A CPU or memory limit that is no Kubernetes quantity."""


def cpu(text: str) -> float:
    """vCPUs from a CPU limit: `2`, `0.5`, `1000m`."""
    match = _QUANTITY.match(text)
    if not match or match.group(2) not in ("", "m"):
        raise LimitError(f"CPU limit {text!r} is not a number of vCPUs such as 2 or 1000m")
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "m" else value


def gib(text: str) -> float:
    """GiB from a memory limit: `2Gi`, `512Mi`, `1G`."""
    match = _QUANTITY.match(text)
    if not match or match.group(2) not in _MEMORY_UNITS:
        raise LimitError(f"memory limit {text!r} is not a quantity such as 512Mi or 2Gi")
    return float(match.group(1)) * _MEMORY_UNITS[match.group(2)] / 2**30


def size_of(job: run_v2.Job) -> tuple[float, float]:
    """(vCPU, GiB) of the job's first container, Cloud Run's defaults where it sets none."""
    containers = job.template.template.containers
    limits = dict(containers[0].resources.limits) if containers else {}
    vcpu = cpu(limits["cpu"]) if "cpu" in limits else DEFAULT_CPU
    memory = gib(limits["memory"]) if "memory" in limits else DEFAULT_GIB
    return vcpu, memory


class LauncherReader:
    def __init__(self, jobs: run_v2.JobsAsyncClient, timeout: float, observe: ObserveCall = ignore_call) -> None:
        self._jobs = jobs
        self._timeout = timeout
        self._observe = observe

    async def size(self, job: str) -> tuple[float, float]:
        """(vCPU, GiB) of the launcher job's task; GoogleAPICallError or LimitError when unreadable."""
        request = run_v2.GetJobRequest(name=job)
        found = await observed(
            self._observe,
            "cloudrun",
            "GetJob",
            lambda: self._jobs.get_job(request=request, timeout=self._timeout, retry=read_retry(self._timeout)),
        )
        return size_of(found)
