"""How the unmodified agent reaches the stand-ins as if they were Google.

The real `wandb launch-agent` creates CustomJobs through `google-cloud-aiplatform`, which dials
`{region}-aiplatform.googleapis.com:443` over TLS and takes credentials from Application Default
Credentials. Nothing in the agent or its libraries is patched; three supported switches of grpc and
google-auth route it here instead:

- `grpc_proxy`: grpc sends `CONNECT host:443` to a local proxy, which joins every
  `*-aiplatform.googleapis.com` to the Vertex stand-in's TLS port and refuses any other host;
- `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`: grpc trusts a CA made for this run, which signed the stand-in's
  certificate for `*.googleapis.com`;
- `GCE_METADATA_HOST` / `GCE_METADATA_IP`: google-auth finds a metadata server, as on Cloud Run, and
  takes its project and access token from the stand-in below.

Every request the stand-ins do not know is recorded in `unknown`, so a test can fail loudly and name it.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

GOOGLE_SUFFIX = ".googleapis.com"
VERTEX_SUFFIX = "-aiplatform.googleapis.com"
MAX_CONNECT_HEADER = 16 * 1024


@dataclass(frozen=True, slots=True)
class Tls:
    """A CA made for one run and a server certificate it signed for `*.googleapis.com`."""

    ca_file: Path
    """PEM of the CA: what clients are told to trust."""
    key: bytes
    """PEM private key of the server certificate."""
    chain: bytes
    """PEM server certificate."""


def make_tls(directory: Path) -> Tls:
    """Create the CA and the server certificate; the CA's PEM is written to `directory`."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "launch-supervisor sandbox CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(f"*{GOOGLE_SUFFIX}"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"*{GOOGLE_SUFFIX}")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_file = directory / "sandbox-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Tls(ca_file, key_pem, cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class GoogleFront:
    """The metadata server and the CONNECT proxy, and what they were asked."""

    project: str
    vertex_tls_address: str = ""
    """host:port of the Vertex stand-in's TLS port: where CONNECTs to Vertex are joined."""
    token: str = field(default_factory=lambda: "ya29.sandbox-" + secrets.token_hex(16))
    service_account: str = "launcher@sandbox-project.iam.gserviceaccount.com"
    unknown: list[str] = field(default_factory=list)
    """Requests nobody here answers: metadata paths, CONNECT targets."""
    tokens_issued: int = 0
    tunnels: int = 0

    # -- the metadata server --------------------------------------------------------------------

    @property
    def metadata_app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._metadata, methods=["GET"])])

    async def _metadata(self, request: Request) -> Response:
        headers = {"Metadata-Flavor": "Google"}
        if request.headers.get("metadata-flavor") != "Google" and request.url.path != "/":
            return PlainTextResponse("Missing Metadata-Flavor: Google", status_code=403, headers=headers)
        path = request.url.path.rstrip("/")
        account = "/computeMetadata/v1/instance/service-accounts/default"
        answers: Mapping[str, str] = {
            "": "",
            "/computeMetadata/v1/project/project-id": self.project,
            "/computeMetadata/v1/project/numeric-project-id": "123456",
            "/computeMetadata/v1/universe/universe-domain": "googleapis.com",
            f"{account}/email": self.service_account,
            f"{account}/scopes": "https://www.googleapis.com/auth/cloud-platform",
        }
        if path == f"{account}/token":
            self.tokens_issued += 1
            body = {"access_token": self.token, "expires_in": 3599, "token_type": "Bearer"}
            return JSONResponse(body, headers=headers)
        if path == account:
            info = {
                "aliases": ["default"],
                "email": self.service_account,
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            }
            return JSONResponse(info, headers=headers)
        if path in answers:
            return PlainTextResponse(answers[path], headers=headers)
        self.unknown.append(f"metadata GET {request.url.path}")
        return PlainTextResponse("not found", status_code=404, headers=headers)

    # -- the CONNECT proxy ----------------------------------------------------------------------

    async def serve_proxy(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Accept CONNECTs on a loopback port until cancelled; reports "127.0.0.1:PORT"."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            port = listener.extra(SocketAttribute.local_port)  # noqa: S610 - anyio's typed attributes, not Django
            task_status.started(f"127.0.0.1:{port}")
            await listener.serve(self._tunnel)

    async def _tunnel(self, client: SocketStream) -> None:
        async with client:
            header = b""
            while b"\r\n\r\n" not in header:
                try:
                    chunk = await client.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                header += chunk
                if len(header) > MAX_CONNECT_HEADER:
                    return
            head, _, rest = header.partition(b"\r\n\r\n")
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            target = parts[1] if len(parts) >= 2 and parts[0] == "CONNECT" else ""
            host, _, port = target.rpartition(":")
            if not (host.endswith(VERTEX_SUFFIX) and port == "443" and self.vertex_tls_address):
                self.unknown.append(f"proxy {' '.join(parts[:2]) or 'empty request'}")
                await client.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            vertex_host, _, vertex_port = self.vertex_tls_address.rpartition(":")
            try:
                upstream = await anyio.connect_tcp(vertex_host, int(vertex_port))
            except OSError:
                await client.send(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            self.tunnels += 1
            async with upstream:
                await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    await upstream.send(rest)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_pipe, client, upstream, tg.cancel_scope)
                    tg.start_soon(_pipe, upstream, client, tg.cancel_scope)

    # -- what the agent's process needs -------------------------------------------------------

    def environment(self, metadata_address: str, proxy_address: str, tls: Tls) -> dict[str, str]:
        """The variables that point the agent's Google libraries here."""
        return {
            "GCE_METADATA_HOST": metadata_address,
            "GCE_METADATA_IP": metadata_address,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(tls.ca_file),
            "grpc_proxy": f"http://{proxy_address}",
            "no_grpc_proxy": "127.0.0.1,localhost",
        }


async def _pipe(source: SocketStream, sink: SocketStream, scope: anyio.CancelScope) -> None:
    """Copy bytes one way; when either side closes, end the whole tunnel."""
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        scope.cancel()
