"""Commits placements against the store: the scheduler proposes, this decides.

Each function runs inside one transaction (Store.tx) and touches each table only through the
module that owns it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from sqlalchemy import Connection

from cloudai.core.gpus import GpuDevice, pick_gpus
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Task, TaskResult, TaskSpec, Worker, worker_state
from cloudai.core.resources import Resources
from cloudai.errors import Conflict, NoCapacity, NotFound
from cloudai.master.retries import after_report_tx
from cloudai.scheduler.placement import fits_anywhere
from cloudai.store import (
    assignments,
    attempts,
    cancellations,
    events,
    holdings,
    results,
    tasks,
    workers,
)
from cloudai.store._dialect import lock_row, one_snapshot
from cloudai.store.schema import workers as workers_table

__all__ = [
    "ReportOutcome",
    "commit_placement",
    "load_workers",
    "task_detail",
    "record_result",
    "submit",
]


def _last_beat(row: workers.WorkerRow, heard: Mapping[str, float] | None) -> float | None:
    """The later of the heartbeat written and the one heard (master/beats.py: not yet
    written)."""
    written: float | None = row["last_heartbeat"]
    late = None if heard is None else heard.get(row["worker_id"])
    if late is None or (written is not None and written >= late):
        return written
    return late


def load_workers(
    conn: Connection,
    now: float,
    interval: float,
    worker_id: str | None = None,
    heard: Mapping[str, float] | None = None,
) -> list[Worker]:
    """Every worker (or just `worker_id`) with its allocation derived from the tasks that hold
    resources on it. A fixed number of queries, whatever the number of workers. `heard`: the
    heartbeats heard and not yet written, which count for its state."""
    allocated = holdings.allocated_by_worker(conn, worker_id)
    active = holdings.active_ids_by_worker(conn, worker_id)
    releasing = holdings.releasing_by_worker(conn, worker_id)
    stop_failures = holdings.stop_failures_by_worker(conn, worker_id)
    held_gpus = holdings.held_gpus_by_worker(conn, worker_id)
    rows = workers.all_rows(conn) if worker_id is None else [workers.get(conn, worker_id)]
    out = []
    for row in rows:
        if row is None or row["removed_at"] is not None:
            continue
        wid = row["worker_id"]
        last = _last_beat(row, heard)
        out.append(
            Worker(
                worker_id=wid,
                address=row["address"],
                capacity=workers.capacity_of(row),
                allocated=allocated.get(wid, Resources()),
                state=worker_state(last, now, interval),
                last_heartbeat=last,
                registered_at=row["registered_at"],
                runtime=row["runtime"],
                running_tasks=tuple(sorted(active.get(wid, ()))),
                releasing_tasks=tuple(releasing.get(wid, ((), Resources()))[0]),
                releasing=releasing.get(wid, ((), Resources()))[1],
                stop_failures=stop_failures.get(wid, ()),
                drained=bool(row["drained"]),
                cpu_percent=row["cpu_percent"],
                mem_used_gb=row["mem_used_gb"],
                disk_free_gb=row["disk_free_gb"],
                gpus=_devices(row, held_gpus.get(wid, {})),
            )
        )
    return out


def _devices(row: workers.WorkerRow, held: dict[str, str]) -> tuple[GpuDevice, ...]:
    """A worker's GPUs: who holds each, its last telemetry, and whether it is flagged busy."""
    stats = workers.gpu_stats_of(row)
    busy = workers.busy_gpus_of(row)
    out = []
    for gpu_id in workers.gpu_ids_of(row):
        s = stats.get(gpu_id) or {}
        out.append(
            GpuDevice(
                gpu_id=gpu_id,
                name=s.get("name") or "",
                memory_total_mb=s.get("memory_total_mb"),
                memory_used_mb=s.get("memory_used_mb"),
                utilization_percent=s.get("utilization_percent"),
                busy=gpu_id in busy,
                task_id=held.get(gpu_id, ""),
            )
        )
    return tuple(out)


def commit_placement(
    conn: Connection, task_id: str, worker_id: str, request: Resources, now: float, actor: str
) -> bool:
    """Place a pending task on a worker if the worker still has room; True when placed.

    The worker row is locked first, so two placements on one worker are serialized and the
    room each one sees includes the other's. A task that asks for GPUs gets the lowest free
    devices: none held by a task that holds its resources, none its worker flags busy."""
    row = lock_row(conn, workers_table, "worker_id", worker_id)
    if row is None or row["drained"] or row["removed_at"] is not None:
        return False
    return _place_on_locked(conn, row, task_id, request, now, actor) is not None


def _place_on_locked(
    conn: Connection,
    row: workers.WorkerRow,
    task_id: str,
    request: Resources,
    now: float,
    actor: str,
) -> tuple[str, ...] | None:
    """Place the task on the locked worker `row` if it has room: the GPUs it got (None: not
    placed)."""
    worker_id = row["worker_id"]
    held = holdings.allocated_by_worker(conn, worker_id).get(worker_id, Resources())
    if not request.fits_in(workers.capacity_of(row) - held):
        return None
    gpu_ids: tuple[str, ...] | None = ()
    if request.gpu:
        taken = set(holdings.held_gpus_by_worker(conn, worker_id).get(worker_id, {}))
        taken |= workers.busy_gpus_of(row)
        gpu_ids = pick_gpus(workers.gpu_ids_of(row), taken, request.gpu)
    if gpu_ids is None:
        return None
    if not tasks.transition(conn, task_id, TaskStatus.RUNNING):
        return None
    assignments.create(conn, task_id, worker_id, now, gpu_ids)
    where = f"placed on {worker_id}" + (f", GPU {','.join(gpu_ids)}" if gpu_ids else "")
    events.add(conn, task_id, "placed", actor, where, now)
    return gpu_ids


def submit(
    conn: Connection,
    task_id: str,
    spec: TaskSpec,
    now: float,
    interval: float,
    heard: float | None = None,
) -> tuple[Task, str]:
    """Store a new task; place it at once when it names a worker (`heard`: that worker's
    last heartbeat not yet written). All or nothing. The task as stored, and the address of
    the worker it was placed on ("": pending)."""
    if spec.worker_id:
        return _submit_placed(conn, task_id, spec, now, interval, heard)
    else:
        all_workers = load_workers(conn, now, interval)
        request = spec.resources
        if all_workers and not fits_anywhere(request, all_workers):
            biggest = max(all_workers, key=lambda w: (w.capacity.cpu, w.capacity.mem_gb))
            raise NoCapacity(
                f"task needs {request}, more than any worker has (largest: {biggest.worker_id} "
                f"with {biggest.capacity})"
            )
        _insert(conn, task_id, spec, now)
    return Task(task_id, spec, TaskStatus.PENDING, created_at=now), ""


def _insert(conn: Connection, task_id: str, spec: TaskSpec, now: float) -> None:
    tasks.insert(conn, task_id, spec, now)
    events.add(conn, task_id, "submitted", spec.owner or "unknown", f"image {spec.image}", now)


def _submit_placed(
    conn: Connection,
    task_id: str,
    spec: TaskSpec,
    now: float,
    interval: float,
    heard: float | None,
) -> tuple[Task, str]:
    """A task that names its worker: the worker's row locked first (as a placement locks
    it), then checked, the task stored and placed."""
    name, request = spec.worker_id, spec.resources
    row = lock_row(conn, workers_table, "worker_id", name)
    if row is None or row["removed_at"] is not None:
        raise NotFound(f"unknown worker {name!r}")
    state = worker_state(_last_beat(row, {name: heard} if heard else None), now, interval)
    if state != "healthy":
        raise Conflict(f"worker {name!r} is {state}: not taking tasks")
    if row["drained"]:
        raise Conflict(f"worker {name!r} is drained: not taking tasks")
    capacity = workers.capacity_of(row)
    if not request.fits_in(capacity):
        raise NoCapacity(f"task needs {request}, more than worker {name!r} has ({capacity})")
    _insert(conn, task_id, spec, now)
    gpu_ids = _place_on_locked(conn, row, task_id, request, now, spec.owner or "user")
    if gpu_ids is None:
        held = holdings.allocated_by_worker(conn, name).get(name, Resources())
        available = (capacity - held).clamp_zero()
        raise NoCapacity(f"worker {name!r} has no room for {request} now (available: {available})")
    placed = Task(task_id, spec, TaskStatus.RUNNING, name, created_at=now, gpu_ids=gpu_ids)
    return placed, row["address"]


def task_detail(conn: Connection, task_id: str) -> Task | None:
    """A task with its events and its stored result, as one snapshot (a stop's exit and
    removal commit together: never the removal without the exit's event)."""
    one_snapshot(conn)
    task = tasks.get(conn, task_id, events=True)
    if task is None:
        return None
    if task.attempt > 1:
        task = dataclasses.replace(task, attempts=attempts.for_task(conn, task_id))
    cancellation = cancellations.get(conn, task_id)
    if cancellation is not None:
        task = dataclasses.replace(task, cancellation=cancellation)
    row = results.get(conn, task_id)
    if row is None:
        return task
    result = TaskResult(
        task_id=task_id,
        worker_id=row["worker_id"],
        status=TaskStatus(row["status"]),
        logs=row["logs"],
        exit_code=row["exit_code"],
        completed_at=row["completed_at"],
        error=row["error"],
        oom_killed=row["oom_killed"],
        started_at=row["started_at"],
    )
    return dataclasses.replace(task, result=result)


class ReportOutcome:
    STORED = "stored"  # first report: result stored, status set
    DUPLICATE = "duplicate"  # a result was already stored: kept as an event


def record_result(conn: Connection, result: TaskResult, now: float) -> tuple[str, str]:
    """Store a worker's report once. Returns (outcome, message)."""
    task = tasks.get(conn, result.task_id)
    if task is None:
        raise NotFound(f"task {result.task_id!r} not found")
    placed_on = task.worker_id  # its assignment's (tasks.get reads it alongside)
    if placed_on != result.worker_id:
        raise Conflict(
            f"task {result.task_id} is assigned to {placed_on!r}, not {result.worker_id!r}"
        )
    if task.status is TaskStatus.RUNNING and (requeued := after_report_tx(conn, task, result, now)):
        return ReportOutcome.STORED, requeued
    if task.status is TaskStatus.FAILED and result.status is TaskStatus.CANCELLED:
        # Stopped by its time limit: its result says how the task ended, and why.
        result = dataclasses.replace(result, status=task.status, error=result.error or task.reason)
    stored = results.insert_once(conn, result, now)
    won = tasks.transition(
        conn,
        result.task_id,
        result.status,
        exit_code=result.exit_code,
        completed_at=result.completed_at or now,
        reason=result.error,
        oom_killed=result.oom_killed,
        **({"started_at": result.started_at} if result.started_at else {}),
    )
    code = "none" if result.exit_code is None else str(result.exit_code)
    detail = f"exit code {code}" + (f": {result.error}" if result.error else "")
    if won:
        events.add(conn, result.task_id, result.status.value, result.worker_id, detail, now)
    elif stored:
        # The status was decided before this report (e.g. cancelled): keep the status, and
        # fill in the exit code the decision could not know.
        tasks.fill_exit(conn, result.task_id, result.exit_code, result.oom_killed)
        events.add(
            conn,
            result.task_id,
            "report",
            result.worker_id,
            f"reported {result.status.value} ({detail}); status stays {task.status.value}",
            now,
        )
    else:
        events.add(
            conn,
            result.task_id,
            "late_report",
            result.worker_id,
            f"reported {result.status.value} ({detail}) after the result was stored; ignored",
            now,
        )
    if stored:
        return ReportOutcome.STORED, "result stored"
    return ReportOutcome.DUPLICATE, "result already stored; report kept as an event"
