"""task_events: what happened to a task, when, and who did it. Only this module writes it."""

from __future__ import annotations

import time

from sqlalchemy import Connection, select

from cloudai.core.models import TaskEvent
from cloudai.store.schema import task_events

__all__ = ["add", "for_task"]


def add(
    conn: Connection,
    task_id: str,
    kind: str,
    actor: str,
    message: str = "",
    at: float | None = None,
) -> None:
    conn.execute(
        task_events.insert().values(
            task_id=task_id,
            at=time.time() if at is None else at,
            kind=kind,
            actor=actor,
            message=message,
        )
    )


def for_task(conn: Connection, task_id: str) -> tuple[TaskEvent, ...]:
    rows = conn.execute(
        select(task_events).where(task_events.c.task_id == task_id).order_by(task_events.c.id)
    ).mappings()
    return tuple(TaskEvent(r["at"], r["kind"], r["actor"], r["message"]) for r in rows)
