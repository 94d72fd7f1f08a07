"""The gRPC edge of error translation: CloudAIError -> status code, and back for clients."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from cloudai import errors
from cloudai.core.limits import MAX_REPLY_BYTES, MAX_REQUEST_BYTES

__all__ = ["from_rpc_error", "translate", "translate_stream"]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_BY_CODE: dict[grpc.StatusCode, type[errors.CloudAIError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.Conflict,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}
RETRY_AFTER = "cloudai-retry-after"  # trailing metadata of a rate-limited call: seconds
CLUSTER_ID = "cloudai-cluster-id"  # trailing metadata of a WrongCluster refusal: the master's


# Trailing metadata naming the CloudAIError a server raised on purpose: a client tells it from
# the same status code raised by gRPC itself (RESOURCE_EXHAUSTED: "no worker has room", a rate
# limit, or a message over the size limit; UNAVAILABLE: "a peer of the server's did not
# answer", or "the server did not answer").
_KIND_KEY = "cloudai-error"
_DETAIL_MAX = 2000  # characters of an error message sent (gRPC caps trailers at 8 KiB)


def _kinds() -> dict[str, type[errors.CloudAIError]]:
    out: dict[str, type[errors.CloudAIError]] = {}
    todo: list[type[errors.CloudAIError]] = [errors.CloudAIError]
    while todo:
        cls = todo.pop()
        out[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return out


async def _abort(
    context: grpc.aio.ServicerContext, exc: BaseException, name: str, servicer: Any = None
) -> None:
    """Abort the call with the status for `exc`. An error that is not a CloudAIError is a bug:
    the client gets a generic message and an incident ID, the log the traceback under that
    ID; its text (an SQL statement, a path, a value) never reaches the client."""
    if isinstance(exc, errors.CloudAIError):
        code, kind, detail = exc.code, type(exc).__name__, exc.message
        if len(detail) > _DETAIL_MAX:
            detail = detail[: _DETAIL_MAX - 1] + "…"
    else:
        incident = secrets.token_hex(6)
        log.error("✗ incident %s: unexpected error in %s", incident, name, exc_info=exc)
        code, kind = grpc.StatusCode.INTERNAL, "internal"
        detail = f"internal error in {name} (incident {incident}; the server's log has the details)"
    metrics = getattr(servicer, "metrics", None)
    if metrics is not None:
        metrics.rpc_errors.labels(name, code.name).inc()
    trailing: tuple[tuple[str, str], ...] = ((_KIND_KEY, kind),)
    if isinstance(exc, errors.RateLimited):
        trailing += ((RETRY_AFTER, f"{exc.retry_after:.3f}"),)
    if isinstance(exc, errors.WrongCluster):
        trailing += ((CLUSTER_ID, exc.cluster_id),)
    await context.abort(code, detail, trailing_metadata=trailing)


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


def _trailer(exc: grpc.RpcError, key: str) -> str:
    """A trailing metadata value of a failed call ("" when it has none)."""
    trailing = getattr(exc, "trailing_metadata", None)
    try:
        pairs = trailing() if callable(trailing) else None
    except Exception:  # noqa: BLE001 - a call that failed before any trailer has none
        return ""
    for k, value in pairs or ():
        if k == key:
            return str(value)
    return ""


def _kind_of(exc: grpc.RpcError) -> str:
    """The CloudAIError a cloudai server raised on purpose ("" for gRPC's own errors)."""
    return _trailer(exc, _KIND_KEY)


def from_rpc_error(exc: grpc.RpcError, peer: str) -> errors.CloudAIError:
    """A client-side RpcError as the matching CloudAIError, with a one-line message."""
    code = exc.code()
    detail = (exc.details() or code.name).strip()
    kind = _kind_of(exc)
    if code == grpc.StatusCode.UNAVAILABLE and kind:
        return errors.Unavailable(detail)  # the peer answered: something behind it did not
    if code == grpc.StatusCode.UNAVAILABLE:
        why = "connection refused" if "refused" in detail.lower() else detail.splitlines()[0]
        return errors.Unavailable(f"cannot reach {peer}: {why}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Unavailable(f"{peer} did not answer in time")
    if kind == errors.WrongCluster.__name__:
        return errors.WrongCluster(detail, _trailer(exc, CLUSTER_ID))
    if kind == errors.RateLimited.__name__:
        try:
            return errors.RateLimited(detail, float(_trailer(exc, RETRY_AFTER)))
        except ValueError:
            return errors.RateLimited(detail)
    cls = _kinds().get(kind)
    if cls is not None:
        return cls(detail)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # gRPC's own: a message over the limit
        mib = 1024 * 1024
        return errors.LimitExceeded(
            f"{detail.splitlines()[0]} (with {peer}): a request may be at most "
            f"{MAX_REQUEST_BYTES // mib} MiB and a reply {MAX_REPLY_BYTES // mib} MiB"
        )
    return _BY_CODE.get(code, errors.CloudAIError)(detail)
