"""task_events: what happened to a task, when, and who did it. Only this module writes it."""

from __future__ import annotations

import time

from sqlalchemy import Connection, func, select

from cloudai.core.models import TaskEvent
from cloudai.store.schema import task_events

__all__ = ["add", "for_task", "since"]

_INSERT = task_events.insert()  # built once: a hot path (every submit, cancel and stop)


def add(
    conn: Connection,
    task_id: str,
    kind: str,
    actor: str,
    message: str = "",
    at: float | None = None,
) -> None:
    conn.execute(
        _INSERT,
        {
            "task_id": task_id,
            "at": time.time() if at is None else at,
            "kind": kind,
            "actor": actor,
            "message": message,
        },
    )


def for_task(conn: Connection, task_id: str) -> tuple[TaskEvent, ...]:
    rows = conn.execute(
        select(task_events).where(task_events.c.task_id == task_id).order_by(task_events.c.id)
    ).mappings()
    return tuple(TaskEvent(r["at"], r["kind"], r["actor"], r["message"]) for r in rows)


def since(conn: Connection, after_id: int, limit: int) -> list[tuple[int, str, TaskEvent]]:
    """Events with an id above `after_id`, oldest first, at most `limit`: (id, task_id, event).
    What the web console's event stream follows."""
    rows = conn.execute(
        select(task_events)
        .where(task_events.c.id > after_id)
        .order_by(task_events.c.id)
        .limit(limit)
    ).mappings()
    return [
        (r["id"], r["task_id"], TaskEvent(r["at"], r["kind"], r["actor"], r["message"]))
        for r in rows
    ]


def last_id(conn: Connection) -> int:
    """The newest event's id (0: none)."""
    found = conn.execute(select(func.max(task_events.c.id))).scalar()
    return int(found or 0)
