"""The queue as the master sees it: the pending tasks in order, each with the worker it goes to
now or why it waits (scheduler/queue.py), from one read of the store. The dispatcher commits
it; `task ls --status pending` shows it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from sqlalchemy import Connection

from cloudai.core.models import Task, Worker
from cloudai.master.planner import load_workers
from cloudai.scheduler.queue import Slot, plan, queue_order
from cloudai.store import queue, tasks

__all__ = ["in_queue_order", "queue_tx", "reserved_tx"]

QUEUE_MAX = 5000  # pending tasks looked at in one round


def reserved_tx(conn: Connection, pending_priority: dict[str, int]) -> dict[str, tuple[str, int]]:
    """worker_id -> (task_id, priority) of the pending task for which tasks there are being
    preempted: the room they free is kept for it."""
    out: dict[str, tuple[str, int]] = {}
    for preemptor, victims in queue.preemptions_for(conn).items():
        if preemptor not in pending_priority:
            continue
        for _victim, worker_id in victims:
            held = out.get(worker_id)
            if held is None or held[1] < pending_priority[preemptor]:
                out[worker_id] = (preemptor, pending_priority[preemptor])
    return out


def queue_tx(
    conn: Connection, now: float, interval: float, heard: Mapping[str, float] | None = None
) -> tuple[list[Slot], list[Worker]]:
    pending = tasks.pending(conn, QUEUE_MAX)
    if not pending:
        return [], []
    workers = load_workers(conn, now, interval, heard=heard)
    ordered = queue_order(pending, queue.running_by_owner(conn))
    reserved = reserved_tx(conn, {t.task_id: t.spec.priority for t in pending})
    return plan(ordered, workers, now, queue.backing_off(conn, now), reserved), workers


def in_queue_order(found: list[Task], slots: list[Slot]) -> list[Task]:
    """`found` (pending tasks) in queue order, each with its position and why it waits (a
    task placed since: position 0, last)."""
    by_id = {s.task.task_id: s for s in slots}
    out = []
    for t in found:
        slot = by_id.get(t.task_id)
        if slot is None:
            out.append(t)
            continue
        why = slot.waiting_reason or f"placing it on {slot.worker_id}"
        out.append(dataclasses.replace(t, position=slot.position, waiting_reason=why))
    return sorted(out, key=lambda t: (t.position or len(slots) + 1, t.created_at))
