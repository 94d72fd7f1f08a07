"""The task lifecycle as a table: every allowed transition, and which states hold resources."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIVE",
    "HOLDS_RESOURCES",
    "TERMINAL",
    "TRANSITIONS",
    "TaskStatus",
    "allowed_sources",
    "can_transition",
]


class TaskStatus(StrEnum):
    PENDING = "pending"  # accepted, not yet placed on a worker
    RUNNING = "running"  # placed on a worker: starting or executing there
    COMPLETED = "completed"  # exited 0
    FAILED = "failed"  # exited non-zero, could not start, or was lost
    CANCELLED = "cancelled"  # a user asked it to stop


TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.CANCELLED}),
    # running -> pending: a run that failed (or was preempted) with retries left goes back to
    # the queue; the run's outcome is kept as an attempt, never as the task's result.
    TaskStatus.RUNNING: frozenset(
        {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.PENDING}
    ),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}

TERMINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
ACTIVE = frozenset(TaskStatus) - TERMINAL
# A task holds its worker's resources exactly while it is placed and not ended.
HOLDS_RESOURCES = frozenset({TaskStatus.RUNNING})


def can_transition(src: TaskStatus, dst: TaskStatus) -> bool:
    return dst in TRANSITIONS[src]


def allowed_sources(dst: TaskStatus) -> frozenset[TaskStatus]:
    """The states from which a task may move to `dst` (the WHERE of a guarded UPDATE)."""
    return frozenset(src for src, targets in TRANSITIONS.items() if dst in targets)
