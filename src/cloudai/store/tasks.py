"""tasks: what to run and how far it got. Only this module writes the table.

Every status change is one guarded UPDATE ... WHERE status IN (allowed sources); the row count
says whether this caller won. Allocated resources are derived from the rows, never counted."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, func, select

from cloudai.core.lifecycle import TaskStatus, allowed_sources
from cloudai.core.models import Task, TaskEvent, TaskSpec
from cloudai.core.requests import TaskFilter
from cloudai.core.resources import Resources
from cloudai.store import events as events_table
from cloudai.store.schema import assignments, cancellations, tasks

__all__ = [
    "statuses",
    "statuses_and_runs",
    "fill_exit",
    "mark_started",
    "count_by_status",
    "get",
    "insert",
    "count_tasks",
    "list_tasks",
    "owners",
    "pending",
    "pending_of",
    "record_usage_many",
    "transition",
]

_ALL = TaskFilter()

_COLUMNS = [*tasks.c, assignments.c.worker_id, assignments.c.gpu_ids]
_INSERT = tasks.insert()
# tasks.grace_seconds: a grace not given is stored as this (migration 0007 turned the older
# rows' 0, which meant "not given", into it); only this module reads or writes the column.
_GRACE_NOT_GIVEN = -1.0


def _joined() -> Any:
    return tasks.outerjoin(assignments, assignments.c.task_id == tasks.c.task_id)


def insert(conn: Connection, task_id: str, spec: TaskSpec, now: float) -> None:
    r = spec.resources
    conn.execute(
        _INSERT,
        dict(
            task_id=task_id,
            name=spec.name,
            image=spec.image,
            command=list(spec.command),
            env=dict(spec.env),
            secret_env=dict(spec.secret_env),
            req_cpu=r.cpu,
            req_mem_gb=r.mem_gb,
            req_storage_gb=r.storage_gb,
            req_gpu=r.gpu,
            requested_worker=spec.worker_id or None,
            owner=spec.owner,
            grace_seconds=_GRACE_NOT_GIVEN if spec.grace_seconds is None else spec.grace_seconds,
            stop_signal=spec.stop_signal,
            pids_limit=spec.pids_limit,
            priority=spec.priority,
            preemptible=spec.preemptible,
            timeout_seconds=spec.timeout_seconds,
            retries=spec.retries,
            retry_on_timeout=spec.retry_on_timeout,
            attempt=1,
            status=TaskStatus.PENDING.value,
            reason="",
            oom_killed=False,
            created_at=now,
        ),
    )


@functools.cache
def _transition_stmt(dst: TaskStatus, keys: tuple[str, ...]) -> Any:
    sources = [s.value for s in allowed_sources(dst)]
    return (
        tasks.update()
        .where(tasks.c.task_id == bindparam("t_id"), tasks.c.status.in_(sources))
        .values(status=dst.value, **{k: bindparam(f"v_{k}") for k in keys})
    )


def transition(conn: Connection, task_id: str, dst: TaskStatus, **fields: Any) -> bool:
    """Move the task to `dst` if its current status allows it; True when this call won."""
    stmt = _transition_stmt(dst, tuple(sorted(fields)))
    res = conn.execute(stmt, {"t_id": task_id} | {f"v_{k}": v for k, v in fields.items()})
    return res.rowcount == 1


def _row_to_task(row: RowMapping, events: tuple[TaskEvent, ...] = ()) -> Task:
    spec = TaskSpec(
        image=row["image"],
        command=tuple(row["command"] or ()),
        env=dict(row["env"] or {}),
        secret_env=dict(row["secret_env"] or {}),
        resources=Resources(
            row["req_cpu"], row["req_mem_gb"], row["req_storage_gb"], row["req_gpu"]
        ),
        name=row["name"],
        worker_id=row["requested_worker"] or "",
        owner=row["owner"],
        grace_seconds=None if row["grace_seconds"] < 0 else row["grace_seconds"],
        stop_signal=row["stop_signal"],
        pids_limit=row["pids_limit"],
        timeout_seconds=row["timeout_seconds"],
        retries=row["retries"],
        retry_on_timeout=bool(row["retry_on_timeout"]),
        priority=row["priority"],
        preemptible=bool(row["preemptible"]),
    )
    return Task(
        task_id=row["task_id"],
        spec=spec,
        status=TaskStatus(row["status"]),
        worker_id=row["worker_id"],
        exit_code=row["exit_code"],
        reason=row["reason"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        oom_killed=bool(row["oom_killed"]),
        events=events,
        cpu_percent=row["cpu_percent"],
        mem_used_gb=row["mem_used_gb"],
        usage_at=row["usage_at"],
        gpu_ids=tuple(row["gpu_ids"] or ()),
        attempt=row["attempt"],
    )


@functools.cache
def _get_stmt() -> Any:
    return select(*_COLUMNS).select_from(_joined()).where(tasks.c.task_id == bindparam("t_id"))


def get(conn: Connection, task_id: str, events: bool = False) -> Task | None:
    row = conn.execute(_get_stmt(), {"t_id": task_id}).mappings().first()
    if row is None:
        return None
    return _row_to_task(row, events_table.for_task(conn, task_id) if events else ())


def list_tasks(conn: Connection, f: TaskFilter = _ALL) -> list[Task]:
    """The tasks `f` matches, oldest first: the first `f.limit` (0: all), or with `f.newest`
    the newest `f.limit`."""
    order = (tasks.c.created_at, tasks.c.task_id)
    newest = f.newest and f.limit
    stmt = _filtered(select(*_COLUMNS).select_from(_joined()), f)
    stmt = stmt.order_by(*(c.desc() for c in order) if newest else order)
    if f.limit:
        stmt = stmt.limit(f.limit)
    found = [_row_to_task(r) for r in conn.execute(stmt).mappings()]
    return found[::-1] if newest else found


def count_tasks(conn: Connection, f: TaskFilter = _ALL, owner_not: str | None = None) -> int:
    """How many tasks `list_tasks` would list without a limit; with `owner_not`, only those
    not of that owner (what a user may not see)."""
    stmt = _filtered(select(func.count()).select_from(_joined()), f)
    if owner_not is not None:
        stmt = stmt.where(tasks.c.owner != owner_not)
    return int(conn.execute(stmt).scalar_one())


def _filtered(stmt: Any, f: TaskFilter) -> Any:
    if f.status:
        stmt = stmt.where(tasks.c.status == f.status)
    if f.worker_id:
        stmt = stmt.where(assignments.c.worker_id == f.worker_id)
    if f.owner:
        stmt = stmt.where(tasks.c.owner == f.owner)
    if f.cancelled_by:
        stmt = stmt.where(
            tasks.c.task_id.in_(
                select(cancellations.c.task_id).where(
                    cancellations.c.requested_by == f.cancelled_by
                )
            )
        )
    return stmt


@functools.cache
def _pending_stmt(limit: int) -> Any:
    return (
        select(*_COLUMNS)
        .select_from(_joined())
        .where(tasks.c.status == TaskStatus.PENDING.value)
        .order_by(tasks.c.created_at, tasks.c.task_id)
        .limit(limit)
    )


def pending(conn: Connection, limit: int = 500) -> list[Task]:
    return [_row_to_task(r) for r in conn.execute(_pending_stmt(limit)).mappings()]


@functools.cache
def _statuses_stmt() -> Any:
    return (
        select(tasks.c.task_id, tasks.c.status, assignments.c.worker_id, tasks.c.attempt)
        .select_from(_joined())
        .where(tasks.c.task_id.in_(bindparam("ids", expanding=True)))
    )


def statuses(conn: Connection, task_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """task_id -> (status, worker_id) for the given IDs that exist, in one query."""
    return {t: (s, w) for t, (s, w, _run) in statuses_and_runs(conn, task_ids).items()}


def statuses_and_runs(
    conn: Connection, task_ids: list[str]
) -> dict[str, tuple[str, str | None, int]]:
    """task_id -> (status, worker_id, its current run's number) for the IDs that exist."""
    if not task_ids:
        return {}
    return {
        r[0]: (r[1], r[2], int(r[3])) for r in conn.execute(_statuses_stmt(), {"ids": task_ids})
    }


def fill_exit(conn: Connection, task_id: str, exit_code: int | None, oom_killed: bool) -> None:
    """Record the exit code of a task whose status was decided before it exited (never the
    status itself)."""
    conn.execute(
        tasks.update()
        .where(tasks.c.task_id == task_id, tasks.c.exit_code.is_(None))
        .values(exit_code=exit_code, oom_killed=oom_killed)
    )


def count_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(tasks.c.status, func.count()).group_by(tasks.c.status))
    return {r[0]: int(r[1]) for r in rows}


def record_usage_many(
    conn: Connection, usage: list[tuple[str, str, float | None, float | None, float]]
) -> None:
    """Usage from many heartbeats, (task_id, worker_id, cpu %, memory GB, at), in one
    statement: a task counts only while running on the worker that measured it."""
    if not usage:
        return
    stmt = (
        tasks.update()
        .where(
            tasks.c.task_id == bindparam("t"),
            tasks.c.status == TaskStatus.RUNNING.value,
            tasks.c.task_id.in_(
                select(assignments.c.task_id).where(assignments.c.worker_id == bindparam("w"))
            ),
        )
        .values(
            cpu_percent=bindparam("cpu"), mem_used_gb=bindparam("mem"), usage_at=bindparam("at")
        )
    )
    conn.execute(
        stmt, [{"t": t, "w": w, "cpu": cpu, "mem": mem, "at": at} for t, w, cpu, mem, at in usage]
    )


@functools.cache
def _mark_started_stmt() -> Any:
    return (
        tasks.update()
        .where(tasks.c.task_id == bindparam("t_id"), tasks.c.started_at.is_(None))
        .values(started_at=bindparam("at"))
    )


def mark_started(conn: Connection, task_id: str, now: float) -> None:
    conn.execute(_mark_started_stmt(), {"t_id": task_id, "at": now})


def owners(conn: Connection, task_ids: list[str]) -> dict[str, str]:
    """task_id -> owner, for the IDs that exist."""
    rows = conn.execute(select(tasks.c.task_id, tasks.c.owner).where(tasks.c.task_id.in_(task_ids)))
    return {r[0]: r[1] for r in rows}


@functools.cache
def _pending_of_stmt() -> Any:
    return (
        select(func.count())
        .select_from(tasks)
        .where(tasks.c.owner == bindparam("owner"), tasks.c.status == TaskStatus.PENDING.value)
    )


def pending_of(conn: Connection, owner: str) -> int:
    return int(conn.execute(_pending_of_stmt(), {"owner": owner}).scalar_one())
