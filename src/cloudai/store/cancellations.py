"""cancellations: who cancelled a task, how, and how far its stop has got. Only this module
writes the table.

The decision (`tasks.status = cancelled`) and this row are written in one transaction; the
stop's stages are filled in as the worker confirms them, each at most once."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy import Connection, RowMapping, select

from cloudai.core.models import Cancellation
from cloudai.store.schema import cancellations

__all__ = [
    "STAGES",
    "create",
    "forget",
    "get",
    "mark_attempt",
    "mark_delivered",
    "mark_stage",
    "open_for_worker",
    "record_error",
    "record_exit",
    "undelivered",
]

# Stage -> the column its time goes in.
STAGES = {
    "signal_sent": "signal_at",
    "killed": "killed_at",
    "exited": "exited_at",
    "removed": "removed_at",
}


_FIELDS = [f.name for f in fields(Cancellation)]


def _from_row(row: RowMapping) -> Cancellation:
    return Cancellation(**{k: row[k] for k in _FIELDS})


def create(
    conn: Connection,
    task_id: str,
    worker_id: str | None,
    requested_by: str,
    reason: str,
    force: bool,
    grace_seconds: float,
    stop_signal: str,
    now: float,
) -> None:
    conn.execute(
        cancellations.insert().values(
            task_id=task_id,
            worker_id=worker_id,
            requested_by=requested_by,
            requested_at=now,
            reason=reason,
            force=force,
            grace_seconds=grace_seconds,
            stop_signal=stop_signal,
            delivery_attempts=0,
            last_error="",
            forced=False,
            stop_error="",
        )
    )


def get(conn: Connection, task_id: str) -> Cancellation | None:
    row = (
        conn.execute(select(cancellations).where(cancellations.c.task_id == task_id))
        .mappings()
        .first()
    )
    return None if row is None else _from_row(row)


def open_for_worker(conn: Connection, worker_id: str) -> list[Cancellation]:
    """Stops on this worker that it has not confirmed yet (not removed)."""
    rows = conn.execute(
        select(cancellations)
        .where(cancellations.c.worker_id == worker_id, cancellations.c.removed_at.is_(None))
        .order_by(cancellations.c.requested_at)
    ).mappings()
    return [_from_row(r) for r in rows]


def undelivered(conn: Connection) -> list[Cancellation]:
    rows = conn.execute(
        select(cancellations)
        .where(
            cancellations.c.worker_id.is_not(None),
            cancellations.c.delivered_at.is_(None),
            cancellations.c.removed_at.is_(None),
        )
        .order_by(cancellations.c.requested_at)
    ).mappings()
    return [_from_row(r) for r in rows]


def mark_delivered(conn: Connection, task_id: str, now: float) -> bool:
    """The worker acknowledged the order; True the first time."""
    res = conn.execute(
        cancellations.update()
        .where(cancellations.c.task_id == task_id, cancellations.c.delivered_at.is_(None))
        .values(
            delivered_at=now,
            delivery_attempts=cancellations.c.delivery_attempts + 1,
            last_error="",
        )
    )
    return res.rowcount == 1


def mark_attempt(conn: Connection, task_id: str, error: str) -> None:
    """A delivery attempt that did not reach the worker."""
    conn.execute(
        cancellations.update()
        .where(cancellations.c.task_id == task_id, cancellations.c.delivered_at.is_(None))
        .values(delivery_attempts=cancellations.c.delivery_attempts + 1, last_error=error[:2000])
    )


def mark_stage(conn: Connection, task_id: str, stage: str, at: float, error: str = "") -> bool:
    """Record a stage of the stop once; True when this call recorded it. A stage implies the
    order was delivered."""
    column = STAGES[stage]
    values: dict[str, Any] = {column: at}
    if error:
        values["stop_error"] = error[:2000]
    res = conn.execute(
        cancellations.update()
        .where(cancellations.c.task_id == task_id, cancellations.c[column].is_(None))
        .values(**values)
    )
    conn.execute(
        cancellations.update()
        .where(cancellations.c.task_id == task_id, cancellations.c.delivered_at.is_(None))
        .values(delivered_at=at)
    )
    return res.rowcount == 1


def record_error(conn: Connection, task_id: str, error: str) -> None:
    conn.execute(
        cancellations.update()
        .where(cancellations.c.task_id == task_id)
        .values(stop_error=error[:2000])
    )


def record_exit(
    conn: Connection,
    task_id: str,
    exit_code: int | None,
    forced: bool,
    signal_at: float | None,
    killed_at: float | None,
    exited_at: float | None,
    error: str,
    received_at: float | None = None,
) -> None:
    """What the worker's cancelled result says of the stop; fills only what is still empty."""
    row = get(conn, task_id)
    if row is None:
        return
    values: dict[str, Any] = {}
    for column, value in (
        ("signal_at", signal_at),
        ("killed_at", killed_at),
        ("exited_at", exited_at),
        ("exit_code", exit_code),
    ):
        if value is not None and getattr(row, column) is None:
            values[column] = value
    if forced:
        values["forced"] = True
    if error and not row.stop_error:
        values["stop_error"] = error[:2000]
    if row.delivered_at is None:
        values["delivered_at"] = received_at or signal_at or exited_at
    if values:
        conn.execute(
            cancellations.update().where(cancellations.c.task_id == task_id).values(**values)
        )


def forget(conn: Connection, task_id: str) -> None:
    """Drop a finished stop of a run that goes back to the queue (a preemption, a time limit
    with retries left): the run's outcome is kept as an attempt, the next run may be stopped."""
    conn.execute(cancellations.delete().where(cancellations.c.task_id == task_id))
