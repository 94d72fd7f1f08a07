"""assignments: which worker a task was placed on (and which of its GPUs), and whether the
order reached it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, select

from cloudai.core.lifecycle import TaskStatus
from cloudai.store.schema import assignments, tasks

__all__ = [
    "create",
    "is_delivered",
    "mark_delivered",
    "record_attempt",
    "remove",
    "undelivered",
    "worker_of",
]


def create(
    conn: Connection, task_id: str, worker_id: str, now: float, gpu_ids: Sequence[str] = ()
) -> None:
    values = {
        "task_id": task_id,
        "worker_id": worker_id,
        "assigned_at": now,
        "attempts": 0,
        "last_error": "",
        "gpu_ids": list(gpu_ids) or None,
    }
    conn.execute(_INSERT, values)


# Built once (hot paths: each submit, delivery, cancel and stop update).
_INSERT = assignments.insert()
_BY_TASK = assignments.c.task_id == bindparam("t_id")
_WORKER_OF = select(assignments.c.worker_id).where(_BY_TASK)
_DELIVERED_AT = select(assignments.c.delivered_at).where(_BY_TASK)
_MARK_DELIVERED = (
    assignments.update()
    .where(_BY_TASK, assignments.c.delivered_at.is_(None))
    .values(delivered_at=bindparam("at"), attempts=assignments.c.attempts + 1, last_error="")
)


def worker_of(conn: Connection, task_id: str) -> str | None:
    return conn.execute(_WORKER_OF, {"t_id": task_id}).scalar_one_or_none()


def is_delivered(conn: Connection, task_id: str) -> bool:
    return conn.execute(_DELIVERED_AT, {"t_id": task_id}).scalar_one_or_none() is not None


def mark_delivered(conn: Connection, task_id: str, now: float) -> None:
    conn.execute(_MARK_DELIVERED, {"t_id": task_id, "at": now})


def record_attempt(conn: Connection, task_id: str, error: str) -> int:
    """Count a failed delivery; returns the attempts so far."""
    conn.execute(
        assignments.update()
        .where(assignments.c.task_id == task_id)
        .values(attempts=assignments.c.attempts + 1, last_error=error[:2000])
    )
    n = conn.execute(
        select(assignments.c.attempts).where(assignments.c.task_id == task_id)
    ).scalar_one_or_none()
    return int(n or 0)


_UNDELIVERED = (  # built once: each dispatch round (each submit's wake-up) runs it
    select(assignments.c.task_id, assignments.c.worker_id)
    .join(tasks, tasks.c.task_id == assignments.c.task_id)
    .where(assignments.c.delivered_at.is_(None), tasks.c.status == TaskStatus.RUNNING.value)
    .order_by(assignments.c.assigned_at)
)


def undelivered(conn: Connection) -> list[tuple[str, str]]:
    """(task_id, worker_id) of running tasks whose assignment has not reached the worker."""
    return [(r[0], r[1]) for r in conn.execute(_UNDELIVERED)]


def remove(conn: Connection, task_id: str) -> None:
    """Forget a run's placement: the task goes back to the queue (its run kept as an attempt)."""
    conn.execute(assignments.delete().where(assignments.c.task_id == task_id))
