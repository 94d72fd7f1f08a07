"""The queue of pending tasks: its order, and a placement plan over a snapshot of the workers
with, for each task that waits, why. Pure: no I/O. The dispatcher commits the plan against the
store (which re-checks the room); `task ls --status pending` shows it.

Order: highest priority first; among equals, the task of the user with the fewest running
tasks (counting those ahead of it in the queue, so two users' tasks alternate); then oldest."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cloudai.core.models import Task, Worker, WorkerState
from cloudai.scheduler.placement import propose

__all__ = ["Slot", "plan", "queue_order", "why_waiting"]


def queue_order(pending: Sequence[Task], running_by_owner: Mapping[str, int]) -> list[Task]:
    """The pending tasks in the order they are placed."""
    out: list[Task] = []
    for priority in sorted({t.spec.priority for t in pending}, reverse=True):
        heads: dict[str, list[Task]] = {}
        for t in sorted(
            (t for t in pending if t.spec.priority == priority),
            key=lambda t: (t.created_at, t.task_id),
        ):
            heads.setdefault(t.spec.owner, []).append(t)
        share = {owner: running_by_owner.get(owner, 0) for owner in heads}
        while heads:
            owner = min(
                heads, key=lambda o: (share[o], heads[o][0].created_at, heads[o][0].task_id)
            )
            out.append(heads[owner].pop(0))
            share[owner] += 1
            if not heads[owner]:
                del heads[owner]
    return out


@dataclass(frozen=True, slots=True)
class Slot:
    """A pending task's place in the plan: its position, the worker it goes to now (None:
    it waits) and why it waits."""

    task: Task
    position: int
    worker_id: str | None
    waiting_reason: str = ""


def plan(
    ordered: Sequence[Task],
    workers: Sequence[Worker],
    now: float,
    backing_off: Mapping[str, float] | None = None,
    reserved: Mapping[str, tuple[str, int]] | None = None,
) -> list[Slot]:
    """Walk the queue in order over the snapshot: each task goes to the least loaded healthy
    worker with room (the room it takes is gone for those after it), or waits, with why.
    `reserved`: worker_id -> (task_id, priority) of a task that preempts tasks there: no task
    of lower or equal priority is placed there meanwhile."""
    backing_off = backing_off or {}
    reserved = reserved or {}
    snapshot = list(workers)
    out = []
    for i, task in enumerate(ordered, 1):
        if (until := backing_off.get(task.task_id)) is not None:
            wait = f"retry backoff: placed in {max(until - now, 0):.0f}s at the earliest"
            out.append(Slot(task, i, None, wait))
            continue
        candidates = [
            w
            for w in snapshot
            if (not task.spec.worker_id or w.worker_id == task.spec.worker_id)
            and _may_use(task, w.worker_id, reserved)
        ]
        choice = propose(task.spec.resources, candidates)
        if choice is None:
            out.append(Slot(task, i, None, why_waiting(task, snapshot, reserved)))
            continue
        out.append(Slot(task, i, choice))
        snapshot = [
            dataclasses.replace(w, allocated=w.allocated + task.spec.resources)
            if w.worker_id == choice
            else w
            for w in snapshot
        ]
    return out


def _may_use(task: Task, worker_id: str, reserved: Mapping[str, tuple[str, int]]) -> bool:
    holder = reserved.get(worker_id)
    return holder is None or holder[0] == task.task_id or task.spec.priority > holder[1]


def why_waiting(
    task: Task, workers: Sequence[Worker], reserved: Mapping[str, tuple[str, int]] | None = None
) -> str:
    """One line: why no worker takes this task now."""
    reserved = reserved or {}
    r = task.spec.resources
    mine = [holder for holder in reserved.values() if holder[0] == task.task_id]
    if mine:
        return "waiting for the tasks it preempts to stop"
    if task.spec.worker_id:
        w = next((w for w in workers if w.worker_id == task.spec.worker_id), None)
        if w is None:
            return f"worker {task.spec.worker_id} is not registered"
        if w.state != WorkerState.HEALTHY or w.drained:
            return f"worker {w.worker_id} is {'drained' if w.drained else w.state}"
        return f"worker {w.worker_id} has no room: needs {r}, {w.available} free"
    up = [w for w in workers if w.state == WorkerState.HEALTHY and not w.drained]
    if not up:
        return "no healthy worker"
    free = [w.available for w in up if _may_use(task, w.worker_id, reserved)]
    if not free:
        return "the workers with room are kept for a higher-priority task"
    for need, have, what in (
        (r.gpu, max(f.gpu for f in free), f"{r.gpu} free GPU{'s' if r.gpu != 1 else ''}"),
        (r.cpu, max(f.cpu for f in free), f"{r.cpu:g} free CPU core{'s' if r.cpu != 1 else ''}"),
        (r.mem_gb, max(f.mem_gb for f in free), f"{r.mem_gb:g} GB free memory"),
        (r.storage_gb, max(f.storage_gb for f in free), f"{r.storage_gb:g} GB free storage"),
    ):
        if need > have:
            return f"no worker with {what}"
    if any(r.fits_in(f) for f in free):
        return "the room it fits in goes to tasks ahead of it"
    return f"no worker with room for all of {r} at once"
