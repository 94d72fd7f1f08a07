"""The gRPC edge of error translation: CloudAIError -> status code, and back for clients."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from cloudai import errors

__all__ = ["from_rpc_error", "translate", "translate_stream"]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_BY_CODE: dict[grpc.StatusCode, type[errors.CloudAIError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.Conflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.NoCapacity,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}
RETRY_AFTER = "cloudai-retry-after"  # trailing metadata of a rate-limited call: seconds
CLUSTER_ID = "cloudai-cluster-id"  # trailing metadata of a WrongCluster refusal: the master's


async def _abort(
    context: grpc.aio.ServicerContext, exc: BaseException, name: str, servicer: Any = None
) -> None:
    code = exc.code if isinstance(exc, errors.CloudAIError) else grpc.StatusCode.INTERNAL
    metrics = getattr(servicer, "metrics", None)
    if metrics is not None:
        metrics.rpc_errors.labels(name, code.name).inc()
    if isinstance(exc, errors.RateLimited):
        await context.abort(
            exc.code, exc.message, trailing_metadata=((RETRY_AFTER, f"{exc.retry_after:.3f}"),)
        )
    if isinstance(exc, errors.WrongCluster):
        await context.abort(
            exc.code, exc.message, trailing_metadata=((CLUSTER_ID, exc.cluster_id),)
        )
    if isinstance(exc, errors.CloudAIError):
        await context.abort(exc.code, exc.message)
    log.exception("unexpected error in %s", name)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


def translate(fn: F) -> F:
    """Wrap a unary servicer method: CloudAIError -> its status; anything else -> INTERNAL."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # the edge: every error becomes a status code here
            await _abort(context, exc, fn.__name__, self)

    return wrapper  # type: ignore[return-value]


def translate_stream(
    fn: Callable[..., AsyncIterator[Any]],
) -> Callable[..., AsyncIterator[Any]]:
    """The same as `translate`, for server-streaming methods."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            async for item in fn(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # the edge
            await _abort(context, exc, fn.__name__, self)

    return wrapper


def from_rpc_error(exc: grpc.aio.AioRpcError, peer: str) -> errors.CloudAIError:
    """A client-side RpcError as the matching CloudAIError, with a one-line message."""
    code = exc.code()
    cls = _BY_CODE.get(code, errors.CloudAIError)
    detail = exc.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE:
        why = "connection refused" if "refused" in detail.lower() else detail.splitlines()[0]
        return errors.Unavailable(f"cannot reach {peer}: {why}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Unavailable(f"{peer} did not answer in time")
    trailing = dict(exc.trailing_metadata() or ())
    if code == grpc.StatusCode.FAILED_PRECONDITION and CLUSTER_ID in trailing:
        return errors.WrongCluster(detail, str(trailing[CLUSTER_ID]))
    retry = trailing.get(RETRY_AFTER)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry is not None:
        try:
            return errors.RateLimited(detail, float(retry))
        except ValueError:
            return errors.RateLimited(detail)
    return cls(detail)
