"""Master -> worker: the stop orders a worker is owed, as the answer to a query over the store.

Called with each heartbeat and registration (the replies carry the orders); the direct
CancelTask call of a fresh cancel only nudges, carrying the same order (`order_pb`)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from cloudai.api.v1 import types_pb2
from cloudai.core.lifecycle import TERMINAL, TaskStatus
from cloudai.core.models import Cancellation, TaskResult
from cloudai.store import cancellations, results, tasks

__all__ = ["order_pb", "stop_orders_tx", "store_unrun_result"]


def store_unrun_result(
    conn: Connection, task_id: str, worker_id: str, why: str, now: float
) -> None:
    """The result of a cancelled task that never ran: no logs, no exit code, and why."""
    results.insert_once(
        conn, TaskResult(task_id, worker_id, TaskStatus.CANCELLED, error=why, completed_at=now), now
    )


def order_pb(c: Cancellation) -> types_pb2.CancelTaskRequest:
    return types_pb2.CancelTaskRequest(
        task_id=c.task_id,
        stop_signal=c.stop_signal,
        grace_seconds=c.grace_seconds,
        force=c.force,
        reason=c.reason,
        requested_by=c.requested_by,
        attempt=c.run,  # the run it stops: a later run of the task may still start there
    )


def stop_orders_tx(
    conn: Connection,
    worker_id: str,
    running: Iterable[str],
    unknown: list[str] | None = None,
) -> list[types_pb2.CancelTaskRequest]:
    """The orders a worker is owed, for its heartbeat or registration reply:

    - each stop on it not yet confirmed removed is sent (again), until the worker's `removed`
      update arrives — for a task it does not hold, that update says so at once, and the
      order is remembered there so a late assignment is refused;
    - a task it runs that the store has as finished or placed elsewhere gets a stop order;
    - a task the store has no record of is left alone and added to `unknown`, for the caller
      to report: a master that does not know some work (an older copy of the store) must not
      destroy it.

    A query only: it writes nothing (the worker's updates record how far each stop got)."""
    running = set(running)
    orders: list[types_pb2.CancelTaskRequest] = []
    ordered: set[str] = set()
    for c in cancellations.open_for_worker(conn, worker_id):
        orders.append(order_pb(c))
        ordered.add(c.task_id)
    known = tasks.statuses_and_runs(conn, sorted(running - ordered))
    terminal = {s.value for s in TERMINAL}
    for task_id in sorted(running - ordered):
        if task_id not in known:
            if unknown is not None:
                unknown.append(task_id)
            continue
        status, placed_on, run = known[task_id]
        if status in terminal or placed_on != worker_id:
            order = types_pb2.CancelTaskRequest(task_id=task_id, reason="not yours")
            if status not in terminal:  # a retried task: the worker's run is an earlier one
                order.attempt = max(run - 1, 0)
            orders.append(order)
    return orders
