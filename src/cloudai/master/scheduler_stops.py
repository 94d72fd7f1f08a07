"""The scheduler's own stops (a time limit, a preemption) inside the cancel decision
(master/canceller._decide_tx), which takes a `final` status: what the stop ends the task as
(`cancelled`: a user's cancel or a preemption; `failed`: a time limit), or None: the task runs
until its stop is done, then goes back to the queue (master/retries.py). Functions of one
transaction."""

from __future__ import annotations

from sqlalchemy import Connection

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Task
from cloudai.store import cancellations, tasks

__all__ = ["settle", "set_status"]


def settle(conn: Connection, task: Task, final: TaskStatus | None) -> bool:
    """True when this stop has nothing to do: a scheduler's stop of a task another stop is
    ending already, or a stop-to-requeue of a task that is not running. A user's cancel of a
    task a scheduler's stop is ending takes that stop over: its row gives way to the cancel's
    (the order on its way carries on; the worker answers that it is stopping already)."""
    existing = cancellations.get(conn, task.task_id)
    if final is TaskStatus.CANCELLED:
        if existing is not None and task.status is TaskStatus.RUNNING:
            cancellations.forget(conn, task.task_id)
        return False
    if final is None and task.status is not TaskStatus.RUNNING:
        return True
    return existing is not None


def set_status(
    conn: Connection, task_id: str, final: TaskStatus | None, now: float, why: str
) -> bool:
    """The decision's compare-and-set (none for a stop-to-requeue); True when it won."""
    return final is None or tasks.transition(conn, task_id, final, completed_at=now, reason=why)
