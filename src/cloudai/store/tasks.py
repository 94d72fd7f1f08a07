"""tasks: what to run and how far it got. Only this module writes the table.

Every status change is one guarded UPDATE ... WHERE status IN (allowed sources); the row count
says whether this caller won. Allocated resources are derived from the rows, never counted."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, and_, func, or_, select

from cloudai.core.lifecycle import ACTIVE, HOLDS_RESOURCES, TaskStatus, allowed_sources
from cloudai.core.models import Task, TaskEvent, TaskSpec
from cloudai.core.requests import TaskFilter
from cloudai.core.resources import Resources
from cloudai.core.stop import RELEASED, STAGE_COLUMNS
from cloudai.store import events as events_table
from cloudai.store.schema import assignments, cancellations, tasks

__all__ = [
    "active_ids_by_worker",
    "active_ids_on",
    "statuses",
    "count_by_status",
    "allocated_by_worker",
    "get",
    "held_gpus_by_worker",
    "insert",
    "count_tasks",
    "list_tasks",
    "owners",
    "pending",
    "pending_of",
    "record_usage",
    "releasing_by_worker",
    "stop_failures_by_worker",
    "transition",
]

_ALL = TaskFilter()

_COLUMNS = [*tasks.c, assignments.c.worker_id, assignments.c.gpu_ids]
# tasks.grace_seconds: a grace not given is stored as this (migration 0007 turned the older
# rows' 0, which meant "not given", into it); only this module reads or writes the column.
_GRACE_NOT_GIVEN = -1.0


def _joined() -> Any:
    return tasks.outerjoin(assignments, assignments.c.task_id == tasks.c.task_id)


def insert(conn: Connection, task_id: str, spec: TaskSpec, now: float) -> None:
    r = spec.resources
    conn.execute(
        tasks.insert().values(
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
        )
    )


def transition(conn: Connection, task_id: str, dst: TaskStatus, **fields: Any) -> bool:
    """Move the task to `dst` if its current status allows it; True when this call won."""
    sources = [s.value for s in allowed_sources(dst)]
    res = conn.execute(
        tasks.update()
        .where(tasks.c.task_id == task_id, tasks.c.status.in_(sources))
        .values(status=dst.value, **fields)
    )
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


def get(conn: Connection, task_id: str, events: bool = False) -> Task | None:
    row = (
        conn.execute(select(*_COLUMNS).select_from(_joined()).where(tasks.c.task_id == task_id))
        .mappings()
        .first()
    )
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


def pending(conn: Connection, limit: int = 500) -> list[Task]:
    stmt = (
        select(*_COLUMNS)
        .select_from(_joined())
        .where(tasks.c.status == TaskStatus.PENDING.value)
        .order_by(tasks.c.created_at, tasks.c.task_id)
        .limit(limit)
    )
    return [_row_to_task(r) for r in conn.execute(stmt).mappings()]


def _stop_not_done() -> Any:
    """A task stopped by an order (cancelled, or failed by its time limit) whose container
    has not exited yet (core/stop.py: RELEASED)."""
    return and_(
        tasks.c.status.in_([TaskStatus.CANCELLED.value, TaskStatus.FAILED.value]),
        cancellations.c.worker_id.is_not(None),
        *(cancellations.c[STAGE_COLUMNS[s]].is_(None) for s in RELEASED),
    )


def _holding() -> Any:
    """Running tasks, and cancelled ones whose stop is not done: they hold their resources."""
    return or_(tasks.c.status.in_([s.value for s in HOLDS_RESOURCES]), _stop_not_done())


def _placed() -> Any:
    return tasks.join(assignments, assignments.c.task_id == tasks.c.task_id).outerjoin(
        cancellations, cancellations.c.task_id == tasks.c.task_id
    )


def allocated_by_worker(conn: Connection, worker_id: str | None = None) -> dict[str, Resources]:
    """Sum of the requests of the tasks that hold each worker's resources."""
    return _sum_requests(conn, _holding(), worker_id)


def held_gpus_by_worker(
    conn: Connection, worker_id: str | None = None
) -> dict[str, dict[str, str]]:
    """worker_id -> {gpu_id: task_id}: the devices of the tasks that hold their resources
    (the same rule as `allocated_by_worker`: until a cancelled task's container is gone)."""
    stmt = (
        select(assignments.c.worker_id, tasks.c.task_id, assignments.c.gpu_ids)
        .select_from(_placed())
        .where(_holding())
    )
    if worker_id is not None:
        stmt = stmt.where(assignments.c.worker_id == worker_id)
    out: dict[str, dict[str, str]] = {}
    for wid, tid, gpu_ids in conn.execute(stmt):
        for gpu_id in gpu_ids or ():
            out.setdefault(wid, {})[str(gpu_id)] = tid
    return out


def releasing_by_worker(
    conn: Connection, worker_id: str | None = None
) -> dict[str, tuple[list[str], Resources]]:
    """The cancelled tasks still holding each worker's resources (their container is not gone
    yet), and what they hold: kubectl's "Terminating"."""
    stmt = select(assignments.c.worker_id, tasks.c.task_id).select_from(_placed())
    stmt = stmt.where(_stop_not_done())
    if worker_id is not None:
        stmt = stmt.where(assignments.c.worker_id == worker_id)
    ids: dict[str, list[str]] = {}
    for wid, tid in conn.execute(stmt):
        ids.setdefault(wid, []).append(tid)
    held = _sum_requests(conn, _stop_not_done(), worker_id) if ids else {}
    return {w: (sorted(t), held.get(w, Resources())) for w, t in ids.items()}


def stop_failures_by_worker(
    conn: Connection, worker_id: str | None = None
) -> dict[str, tuple[tuple[str, str], ...]]:
    """worker_id -> ((task_id, why), ...): the releasing tasks whose stop failed (a signal or
    kill the engine refused or never answered). They hold their resources until their container
    is gone; `workers` shows why."""
    stmt = select(assignments.c.worker_id, tasks.c.task_id, cancellations.c.stop_error)
    stmt = stmt.select_from(_placed()).where(_stop_not_done(), cancellations.c.stop_error != "")
    if worker_id is not None:
        stmt = stmt.where(assignments.c.worker_id == worker_id)
    out: dict[str, list[tuple[str, str]]] = {}
    for wid, tid, why in conn.execute(stmt):
        out.setdefault(wid, []).append((tid, why))
    return {w: tuple(sorted(f)) for w, f in out.items()}


def _sum_requests(conn: Connection, which: Any, worker_id: str | None) -> dict[str, Resources]:
    stmt = (
        select(
            assignments.c.worker_id,
            func.coalesce(func.sum(tasks.c.req_cpu), 0.0),
            func.coalesce(func.sum(tasks.c.req_mem_gb), 0.0),
            func.coalesce(func.sum(tasks.c.req_storage_gb), 0.0),
            func.coalesce(func.sum(tasks.c.req_gpu), 0),
        )
        .select_from(_placed())
        .where(which)
        .group_by(assignments.c.worker_id)
    )
    if worker_id is not None:
        stmt = stmt.where(assignments.c.worker_id == worker_id)
    return {
        r[0]: Resources(float(r[1]), float(r[2]), float(r[3]), int(r[4]))
        for r in conn.execute(stmt)
    }


def active_ids_by_worker(conn: Connection, worker_id: str | None = None) -> dict[str, list[str]]:
    """IDs of the active tasks placed on each worker (or on `worker_id`), in one query."""
    stmt = (
        select(assignments.c.worker_id, tasks.c.task_id)
        .select_from(tasks.join(assignments, assignments.c.task_id == tasks.c.task_id))
        .where(tasks.c.status.in_([s.value for s in ACTIVE]))
    )
    if worker_id is not None:
        stmt = stmt.where(assignments.c.worker_id == worker_id)
    out: dict[str, list[str]] = {}
    for wid, tid in conn.execute(stmt):
        out.setdefault(wid, []).append(tid)
    return out


def statuses(conn: Connection, task_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """task_id -> (status, worker_id) for the given IDs that exist, in one query."""
    if not task_ids:
        return {}
    stmt = (
        select(tasks.c.task_id, tasks.c.status, assignments.c.worker_id)
        .select_from(_joined())
        .where(tasks.c.task_id.in_(task_ids))
    )
    return {r[0]: (r[1], r[2]) for r in conn.execute(stmt)}


def active_ids_on(conn: Connection, worker_id: str) -> list[str]:
    """IDs of the active tasks placed on a worker."""
    stmt = (
        select(tasks.c.task_id)
        .select_from(tasks.join(assignments, assignments.c.task_id == tasks.c.task_id))
        .where(assignments.c.worker_id == worker_id, tasks.c.status.in_([s.value for s in ACTIVE]))
    )
    return [r[0] for r in conn.execute(stmt)]


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


def record_usage(
    conn: Connection, usage: list[tuple[str, float, float]], worker_id: str, now: float
) -> None:
    """The usage a worker measured for its running tasks: (task_id, cpu %, memory GB)."""
    for task_id, cpu, mem in usage:
        conn.execute(
            tasks.update()
            .where(
                tasks.c.task_id == task_id,
                tasks.c.status == TaskStatus.RUNNING.value,
                tasks.c.task_id.in_(
                    select(assignments.c.task_id).where(assignments.c.worker_id == worker_id)
                ),
            )
            .values(cpu_percent=cpu, mem_used_gb=mem, usage_at=now)
        )


def mark_started(conn: Connection, task_id: str, now: float) -> None:
    conn.execute(
        tasks.update()
        .where(tasks.c.task_id == task_id, tasks.c.started_at.is_(None))
        .values(started_at=now)
    )


def owners(conn: Connection, task_ids: list[str]) -> dict[str, str]:
    """task_id -> owner, for the IDs that exist."""
    rows = conn.execute(select(tasks.c.task_id, tasks.c.owner).where(tasks.c.task_id.in_(task_ids)))
    return {r[0]: r[1] for r in rows}


def pending_of(conn: Connection, owner: str) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(tasks)
            .where(tasks.c.owner == owner, tasks.c.status == TaskStatus.PENDING.value)
        ).scalar_one()
    )
