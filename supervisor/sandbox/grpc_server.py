"""Serving generic gRPC handlers on a loopback port inside an anyio task group."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import anyio
import grpc
from anyio.abc import TaskStatus

from launch_supervisor.sandbox.faults import Fault, Faults

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def unary(fn: Handler, request: Any, response: Any) -> grpc.RpcMethodHandler:
    """A unary handler for proto-plus or protobuf request/response classes."""
    deserialize = getattr(request, "deserialize", None) or request.FromString
    serialize = getattr(response, "serialize", None) or response.SerializeToString
    return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=deserialize, response_serializer=serialize)


async def apply_fault(faults: Faults, method: str, context: grpc.aio.ServicerContext) -> Fault | None:
    """Delay or fail this call if a fault is planned for `method`; a `late` fault is returned for
    the handler to apply with `inflict` after doing its work."""
    fault = faults.take(method)
    if fault is None or fault.late:
        return fault
    await inflict(fault, context)
    return None


async def inflict(fault: Fault, context: grpc.aio.ServicerContext) -> None:
    if fault.delay:
        await anyio.sleep(fault.delay)
    if fault.status is not None:
        await context.abort(grpc.StatusCode[str(fault.status)], f"injected {fault.status}")


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the call with `code`; never returns."""
    await context.abort(code, message)
    raise AssertionError("grpc context.abort returned")


async def serve(
    handlers: Sequence[grpc.GenericRpcHandler],
    credentials: grpc.ServerCredentials | None = None,
    *,
    task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled, over TLS when `credentials` are given; reports "127.0.0.1:PORT"."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(tuple(handlers))
    address = "127.0.0.1:0"
    port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    await server.start()
    try:
        task_status.started(f"127.0.0.1:{port}")
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await server.stop(grace=0.2)
