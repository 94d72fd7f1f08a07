"""Preemption: make room for a waiting task by stopping preemptible tasks of lower priority.

Run by the dispatch-loop after each placement round, for the tasks left waiting, in queue
order. The victims are stopped the way a cancel stops them (their own signal and grace, then
SIGKILL, then removal: master/canceller.py), with the reason `preempted by TASK`. A victim with
retries left stays running until its stop is done, then goes back to the queue
(master/retries.py); one without ends cancelled. The room they free is kept for the waiting
task (master/queue.py) and held until their containers have exited (the cancel rule)."""

from __future__ import annotations

import logging

from sqlalchemy import Connection

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Task, Worker
from cloudai.core.requests import CancelRequest, TaskFilter
from cloudai.errors import CloudAIError
from cloudai.master.canceller import Canceller
from cloudai.master.retries import retries_left
from cloudai.scheduler.preemption import choose_victims
from cloudai.scheduler.queue import Slot
from cloudai.store import Store, queue, tasks

__all__ = ["Preemptor"]

log = logging.getLogger("cloudai.master.preempt")


def _candidates_tx(conn: Connection) -> tuple[dict[str, list[Task]], set[str]]:
    """worker_id -> its running preemptible tasks not being stopped yet; the pending tasks
    that have preemptions under way for them."""
    stopping = queue.stopping(conn)
    out: dict[str, list[Task]] = {}
    for t in tasks.list_tasks(conn, TaskFilter(TaskStatus.RUNNING.value)):
        if t.spec.preemptible and t.worker_id and t.task_id not in stopping:
            out.setdefault(t.worker_id, []).append(t)
    return out, set(queue.preemptions_for(conn))


class Preemptor:
    def __init__(self, store: Store, canceller: Canceller) -> None:
        self.store = store
        self.canceller = canceller

    async def __call__(self, waiting: list[Slot], workers: list[Worker]) -> None:
        low = await self.store.tx(queue.lowest_preemptible)
        if low is None or not any(s.task.spec.priority > low for s in waiting):
            return  # the common case, in one cheap query: nothing could be preempted
        running, under_way = await self.store.tx(_candidates_tx)
        if not running:
            return
        for slot in waiting:
            task = slot.task
            if task.task_id in under_way or slot.waiting_reason.startswith("retry backoff"):
                continue
            choice = choose_victims(task, workers, running)
            if choice is None:
                continue
            worker_id, victims = choice
            running[worker_id] = [v for v in running[worker_id] if v not in victims]
            log.info(
                "task %s (priority %d) preempts %s on %s",
                task.task_id,
                task.spec.priority,
                ", ".join(v.task_id for v in victims),
                worker_id,
            )
            for v in victims:
                final = None if retries_left(v) > 0 else TaskStatus.CANCELLED
                try:
                    req = CancelRequest("scheduler", f"{queue.PREEMPTED_BY}{task.task_id}")
                    await self.canceller.cancel(v.task_id, req, final=final)
                except CloudAIError as exc:  # it ended meanwhile: its room is free anyway
                    log.info("preempting %s: %s", v.task_id, exc)
