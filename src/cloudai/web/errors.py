"""Errors at the HTTP edge: each cloudai error as JSON with its HTTP status. The third edge
beside rpc/errors.py (gRPC) and the CLI's main (exit codes), with the same one-line message."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from cloudai.errors import (
    AlreadyExists,
    CloudAIError,
    Conflict,
    InvalidArgument,
    LimitExceeded,
    NoCapacity,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from cloudai.master.canceller import CancelOutcome

__all__ = ["error_middleware", "http_status", "outcome_status"]

log = logging.getLogger("cloudai.web")

# Most specific first: LimitExceeded is an InvalidArgument, RateLimited shares a gRPC code.
_STATUS: list[tuple[type[CloudAIError], int]] = [
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),  # e.g. the task already completed
    (AlreadyExists, 409),
    (LimitExceeded, 413),
    (InvalidArgument, 422),
    (RateLimited, 429),
    (NoCapacity, 503),
    (Unavailable, 503),
]
_BY_GRPC = {cls.code.name: status for cls, status in reversed(_STATUS)}
_BY_GRPC["FAILED_PRECONDITION"] = 409
_BY_GRPC["INVALID_ARGUMENT"] = 422


def http_status(exc: CloudAIError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def outcome_status(outcome: CancelOutcome) -> int:
    """A cancel's answer for one task: 200, or the status of the error its ack carries."""
    if outcome.success:
        return 200
    return _BY_GRPC.get(outcome.error_code, 500)


def error_json(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"status": status, "message": message}}, status=status, headers=headers
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CloudAIError as exc:
        status = http_status(exc)
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="cloudai"'
        if status == 500:
            log.error("✗ %s %s: %s", request.method, request.path, exc.message)
        if not request.path.startswith("/api/"):
            if status == 401:  # a page: to the login form
                raise web.HTTPSeeOther("/login") from None
            return web.Response(status=status, text=exc.message)
        return error_json(status, exc.message, headers)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        return error_json(exc.status, exc.reason)
