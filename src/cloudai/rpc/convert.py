"""Protobuf <-> core.models conversions, in one place."""

from __future__ import annotations

import math

from cloudai.api.v1 import master_pb2
from cloudai.api.v1 import types_pb2 as pb
from cloudai.core.gpus import GpuDevice
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.limits import quote
from cloudai.core.models import (
    Task,
    TaskEvent,
    TaskResult,
    TaskSpec,
    Worker,
    normalize_signal,
)
from cloudai.core.policy import PRIORITY_DEFAULT, Attempt
from cloudai.core.requests import CancelRequest, TaskFilter
from cloudai.core.resources import Resources
from cloudai.core.stop_update import StopUpdate, parse_stage
from cloudai.errors import InvalidArgument
from cloudai.rpc.convert_cancel import cancellation_from_pb, cancellation_to_pb

__all__ = [
    "cancel_request_from_pb",
    "stop_update_from_pb",
    "stop_update_to_pb",
    "task_filter_from_pb",
    "task_filter_to_pb",
    "cancellation_from_pb",
    "cancellation_to_pb",
    "gpu_from_pb",
    "gpu_to_pb",
    "resources_from_pb",
    "resources_to_pb",
    "result_from_pb",
    "result_to_pb",
    "spec_from_pb",
    "spec_to_pb",
    "task_from_pb",
    "task_to_pb",
    "worker_from_pb",
    "worker_to_pb",
]


def resources_to_pb(r: Resources) -> pb.Resources:
    return pb.Resources(cpu=r.cpu, mem_gb=r.mem_gb, storage_gb=r.storage_gb, gpu=r.gpu)


def resources_from_pb(m: pb.Resources) -> Resources:
    return Resources(cpu=m.cpu, mem_gb=m.mem_gb, storage_gb=m.storage_gb, gpu=m.gpu)


def spec_to_pb(s: TaskSpec) -> pb.TaskSpec:
    m = pb.TaskSpec(
        image=s.image,
        command=list(s.command),
        env=dict(s.env),
        resources=resources_to_pb(s.resources),
        name=s.name,
        worker_id=s.worker_id,
        owner=s.owner,
        stop_signal=s.stop_signal,
        pids_limit=s.pids_limit,
        secret_env=dict(s.secret_env),
        retries=s.retries,
        retry_on_timeout=s.retry_on_timeout,
        priority=s.priority,
        preemptible=s.preemptible,
    )
    if s.grace_seconds is not None:  # unset: the default; 0 is a grace of 0
        m.grace_seconds = s.grace_seconds
    if s.timeout_seconds is not None:
        m.timeout_seconds = s.timeout_seconds
    return m


def spec_from_pb(m: pb.TaskSpec) -> TaskSpec:
    return TaskSpec(
        image=m.image.strip(),
        command=tuple(m.command),
        env=dict(m.env),
        resources=resources_from_pb(m.resources),
        name=m.name,
        worker_id=m.worker_id,
        owner=m.owner,
        grace_seconds=m.grace_seconds if m.HasField("grace_seconds") else None,
        stop_signal=m.stop_signal,
        pids_limit=m.pids_limit,
        secret_env=dict(m.secret_env),
        timeout_seconds=m.timeout_seconds if m.HasField("timeout_seconds") else None,
        retries=m.retries,
        retry_on_timeout=m.retry_on_timeout,
        priority=m.priority if m.HasField("priority") else PRIORITY_DEFAULT,
        preemptible=m.preemptible,
    )


def attempt_to_pb(a: Attempt) -> pb.Attempt:
    m = pb.Attempt(
        number=a.number,
        worker_id=a.worker_id,
        status=a.status,
        reason=a.reason,
        started_at=a.started_at or 0.0,
        ended_at=a.ended_at or 0.0,
        oom_killed=a.oom_killed,
        gpu_ids=list(a.gpu_ids),
    )
    if a.exit_code is not None:
        m.exit_code = a.exit_code
    return m


def attempt_from_pb(m: pb.Attempt) -> Attempt:
    return Attempt(
        number=m.number,
        worker_id=m.worker_id,
        status=m.status,
        exit_code=m.exit_code if m.HasField("exit_code") else None,
        reason=m.reason,
        started_at=m.started_at or None,
        ended_at=m.ended_at or None,
        oom_killed=m.oom_killed,
        gpu_ids=tuple(m.gpu_ids),
    )


def _status(value: str) -> TaskStatus:
    try:
        return TaskStatus(value)
    except ValueError:
        raise InvalidArgument(f"unknown task status {quote(value)}") from None


def task_to_pb(t: Task) -> pb.Task:
    m = pb.Task(
        task_id=t.task_id,
        spec=spec_to_pb(t.spec.masked()),  # a task goes to clients: secrets never do
        status=t.status.value,
        worker_id=t.worker_id or "",
        reason=t.reason,
        created_at=t.created_at,
        started_at=t.started_at or 0.0,
        completed_at=t.completed_at or 0.0,
        oom_killed=t.oom_killed,
        cpu_percent=t.cpu_percent or 0.0,
        mem_used_gb=t.mem_used_gb or 0.0,
        usage_at=t.usage_at or 0.0,
        gpu_ids=list(t.gpu_ids),
        attempt=t.attempt,
        attempts=[attempt_to_pb(a) for a in t.attempts],
        position=t.position,
        waiting_reason=t.waiting_reason,
        events=[
            pb.TaskEvent(at=e.at, kind=e.kind, actor=e.actor, message=e.message) for e in t.events
        ],
    )
    if t.exit_code is not None:
        m.exit_code = t.exit_code
    if t.result is not None:
        m.result.CopyFrom(result_to_pb(t.result))
    if t.cancellation is not None:
        m.cancellation.CopyFrom(cancellation_to_pb(t.cancellation))
    return m


def task_from_pb(m: pb.Task) -> Task:
    return Task(
        task_id=m.task_id,
        spec=spec_from_pb(m.spec),
        status=_status(m.status),
        worker_id=m.worker_id or None,
        exit_code=m.exit_code if m.HasField("exit_code") else None,
        reason=m.reason,
        created_at=m.created_at,
        started_at=m.started_at or None,
        completed_at=m.completed_at or None,
        oom_killed=m.oom_killed,
        cpu_percent=m.cpu_percent if m.usage_at else None,
        mem_used_gb=m.mem_used_gb if m.usage_at else None,
        usage_at=m.usage_at or None,
        gpu_ids=tuple(m.gpu_ids),
        attempt=m.attempt or 1,
        attempts=tuple(attempt_from_pb(a) for a in m.attempts),
        position=m.position,
        waiting_reason=m.waiting_reason,
        events=tuple(TaskEvent(e.at, e.kind, e.actor, e.message) for e in m.events),
        result=result_from_pb(m.result) if m.HasField("result") else None,
        cancellation=(
            cancellation_from_pb(m.task_id, m.worker_id, m.cancellation)
            if m.HasField("cancellation")
            else None
        ),
    )


def result_to_pb(r: TaskResult) -> pb.TaskResult:
    m = pb.TaskResult(
        task_id=r.task_id,
        worker_id=r.worker_id,
        status=r.status.value,
        logs=r.logs,
        completed_at=r.completed_at,
        error=r.error,
        oom_killed=r.oom_killed,
        started_at=r.started_at or 0.0,
    )
    if r.exit_code is not None:
        m.exit_code = r.exit_code
    return m


def result_from_pb(m: pb.TaskResult) -> TaskResult:
    status = _status(m.status)
    if status not in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED):
        raise InvalidArgument(
            f"a result must be completed, failed or cancelled, not {quote(m.status)}"
        )
    return TaskResult(
        task_id=m.task_id,
        worker_id=m.worker_id,
        status=status,
        logs=m.logs,
        exit_code=m.exit_code if m.HasField("exit_code") else None,
        completed_at=m.completed_at,
        error=m.error,
        oom_killed=m.oom_killed,
        started_at=m.started_at or None,
    )


def worker_to_pb(w: Worker) -> pb.WorkerInfo:
    return pb.WorkerInfo(
        worker_id=w.worker_id,
        address=w.address,
        capacity=resources_to_pb(w.capacity),
        allocated=resources_to_pb(w.allocated),
        available=resources_to_pb(w.available),
        state=w.state,
        last_heartbeat=w.last_heartbeat or 0.0,
        running_tasks=list(w.running_tasks),
        releasing_tasks=list(w.releasing_tasks),
        releasing=resources_to_pb(w.releasing),
        registered_at=w.registered_at,
        runtime=w.runtime,
        drained=w.drained,
        cpu_percent=w.cpu_percent or 0.0,
        mem_used_gb=w.mem_used_gb or 0.0,
        disk_free_gb=w.disk_free_gb or 0.0,
        gpus=[gpu_to_pb(g) for g in w.gpus],
        stop_failures=dict(w.stop_failures),
    )


def worker_from_pb(m: pb.WorkerInfo) -> Worker:
    return Worker(
        worker_id=m.worker_id,
        address=m.address,
        capacity=resources_from_pb(m.capacity),
        allocated=resources_from_pb(m.allocated),
        state=m.state,
        last_heartbeat=m.last_heartbeat or None,
        registered_at=m.registered_at,
        runtime=m.runtime,
        running_tasks=tuple(m.running_tasks),
        releasing_tasks=tuple(m.releasing_tasks),
        releasing=resources_from_pb(m.releasing),
        drained=m.drained,
        cpu_percent=m.cpu_percent if m.last_heartbeat else None,
        mem_used_gb=m.mem_used_gb if m.last_heartbeat else None,
        disk_free_gb=m.disk_free_gb if m.last_heartbeat else None,
        gpus=tuple(gpu_from_pb(g) for g in m.gpus),
        stop_failures=tuple(sorted(m.stop_failures.items())),
    )


_GPU_STATS = ("memory_total_mb", "memory_used_mb", "utilization_percent")


def gpu_to_pb(g: GpuDevice) -> pb.GpuDevice:
    m = pb.GpuDevice(id=g.gpu_id, name=g.name, busy=g.busy, task_id=g.task_id)
    for name in _GPU_STATS:
        if (value := getattr(g, name)) is not None:
            setattr(m, name, value)
    return m


def gpu_from_pb(m: pb.GpuDevice) -> GpuDevice:
    """A device from a peer; a telemetry value that is not a finite, non-negative number is
    an INVALID_ARGUMENT."""
    stats: dict[str, float | None] = {}
    for name in _GPU_STATS:
        value = getattr(m, name) if m.HasField(name) else None
        if value is not None and (not math.isfinite(value) or value < 0):
            raise InvalidArgument(f"invalid GPU {name} {value!r}")
        stats[name] = value
    return GpuDevice(
        gpu_id=m.id,
        name=m.name[:128],
        busy=m.busy,
        task_id=m.task_id,
        memory_total_mb=stats["memory_total_mb"],
        memory_used_mb=stats["memory_used_mb"],
        utilization_percent=stats["utilization_percent"],
    )


def cancel_request_from_pb(m: master_pb2.CancelRequest, actor: str) -> CancelRequest:
    """A cancel's options as a user sent them; the stop signal as its one name (TERM, term,
    15 -> SIGTERM). Checked by `CancelRequest.problems()` where it is used."""
    try:
        stop_signal = normalize_signal(m.stop_signal)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    grace = m.grace_seconds if m.HasField("grace_seconds") else None
    return CancelRequest(actor, m.reason, m.force, grace, stop_signal)


def task_filter_from_pb(m: master_pb2.ListTasksRequest) -> TaskFilter:
    return TaskFilter(m.status, m.worker_id, m.owner, m.cancelled_by, m.limit, m.newest)


def task_filter_to_pb(f: TaskFilter) -> master_pb2.ListTasksRequest:
    return master_pb2.ListTasksRequest(
        status=f.status,
        worker_id=f.worker_id,
        owner=f.owner,
        cancelled_by=f.cancelled_by,
        limit=f.limit,
        newest=f.newest,
    )


def stop_update_to_pb(u: StopUpdate) -> master_pb2.StopUpdate:
    m = master_pb2.StopUpdate(
        task_id=u.task_id, worker_id=u.worker_id, stage=u.stage.value, at=u.at, detail=u.detail
    )
    if u.result is not None:
        m.result.CopyFrom(result_to_pb(u.result))
    return m


def stop_update_from_pb(m: master_pb2.StopUpdate) -> StopUpdate:
    try:
        stage = parse_stage(m.stage)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    return StopUpdate(
        task_id=m.task_id,
        worker_id=m.worker_id,
        stage=stage,
        at=m.at,
        detail=m.detail,
        result=result_from_pb(m.result) if m.HasField("result") else None,
    )
