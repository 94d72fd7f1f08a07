"""results: one row per task, the first report wins (results.task_id is unique)."""

from __future__ import annotations

from sqlalchemy import Connection, RowMapping, bindparam, select

from cloudai.core.models import TaskResult
from cloudai.store._dialect import insert_ignore
from cloudai.store.schema import results

__all__ = ["get", "insert_once"]


def insert_once(conn: Connection, result: TaskResult, now: float) -> bool:
    """Store `result` unless the task already has one; True when this one was stored.

    The unique constraint decides, so two concurrent reports can never both be stored."""
    return insert_ignore(
        conn,
        results,
        "task_id",
        {
            "task_id": result.task_id,
            "worker_id": result.worker_id,
            "status": result.status.value,
            "logs": result.logs,
            "exit_code": result.exit_code,
            "error": result.error,
            "oom_killed": result.oom_killed,
            "started_at": result.started_at,
            "completed_at": result.completed_at or now,
            "received_at": now,
        },
    )


_GET = select(results).where(results.c.task_id == bindparam("t_id"))  # built once: hot


def get(conn: Connection, task_id: str) -> RowMapping | None:
    return conn.execute(_GET, {"t_id": task_id}).mappings().first()
