"""Master -> worker: the stop orders a worker is owed, as the answer to a query over the store.

Called with each heartbeat and registration (the replies carry the orders); the direct
CancelTask call of a fresh cancel only nudges, carrying the same order (`order_pb`)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from cloudai.api.v1 import types_pb2
from cloudai.core.lifecycle import TERMINAL, TaskStatus
from cloudai.core.models import Cancellation, TaskResult
from cloudai.master.retries import requeue_unstarted_tx
from cloudai.store import cancellations, events, queue, results, tasks

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
    )


def stop_orders_tx(
    conn: Connection,
    worker_id: str,
    running: Iterable[str],
    stopping: Iterable[str],
    now: float,
    unknown: list[str] | None = None,
) -> list[types_pb2.CancelTaskRequest]:
    """Reconcile what a worker says it runs with the store, in its heartbeat or registration:

    - a stop it says it is carrying out counts as delivered;
    - an open stop for a task it does not hold any more is confirmed (it ended and was
      removed, or never arrived) — the order still goes out, so a late assignment is refused;
    - each open stop is sent (again) until confirmed;
    - a task it runs that the store has as finished or placed elsewhere gets a stop order;
    - a task the store has no record of is left alone and added to `unknown`, for the caller
      to report: a master that does not know some work (an older copy of the store) must not
      destroy it."""
    running, stopping = set(running), set(stopping)
    orders: list[types_pb2.CancelTaskRequest] = []
    ordered: set[str] = set()
    for c in cancellations.open_for_worker(conn, worker_id):
        if c.task_id in stopping and cancellations.mark_delivered(conn, c.task_id, now):
            events.add(conn, c.task_id, "stop_delivered", worker_id, "by heartbeat", now)
        gone = c.task_id not in running and c.task_id not in stopping
        run = 0  # the run the order stops (0: the one the worker holds, or every one)
        if gone and cancellations.mark_stage(conn, c.task_id, "removed", now):
            events.add(conn, c.task_id, "removed", worker_id, "confirmed by heartbeat: gone", now)
            if results.get(conn, c.task_id) is None:
                # The worker reports a result before it forgets a task; with none, the task
                # never started there (the order reached it first). A run the scheduler
                # stopped to run again goes back to the queue instead (master/retries.py).
                run = requeue_unstarted_tx(conn, c.task_id, worker_id, now)
                if not run:
                    why = f"cancelled before it started on {worker_id}"
                    store_unrun_result(conn, c.task_id, worker_id, why, now)
        order = order_pb(c)
        order.attempt = run
        orders.append(order)
        ordered.add(c.task_id)
    known = tasks.statuses(conn, sorted(running - ordered))
    runs = queue.runs_of(conn, sorted(running - ordered))
    terminal = {s.value for s in TERMINAL}
    for task_id in sorted(running - ordered):
        if task_id not in known:
            if unknown is not None:
                unknown.append(task_id)
            continue
        status, placed_on = known[task_id]
        if status in terminal or placed_on != worker_id:
            order = types_pb2.CancelTaskRequest(task_id=task_id, reason="not yours")
            if status not in terminal:  # a retried task: the worker's run is an earlier one
                order.attempt = max(runs.get(task_id, 1) - 1, 0)
            orders.append(order)
    return orders
