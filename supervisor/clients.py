"""Building the API clients from the configuration, inside the running event loop.

grpc.aio clients bind to the event loop they are created in, so this runs in the daemon's loop.
Production endpoints use Application Default Credentials; a loopback endpoint (the sandbox, the
tests) gets a plain insecure channel and no credentials, so the production client classes are
exercised over the wire either way.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import grpc
from google.api_core.client_options import ClientOptions
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import aiplatform_v1, run_v2
from google.cloud.aiplatform_v1.services.job_service.transports.grpc_asyncio import JobServiceGrpcAsyncIOTransport
from google.cloud.run_v2.services.executions.transports import ExecutionsGrpcAsyncIOTransport
from google.cloud.run_v2.services.jobs.transports import JobsGrpcAsyncIOTransport

from launch_supervisor.calls.observe import ObserveCall, ignore_call
from launch_supervisor.config import Config
from launch_supervisor.engines.dispatch.cloudrun import CloudRunCanceller, CloudRunDispatcher
from launch_supervisor.engines.sources.wandb import WandbClient
from launch_supervisor.engines.trackers.executions import ExecutionsTracker
from launch_supervisor.engines.trackers.launcher import LauncherReader
from launch_supervisor.engines.trackers.vertex import VertexTracker


class CredentialsError(Exception):
    """No Google credentials could be found."""


def is_loopback(endpoint: str) -> bool:
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Clients:
    wandb: WandbClient
    dispatcher: CloudRunDispatcher
    canceller: CloudRunCanceller
    executions: ExecutionsTracker
    vertex: VertexTracker
    launcher: LauncherReader
    _channels: list[grpc.aio.Channel]

    async def aclose(self) -> None:
        await self.wandb.aclose()
        for channel in self._channels:
            await channel.close()


def build_clients(config: Config, observe: ObserveCall = ignore_call) -> Clients:
    """The clients the daemon uses; raises CredentialsError without Google credentials."""
    gcp = config.gcp
    channels: list[grpc.aio.Channel] = []
    try:
        if gcp.run_endpoint and is_loopback(gcp.run_endpoint):
            run_channel = grpc.aio.insecure_channel(gcp.run_endpoint)
            channels.append(run_channel)
            jobs = run_v2.JobsAsyncClient(transport=JobsGrpcAsyncIOTransport(channel=run_channel))
            executions = run_v2.ExecutionsAsyncClient(transport=ExecutionsGrpcAsyncIOTransport(channel=run_channel))
        else:
            options = ClientOptions(api_endpoint=gcp.run_endpoint) if gcp.run_endpoint else None
            jobs = run_v2.JobsAsyncClient(client_options=options)
            executions = run_v2.ExecutionsAsyncClient(client_options=options)
        if gcp.vertex_endpoint and is_loopback(gcp.vertex_endpoint):
            vertex_channel = grpc.aio.insecure_channel(gcp.vertex_endpoint)
            channels.append(vertex_channel)
            job_service = aiplatform_v1.JobServiceAsyncClient(
                transport=JobServiceGrpcAsyncIOTransport(channel=vertex_channel)
            )
        else:
            endpoint = gcp.vertex_endpoint or f"{gcp.region}-aiplatform.googleapis.com"
            job_service = aiplatform_v1.JobServiceAsyncClient(client_options=ClientOptions(api_endpoint=endpoint))
    except DefaultCredentialsError as exc:
        raise CredentialsError(
            "no Google credentials: set up Application Default Credentials "
            "(on a VM: a service account with the cloud-platform scope; elsewhere: "
            "`gcloud auth application-default login`, or GOOGLE_APPLICATION_CREDENTIALS=/path/to/key.json)"
        ) from exc
    assert config.wandb.api_key is not None
    timeout = gcp.request_timeout
    return Clients(
        wandb=WandbClient(
            config.wandb.base_url,
            config.wandb.api_key.get_secret_value(),
            config.wandb.request_timeout,
            observe=observe,
            max_pages=config.wandb.max_item_pages,
        ),
        dispatcher=CloudRunDispatcher(jobs, timeout, observe),
        canceller=CloudRunCanceller(executions, timeout, observe),
        executions=ExecutionsTracker(executions, timeout, observe),
        vertex=VertexTracker(job_service, f"projects/{gcp.project}/locations/{gcp.region}", timeout, observe),
        launcher=LauncherReader(jobs, timeout, observe),
        _channels=channels,
    )
