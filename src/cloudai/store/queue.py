"""Read-only queries for the queue, the time limits and preemption (master/deadlines.py,
master/preemption.py, scheduler/queue.py). Writes go through the tables' own modules."""

from __future__ import annotations

from sqlalchemy import Connection, and_, func, select

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.stop import RELEASED, STAGE_COLUMNS
from cloudai.store.schema import cancellations, tasks

__all__ = [
    "PREEMPTED_BY",
    "backing_off",
    "expired",
    "lowest_preemptible",
    "preemptions_for",
    "running_by_owner",
    "stopping",
]

PREEMPTED_BY = "preempted by "  # the reason of a preemption's stop, then the task's ID


def running_by_owner(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        select(tasks.c.owner, func.count())
        .where(tasks.c.status == TaskStatus.RUNNING.value)
        .group_by(tasks.c.owner)
    )
    return {r[0]: int(r[1]) for r in rows}


def backing_off(conn: Connection, now: float) -> dict[str, float]:
    """task_id -> not before, for the pending tasks still waiting out a retry's backoff."""
    rows = conn.execute(
        select(tasks.c.task_id, tasks.c.not_before).where(
            tasks.c.status == TaskStatus.PENDING.value, tasks.c.not_before > now
        )
    )
    return {r[0]: float(r[1]) for r in rows}


def expired(conn: Connection, now: float) -> list[str]:
    """Running tasks whose time limit (counted from their start) has run out, and that no
    stop order is ending yet."""
    rows = conn.execute(
        select(tasks.c.task_id)
        .select_from(tasks.outerjoin(cancellations, cancellations.c.task_id == tasks.c.task_id))
        .where(
            tasks.c.status == TaskStatus.RUNNING.value,
            tasks.c.timeout_seconds.is_not(None),
            tasks.c.started_at.is_not(None),
            tasks.c.started_at + tasks.c.timeout_seconds <= now,
            cancellations.c.task_id.is_(None),
        )
        .order_by(tasks.c.started_at)
    )
    return [r[0] for r in rows]


def preemptions_for(conn: Connection) -> dict[str, list[tuple[str, str]]]:
    """preempting task_id -> [(victim task_id, worker_id)] of the preemption stops not done
    yet (the victim's container has not exited): the room they free is the preemptor's."""
    not_released = and_(*(cancellations.c[STAGE_COLUMNS[s]].is_(None) for s in RELEASED))
    rows = conn.execute(
        select(cancellations.c.task_id, cancellations.c.worker_id, cancellations.c.reason).where(
            cancellations.c.reason.startswith(PREEMPTED_BY),
            cancellations.c.worker_id.is_not(None),
            not_released,
        )
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for victim, worker_id, reason in rows:
        out.setdefault(reason[len(PREEMPTED_BY) :], []).append((victim, worker_id))
    return out


def stopping(conn: Connection) -> set[str]:
    """Running tasks with a stop order under way (a preemption, a time limit)."""
    rows = conn.execute(
        select(tasks.c.task_id)
        .select_from(tasks.join(cancellations, cancellations.c.task_id == tasks.c.task_id))
        .where(tasks.c.status == TaskStatus.RUNNING.value)
    )
    return {r[0] for r in rows}


def lowest_preemptible(conn: Connection) -> int | None:
    """The lowest priority of a running preemptible task (None: there is none): a waiting task
    of no higher priority can preempt nothing."""
    low = conn.execute(
        select(func.min(tasks.c.priority)).where(
            tasks.c.status == TaskStatus.RUNNING.value, tasks.c.preemptible.is_(True)
        )
    ).scalar_one_or_none()
    return None if low is None else int(low)
