"""The stop's life as a table, beside the task's (core/lifecycle.py): pure, no I/O.

A cancel sets the task's *desired* state at once (`cancelled`, for good). The stop's *actual*
stage then catches up, forward only:

    requested -> delivered -> signalled -> killed -> exited -> removed
                          \\______________________________/
                                     stop_failed (a kill or removal that failed)

A stage may be skipped (a force stop has no grace; a report may carry the exit and the
removal at once), never gone back to. Until the stop reaches `exited` or `removed`, the task
still holds its worker's resources: its container may run for its whole grace period, or for
ever after a failed kill (Kubernetes keeps a terminating pod's resources the same way).
`stop_failed` holds them too, so nothing new lands on memory, CPU or a GPU still in use."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "RELEASED",
    "STAGE_COLUMNS",
    "TRANSITIONS",
    "StopStage",
    "can_advance",
    "holds_resources",
    "stage_of",
]


class StopStage(StrEnum):
    REQUESTED = "requested"  # decided in the store; the worker may not know yet
    DELIVERED = "delivered"  # the worker acknowledged the order
    SIGNALLED = "signalled"  # the stop signal was sent
    KILLED = "killed"  # SIGKILL after the grace (or at once, forced)
    EXITED = "exited"  # the process is gone; its exit code is known
    REMOVED = "removed"  # the container is gone: the stop is over
    STOP_FAILED = "stop_failed"  # a kill or removal failed: the container may still run


_ORDER = [
    StopStage.REQUESTED,
    StopStage.DELIVERED,
    StopStage.SIGNALLED,
    StopStage.KILLED,
    StopStage.EXITED,
    StopStage.REMOVED,
]

# Every allowed move: forward along _ORDER (skipping is fine), and to stop_failed from any
# stage before the end; a failed stop may still end (a later retry removed it).
TRANSITIONS: dict[StopStage, frozenset[StopStage]] = {
    **{
        stage: frozenset(_ORDER[i + 1 :])
        | (frozenset({StopStage.STOP_FAILED}) if stage is not StopStage.REMOVED else frozenset())
        for i, stage in enumerate(_ORDER)
    },
    StopStage.STOP_FAILED: frozenset({StopStage.EXITED, StopStage.REMOVED}),
}

# Stages at which the task's container no longer holds its worker's resources.
RELEASED = frozenset({StopStage.EXITED, StopStage.REMOVED})

# The column of `cancellations` that records when each stage was reached (requested_at is
# the request; stop_failed is told by stop_error with no exit).
STAGE_COLUMNS: dict[StopStage, str] = {
    StopStage.REQUESTED: "requested_at",
    StopStage.DELIVERED: "delivered_at",
    StopStage.SIGNALLED: "signal_at",
    StopStage.KILLED: "killed_at",
    StopStage.EXITED: "exited_at",
    StopStage.REMOVED: "removed_at",
}


def can_advance(src: StopStage, dst: StopStage) -> bool:
    return dst in TRANSITIONS[src]


def holds_resources(stage: StopStage) -> bool:
    return stage not in RELEASED


def stage_of(
    *,
    delivered_at: float | None,
    signal_at: float | None,
    killed_at: float | None,
    exited_at: float | None,
    removed_at: float | None,
    stop_error: str = "",
) -> StopStage:
    """The furthest stage the recorded times show."""
    if removed_at is not None:
        return StopStage.REMOVED
    if exited_at is not None:
        return StopStage.EXITED
    if stop_error:
        return StopStage.STOP_FAILED
    if killed_at is not None:
        return StopStage.KILLED
    if signal_at is not None:
        return StopStage.SIGNALLED
    if delivered_at is not None:
        return StopStage.DELIVERED
    return StopStage.REQUESTED
