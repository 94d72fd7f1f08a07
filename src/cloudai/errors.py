"""One exception root. Each error knows its gRPC status code and its CLI exit code.

Errors are translated in exactly two places: at the gRPC edge (rpc/errors.py) and at the CLI
edge (cli/main.py). Nowhere else catches broadly.
"""

from __future__ import annotations

import grpc

__all__ = [
    "AlreadyExists",
    "check",
    "exit_code_for",
    "CloudAIError",
    "Conflict",
    "InvalidArgument",
    "LoopFailed",
    "LimitExceeded",
    "NotFound",
    "NoCapacity",
    "PermissionDenied",
    "RateLimited",
    "RuntimeFailure",
    "StoreUnavailable",
    "Unauthenticated",
    "Unavailable",
    "WrongCluster",
]


class CloudAIError(Exception):
    """Root of every error cloudai raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(CloudAIError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    exit_code = 2


class LimitExceeded(InvalidArgument):
    """A message over a size limit (docs/limits.md): gRPC's own RESOURCE_EXHAUSTED, which must
    not read as "no worker has room"."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotFound(CloudAIError):
    code = grpc.StatusCode.NOT_FOUND
    exit_code = 3


class AlreadyExists(CloudAIError):
    code = grpc.StatusCode.ALREADY_EXISTS
    exit_code = 4


class Conflict(CloudAIError):
    """The request does not fit the current state (e.g. the task already ended)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    exit_code = 5


class WrongCluster(CloudAIError):
    """A worker and a master of different clusters (a master started on another store): the
    master refuses the call before it changes anything, and the worker refuses the master.
    Not a Conflict: a worker must never drop a result or a task on it; it waits for the right
    master. `cluster_id` is the master's."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    exit_code = 5

    def __init__(self, message: str, cluster_id: str = "") -> None:
        super().__init__(message)
        self.cluster_id = cluster_id


class NoCapacity(CloudAIError):
    """No worker (or not the named one) has room for the request."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    exit_code = 6


class Unavailable(CloudAIError):
    """A peer (master, worker, engine) did not answer."""

    code = grpc.StatusCode.UNAVAILABLE
    exit_code = 7


class StoreUnavailable(Unavailable):
    """The master's own database did not answer (down, unreachable, or full). Nothing was
    written; the master keeps running and picks up again once it answers."""


class RuntimeFailure(CloudAIError):
    """The container runtime refused or failed an operation (pull, create, start...)."""

    code = grpc.StatusCode.INTERNAL
    exit_code = 8


class Unauthenticated(CloudAIError):
    """No token, or one the master does not know (or a peer without the right certificate)."""

    code = grpc.StatusCode.UNAUTHENTICATED
    exit_code = 9


class PermissionDenied(CloudAIError):
    """The caller is known but may not do this (not the task's owner, not an admin)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    exit_code = 10


class RateLimited(CloudAIError):
    """Too many requests from one user: try again after `retry_after` seconds."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    exit_code = 11

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LoopFailed(CloudAIError):
    """A background loop failed beyond restarting (cloudai/loops.py): its process stops."""

    code = grpc.StatusCode.INTERNAL
    exit_code = 1


def check(*problems: str | None | list[str]) -> None:
    """Raise InvalidArgument with every problem given (core's rules return them), if any."""
    found: list[str] = []
    for p in problems:
        if isinstance(p, list):
            found.extend(p)
        elif p:
            found.append(p)
    if found:
        raise InvalidArgument("; ".join(found))


def exit_code_for(status_name: str) -> int:
    """The CLI exit code for a gRPC status name (as carried in a bulk answer's acks)."""
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        Conflict,
        NoCapacity,
        Unavailable,
        Unauthenticated,
        PermissionDenied,
    ):
        if cls.code.name == status_name:
            return cls.exit_code
    if status_name == "DEADLINE_EXCEEDED":
        return Unavailable.exit_code
    return CloudAIError.exit_code
