"""Liveness and reconciliation: what workers say they run against what the store says.

Run at every heartbeat and registration (`reconcile_tx`) and on each dispatch round
(`reap_lost_workers_tx`). Resources need no reconciling: they are derived from the tasks that
hold them, so ending a task frees them. A task ended here gets its one result from the master
(no logs, the reason as its error); a worker report that arrives later is kept as an event."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from sqlalchemy import Connection, bindparam, select

from cloudai.core.lease import Lease
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskResult
from cloudai.core.policy import Attempt
from cloudai.master.retries import requeue_tx
from cloudai.store import events, results, tasks
from cloudai.store.schema import assignments
from cloudai.store.schema import tasks as tasks_table
from cloudai.store.schema import workers as workers_table

__all__ = ["fail_task", "reap_lost_workers_tx", "reconcile_tx"]

# A task the worker accepted this long ago (in heartbeat intervals) must be in its heartbeat.
LOST_AFTER_INTERVALS = 3


def fail_task(conn: Connection, task_id: str, worker_id: str, why: str, now: float) -> bool:
    """End a running task as failed for `why`, with its result — or, with retries left, send
    it back to the queue (master/retries.py); False when it was not running."""
    task = tasks.get(conn, task_id)
    if task is not None:
        run = Attempt(task.attempt, worker_id, "failed", None, why, task.started_at, now)
        if requeue_tx(conn, task, dataclasses.replace(run, gpu_ids=task.gpu_ids), now):
            return True
    if not tasks.transition(conn, task_id, TaskStatus.FAILED, completed_at=now, reason=why):
        return False
    results.insert_once(
        conn, TaskResult(task_id, worker_id, TaskStatus.FAILED, error=why, completed_at=now), now
    )
    events.add(conn, task_id, "failed", "master", why, now)
    return True


_RUNNING_ON = (  # built once: every heartbeat's full pass runs it
    select(assignments.c.task_id, assignments.c.delivered_at)
    .join(tasks_table, tasks_table.c.task_id == assignments.c.task_id)
    .where(
        assignments.c.worker_id == bindparam("w"),
        tasks_table.c.status == TaskStatus.RUNNING.value,
    )
)


def _running_on(conn: Connection, worker_id: str) -> list[tuple[str, float | None]]:
    """(task_id, delivered_at) of the running tasks placed on the worker."""
    return [(r[0], r[1]) for r in conn.execute(_RUNNING_ON, {"w": worker_id})]


def reconcile_tx(
    conn: Connection,
    worker_id: str,
    running: set[str],
    stopping: set[str],
    now: float,
    interval: float,
    waiting: list[str] | None = None,
) -> list[str]:
    """Tasks the store has as running on this worker that the worker does not hold (accepted
    long enough ago that the heartbeat must show them) end `failed` "lost on worker".
    Returns their IDs; those not held but too young to judge go in `waiting`."""
    lost = []
    for task_id, delivered_at in _running_on(conn, worker_id):
        if task_id in running or task_id in stopping:
            continue
        if delivered_at is None or now - delivered_at < LOST_AFTER_INTERVALS * interval:
            if waiting is not None:  # accepted after this heartbeat was built, perhaps
                waiting.append(task_id)
            continue
        why = f"lost on worker {worker_id}: it no longer runs the task"
        if fail_task(conn, task_id, worker_id, why, now):
            lost.append(task_id)
    return lost


def reap_lost_workers_tx(
    conn: Connection,
    now: float,
    lease: Lease,
    heard: Mapping[str, float] | None = None,
    reaped: list[str] | None = None,
) -> list[str]:
    """Running tasks of workers whose lease has lapsed end `failed` "worker lost". The lease
    counts from the later of the last heartbeat and this master's start (core/lease.py), so a
    restarted master gives each worker a full deadline first. If such a worker comes back, its
    heartbeat gets stop orders for them. `heard`: heartbeats not yet written (master/beats.py),
    which count; the workers whose tasks ended go in `reaped`."""
    cutoff = lease.lapsed_before(now)
    if cutoff is None:
        return []
    silent = conn.execute(
        select(workers_table.c.worker_id).where(
            workers_table.c.last_heartbeat.is_not(None),
            workers_table.c.last_heartbeat < cutoff,
        )
    )
    ended = []
    for (worker_id,) in silent.all():
        if heard is not None and heard.get(worker_id, cutoff) > cutoff:
            continue
        for task_id, _ in _running_on(conn, worker_id):
            why = f"worker lost: {worker_id} sent no heartbeat for over {lease.lost_after:g}s"
            if fail_task(conn, task_id, worker_id, why, now):
                ended.append(task_id)
                if reaped is not None and worker_id not in reaped:
                    reaped.append(worker_id)
    return ended
