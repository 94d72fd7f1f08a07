"""Which running tasks to preempt for a waiting one. Pure: no I/O.

A task may be preempted only when it is marked preemptible and has a lower priority than the
waiting task. On each worker where the waiting task would fit once some such tasks leave, the
fewest that make room are chosen (then the lowest priorities); the worker needing the fewest
wins. A worker where it fits once the tasks already stopping there are gone needs none."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from cloudai.core.models import Task, Worker, WorkerState
from cloudai.core.resources import Resources

__all__ = ["choose_victims"]

EXACT_UP_TO = 8  # candidates on one worker searched exhaustively; beyond, lowest priority first


def choose_victims(
    task: Task, workers: Sequence[Worker], running: Mapping[str, Sequence[Task]]
) -> tuple[str, list[Task]] | None:
    """(worker_id, the tasks to preempt there), or None when no preemption makes room.
    `running`: worker_id -> its running tasks that are not being stopped already."""
    need = task.spec.resources
    best: tuple[int, int, str, list[Task]] | None = None
    for w in workers:
        if w.state != WorkerState.HEALTHY or w.drained or not need.fits_in(w.capacity):
            continue
        if task.spec.worker_id and w.worker_id != task.spec.worker_id:
            continue
        room = w.available + w.releasing
        if need.fits_in(room):
            return None  # room is freeing up already: wait for it
        candidates = sorted(
            (
                v
                for v in running.get(w.worker_id, ())
                if v.spec.preemptible and v.spec.priority < task.spec.priority
            ),
            key=lambda v: (v.spec.priority, -v.created_at),
        )
        found = _fewest(need, room, candidates)
        if found is None:
            continue
        key = (len(found), sum(v.spec.priority for v in found), w.worker_id)
        if best is None or key < best[:3]:
            best = (*key, found)
    return None if best is None else (best[2], best[3])


def _fewest(need: Resources, room: Resources, candidates: list[Task]) -> list[Task] | None:
    if len(candidates) > EXACT_UP_TO:
        chosen: list[Task] = []
        for v in candidates:
            chosen.append(v)
            if need.fits_in(room + Resources.total(c.spec.resources for c in chosen)):
                return chosen
        return None
    for k in range(1, len(candidates) + 1):
        for combo in itertools.combinations(candidates, k):
            if need.fits_in(room + Resources.total(c.spec.resources for c in combo)):
                return list(combo)
    return None
