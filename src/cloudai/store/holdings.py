"""What tasks hold on each worker: the resources, the GPUs, the active and the releasing
tasks (derived from the tasks, never stored: ending a task frees them). Reads only; the
tasks module writes the table."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select

from cloudai.core.lifecycle import ACTIVE, HOLDS_RESOURCES, TaskStatus
from cloudai.core.resources import Resources
from cloudai.core.stop import RELEASED, STAGE_COLUMNS
from cloudai.store.schema import assignments, cancellations, tasks

__all__ = [
    "active_ids_by_worker",
    "active_ids_on",
    "allocated_by_worker",
    "held_gpus_by_worker",
    "releasing_by_worker",
    "stop_failures_by_worker",
]


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
    if worker_id is None:
        return _sum_requests(conn, _holding(), None)
    rows = conn.execute(_allocated_on_stmt(), {"w": worker_id})
    return {r[0]: Resources(float(r[1]), float(r[2]), float(r[3]), int(r[4])) for r in rows}


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


@functools.cache
def _allocated_on_stmt() -> Any:
    return _sum_requests_stmt(_holding()).where(assignments.c.worker_id == bindparam("w"))


def _sum_requests_stmt(which: Any) -> Any:
    return (
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


def _sum_requests(conn: Connection, which: Any, worker_id: str | None) -> dict[str, Resources]:
    stmt = _sum_requests_stmt(which)
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


def active_ids_on(conn: Connection, worker_id: str) -> list[str]:
    """IDs of the active tasks placed on a worker."""
    stmt = (
        select(tasks.c.task_id)
        .select_from(tasks.join(assignments, assignments.c.task_id == tasks.c.task_id))
        .where(assignments.c.worker_id == worker_id, tasks.c.status.in_([s.value for s in ACTIVE]))
    )
    return [r[0] for r in conn.execute(stmt)]
