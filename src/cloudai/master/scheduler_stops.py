"""The scheduler's own stops (a time limit, a preemption) inside the cancel decision
(master/canceller._decide_tx): when one has nothing to do, and a user's cancel that meets one
already under way. Functions of one transaction."""

from __future__ import annotations

from sqlalchemy import Connection

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Cancellation, Task
from cloudai.store import cancellations, events

__all__ = ["moot", "under_way"]


def moot(conn: Connection, task: Task, final: TaskStatus | None) -> bool:
    """A scheduler's stop (`final` other than cancelled) of a task another stop is already
    ending, or a stop-to-requeue (`final` None) of a task that is not running."""
    if final is TaskStatus.CANCELLED:
        return False
    if final is None and task.status is not TaskStatus.RUNNING:
        return True
    return cancellations.get(conn, task.task_id) is not None


def under_way(
    conn: Connection, task_id: str, actor: str, why: str, now: float
) -> Cancellation | None:
    """The stop already on its way (a scheduler's), which now ends the task as decided."""
    earlier = cancellations.get(conn, task_id)
    if earlier is not None:
        events.add(conn, task_id, "cancel_requested", actor, f"{why}; its stop is under way", now)
    return earlier
