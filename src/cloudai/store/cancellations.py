"""cancellations: who cancelled a task, how, and how far its stop has got. Only this module
writes the table.

The decision (`tasks.status = cancelled`) and this row are written in one transaction
(`create`); the stop's stages are filled in as the worker's updates arrive (`advance`), each
at most once and never behind a later one. Each column has one writer: the decision writes
who/when/why/how, the nudge writes `delivery_attempts` and `last_error`, the worker's updates
write the stage times, `forced`, `exit_code` and `stop_error`."""

from __future__ import annotations

import functools
from dataclasses import fields
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, bindparam, select

from cloudai.core.models import Cancellation
from cloudai.core.stop import STAGE_COLUMNS, TRANSITIONS, StopStage
from cloudai.store.schema import cancellations
from cloudai.store.schema import tasks as tasks_table

__all__ = ["advance", "create", "forget", "get", "mark_attempt", "open_for_worker"]


_FIELDS = [f.name for f in fields(Cancellation)]


def _from_row(row: RowMapping) -> Cancellation:
    return Cancellation(**{k: row[k] for k in _FIELDS})


def _select() -> Select[Any]:
    """Cancellations with the run each stops: the task's current one (a requeue forgets the
    row, so a row always belongs to the run that was current when it was decided)."""
    return select(cancellations, tasks_table.c.attempt.label("run")).join(
        tasks_table, tasks_table.c.task_id == cancellations.c.task_id
    )


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
    values = {
        "task_id": task_id,
        "worker_id": worker_id,
        "requested_by": requested_by,
        "requested_at": now,
        "reason": reason,
        "force": force,
        "grace_seconds": grace_seconds,
        "stop_signal": stop_signal,
        "delivery_attempts": 0,
        "last_error": "",
        "forced": False,
        "stop_error": "",
    }
    conn.execute(_INSERT, values)


# Built once (hot paths: each cancel, stop update and heartbeat's full pass).
_INSERT = cancellations.insert()
_GET = _select().where(cancellations.c.task_id == bindparam("t_id"))
_OPEN_FOR_WORKER = (
    _select()
    .where(cancellations.c.worker_id == bindparam("w"), cancellations.c.removed_at.is_(None))
    .order_by(cancellations.c.requested_at)
)


def get(conn: Connection, task_id: str) -> Cancellation | None:
    row = conn.execute(_GET, {"t_id": task_id}).mappings().first()
    return None if row is None else _from_row(row)


def open_for_worker(conn: Connection, worker_id: str) -> list[Cancellation]:
    """Stops on this worker that it has not confirmed yet (not removed)."""
    rows = conn.execute(_OPEN_FOR_WORKER, {"w": worker_id}).mappings()
    return [_from_row(r) for r in rows]


def mark_attempt(conn: Connection, task_id: str, error: str) -> None:
    """A nudge (the direct CancelTask call) that did not reach the worker: counted, with
    its error. The order itself waits in the store for the worker's next heartbeat."""
    conn.execute(
        cancellations.update()
        .where(cancellations.c.task_id == task_id, cancellations.c.delivered_at.is_(None))
        .values(delivery_attempts=cancellations.c.delivery_attempts + 1, last_error=error[:2000])
    )


def _later_columns(stage: StopStage) -> list[str]:
    return [STAGE_COLUMNS[s] for s in TRANSITIONS[stage] if s in STAGE_COLUMNS]


def advance(
    conn: Connection,
    task_id: str,
    stage: StopStage,
    at: float,
    *,
    error: str = "",
    forced: bool = False,
    exit_code: int | None = None,
) -> bool:
    """Record that the stop reached `stage` at `at`: one guarded UPDATE, which changes
    nothing when the stage is recorded already or the stop is past it (core/stop.py's table).
    True when this call recorded it. `stop_failed` records `error` (the first one kept);
    `forced` marks that a SIGKILL was sent; `exit_code` comes with `exited`."""
    if stage is StopStage.REQUESTED:
        raise ValueError("`requested` is recorded by create(), with the decision")
    with_code = exit_code is not None and stage is StopStage.EXITED
    params: dict[str, Any] = {"t_id": task_id, "at": at, "code": exit_code}
    params["error"] = (error or "stop failed")[:2000]
    res = conn.execute(_advance_stmt(stage, forced, with_code), params)
    return res.rowcount == 1


@functools.cache
def _advance_stmt(stage: StopStage, forced: bool, with_code: bool) -> Any:
    t = cancellations
    values: dict[str, Any]
    if stage is StopStage.STOP_FAILED:
        guard = [t.c.stop_error == "", t.c.removed_at.is_(None)]
        values = {"stop_error": bindparam("error")}
    else:
        column = STAGE_COLUMNS[stage]
        guard = [t.c[c].is_(None) for c in (column, *_later_columns(stage))]
        if stage not in TRANSITIONS[StopStage.STOP_FAILED]:  # a failed stop only ends
            guard.append(t.c.stop_error == "")
        values = {column: bindparam("at")}
        if with_code:
            values["exit_code"] = bindparam("code")
    if forced:
        values["forced"] = True
    return t.update().where(t.c.task_id == bindparam("t_id"), *guard).values(**values)


def forget(conn: Connection, task_id: str) -> None:
    """Drop a finished stop of a run that goes back to the queue (a preemption, a time limit
    with retries left): the run's outcome is kept as an attempt, the next run may be stopped."""
    conn.execute(cancellations.delete().where(cancellations.c.task_id == task_id))
