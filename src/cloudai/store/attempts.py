"""task_attempts: a task's earlier runs (retried, or preempted and sent back to the queue).
Only this module writes the table; the task's own row holds its current run."""

from __future__ import annotations

from sqlalchemy import Connection, select

from cloudai.core.policy import Attempt
from cloudai.store.schema import task_attempts

__all__ = ["for_task", "record"]


def record(conn: Connection, task_id: str, a: Attempt) -> None:
    conn.execute(
        task_attempts.insert().values(
            task_id=task_id,
            number=a.number,
            worker_id=a.worker_id,
            status=a.status,
            exit_code=a.exit_code,
            reason=a.reason,
            oom_killed=a.oom_killed,
            started_at=a.started_at,
            ended_at=a.ended_at,
            gpu_ids=list(a.gpu_ids) or None,
        )
    )


def for_task(conn: Connection, task_id: str) -> tuple[Attempt, ...]:
    rows = conn.execute(
        select(task_attempts)
        .where(task_attempts.c.task_id == task_id)
        .order_by(task_attempts.c.number)
    ).mappings()
    return tuple(
        Attempt(
            number=r["number"],
            worker_id=r["worker_id"],
            status=r["status"],
            exit_code=r["exit_code"],
            reason=r["reason"],
            started_at=r["started_at"],
            ended_at=r["ended_at"],
            oom_killed=bool(r["oom_killed"]),
            gpu_ids=tuple(r["gpu_ids"] or ()),
        )
        for r in rows
    )
