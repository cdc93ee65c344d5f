"""All stand-ins running together, and a configuration that points the daemon at them."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import anyio

from launch_supervisor.config import Config, parse_config
from launch_supervisor.sandbox.cloudrun_server import Behaviour, CloudRunStandIn
from launch_supervisor.sandbox.google_front import GoogleFront, make_tls
from launch_supervisor.sandbox.simulated import SimulatedLauncher, training_code
from launch_supervisor.sandbox.vertex_server import VertexStandIn
from launch_supervisor.sandbox.wandb_server import WandbStandIn
from launch_supervisor.surface.asgi import serve_asgi

PROJECT = "sandbox-project"
REGION = "us-central1"
ENTITY = "sandbox-team"


PRICES = (resources.files("launch_supervisor.sandbox") / "prices-us-central1.toml").read_text()
"""The shipped example price table: the sandbox counts costs with it, so every cost panel has data."""
FAST_POLL = (
    "queue_interval = 0.2\nexecutions_interval = 0.3\nvertex_interval = 0.3\njitter = 0\n"
    "queue_min_gap = 0.1\nexecutions_min_gap = 0.1\nvertex_min_gap = 0.1"
)
"""Poll intervals for tests: everything within a fraction of a second."""


def launcher_job(queue: str) -> str:
    return f"projects/{PROJECT}/locations/{REGION}/jobs/launcher-{queue}"


@dataclass
class Stack:
    wandb: WandbStandIn
    wandb_url: str
    cloudrun: CloudRunStandIn
    run_address: str
    vertex: VertexStandIn
    vertex_address: str
    queues: list[str]
    api_key: str
    launcher: Any = None
    google: GoogleFront = field(default_factory=lambda: GoogleFront(PROJECT))
    google_env: dict[str, str] = field(default_factory=dict)
    """What points an unmodified agent's Google libraries at the stand-ins (see `google_front`)."""

    def agent_env(self) -> dict[str, str]:
        """Everything the real `wandb launch-agent` needs to work against the stand-ins."""
        return {"WANDB_BASE_URL": self.wandb_url, "WANDB_API_KEY": self.api_key, **self.google_env}

    def config_toml(
        self,
        queue_settings: str = "",
        extra: str = "",
        poll: str = FAST_POLL,
        listen: str = "127.0.0.1:0",
        prices: str = PRICES,
    ) -> str:
        queues = "".join(
            f'\n[[queues]]\nname = "{q}"\nlauncher_job = "{launcher_job(q)}"\n{queue_settings}\n' for q in self.queues
        )
        return (
            f'[wandb]\nentity = "{ENTITY}"\nbase_url = "{self.wandb_url}"\nrequest_timeout = 2\n\n'
            f'[gcp]\nproject = "{PROJECT}"\nregion = "{REGION}"\nrequest_timeout = 2\n'
            f'run_endpoint = "{self.run_address}"\nvertex_endpoint = "{self.vertex_address}"\n\n'
            f"[poll]\n{poll}\n\n"
            f'[http]\nlisten = "{listen}"\n{extra}\n{prices}\n{queues}'
        )

    def config(self, queue_settings: str = "", extra: str = "", prices: str = PRICES) -> Config:
        text = self.config_toml(queue_settings, extra, prices=prices)
        return parse_config(text, "sandbox", {"WANDB_API_KEY": self.api_key})


@asynccontextmanager
async def stand_ins(
    queues: list[str],
    behaviour: Callable[[WandbStandIn, VertexStandIn], Behaviour] | None = None,
    lease_timeout: float = 60.0,
) -> AsyncIterator[Stack]:
    """Run the W&B, Cloud Run and Vertex stand-ins until the block ends."""
    api_key = secrets.token_hex(20)
    wandb = WandbStandIn(api_key, lease_timeout=lease_timeout)
    vertex = VertexStandIn(region=REGION)
    vertex.watch = training_code(wandb, vertex)
    launcher = (behaviour or SimulatedLauncher)(wandb, vertex)
    cloudrun = CloudRunStandIn([launcher_job(q) for q in queues], launcher)
    google = GoogleFront(PROJECT)
    with tempfile.TemporaryDirectory(prefix="launch-supervisor-tls-") as tls_dir:
        tls = make_tls(Path(tls_dir))
        vertex.tls = (tls.key, tls.chain)
        async with anyio.create_task_group() as tg:
            host, port = await tg.start(serve_asgi, wandb.app, "127.0.0.1", 0)
            wandb.base_url = f"http://{host}:{port}"
            run_address = await tg.start(cloudrun.serve)
            vertex_address = await tg.start(vertex.serve)
            google.vertex_tls_address = vertex.tls_address
            metadata_host, metadata_port = await tg.start(serve_asgi, google.metadata_app, "127.0.0.1", 0)
            proxy = await tg.start(google.serve_proxy)
            stack = Stack(
                wandb, wandb.base_url, cloudrun, run_address, vertex, vertex_address, queues, api_key, launcher, google
            )
            stack.google_env = google.environment(f"{metadata_host}:{metadata_port}", proxy, tls)
            try:
                yield stack
            finally:
                tg.cancel_scope.cancel()
