"""The Master gRPC service: validates at the edge, converts, calls Cluster."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from cloudai.api.v1 import master_pb2, master_pb2_grpc, types_pb2
from cloudai.core.models import validate_task_id, validate_worker_id
from cloudai.errors import InvalidArgument, check
from cloudai.master.cluster import Cluster
from cloudai.rpc.convert import (
    resources_from_pb,
    result_from_pb,
    spec_from_pb,
    task_to_pb,
    worker_to_pb,
)
from cloudai.rpc.errors import translate, translate_stream

__all__ = ["MasterService"]

# An explicit alias: grpc is untyped, so to mypy this is Any (a bare assignment is a variable).
Ctx: TypeAlias = grpc.aio.ServicerContext


def _finite(value: float) -> float:
    """Telemetry from a peer: a non-negative finite number, or an INVALID_ARGUMENT."""
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"invalid telemetry value {value!r}")
    return float(value)


def _actor(context: Ctx) -> str:
    """Who is asking: the CLI sends its user (CLOUDAI_USER, else the OS user)."""
    actor = dict(context.invocation_metadata() or ()).get("cloudai-user", "")
    return str(actor)[:128] or "unknown"


def _require_task_id(task_id: str) -> str:
    task_id = task_id.strip()
    check(validate_task_id(task_id))
    return task_id


class MasterService(master_pb2_grpc.MasterServicer):
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.metrics = cluster.metrics  # RPC errors are counted by the translate decorator

    @translate
    async def RegisterWorker(
        self, request: master_pb2.RegisterWorkerRequest, context: Ctx
    ) -> master_pb2.RegisterWorkerResponse:
        orders = await self.cluster.register_worker(
            request.worker_id,
            request.address,
            resources_from_pb(request.capacity),
            request.runtime,
            list(request.running_task_ids),
        )
        return master_pb2.RegisterWorkerResponse(
            accepted=True,
            message=f"worker {request.worker_id} registered",
            heartbeat_interval=self.cluster.config.heartbeat_interval,
            stop_orders=orders,
        )

    @translate
    async def ManualRegisterWorker(
        self, request: master_pb2.ManualRegisterWorkerRequest, context: Ctx
    ) -> types_pb2.WorkerInfo:
        worker = await self.cluster.manual_register(request.worker_id, request.address)
        return worker_to_pb(worker)

    @translate
    async def SendHeartbeat(
        self, request: master_pb2.HeartbeatRequest, context: Ctx
    ) -> master_pb2.HeartbeatResponse:
        telemetry = {
            "cpu_percent": _finite(request.cpu_percent),
            "mem_used_gb": _finite(request.mem_used_gb),
            "disk_free_gb": _finite(request.disk_free_gb),
        }
        usage = [(u.task_id, _finite(u.cpu_percent), _finite(u.mem_used_gb)) for u in request.usage]
        known, orders = await self.cluster.heartbeat(
            request.worker_id,
            list(request.running_task_ids),
            list(request.stopping_task_ids),
            telemetry,
            usage,
        )
        return master_pb2.HeartbeatResponse(
            known=known, stop_task_ids=[o.task_id for o in orders], stop_orders=orders
        )

    @translate
    async def ReportTaskCompletion(
        self, request: types_pb2.TaskResult, context: Ctx
    ) -> types_pb2.TaskAck:
        _require_task_id(request.task_id)
        message = await self.cluster.report(result_from_pb(request))
        return types_pb2.TaskAck(success=True, message=message)

    @translate
    async def SubmitTask(
        self, request: master_pb2.SubmitTaskRequest, context: Ctx
    ) -> types_pb2.Task:
        return task_to_pb(await self.cluster.submit(spec_from_pb(request.spec)))

    @translate
    async def GetTask(self, request: types_pb2.TaskID, context: Ctx) -> types_pb2.Task:
        return task_to_pb(await self.cluster.get_task(_require_task_id(request.task_id)))

    @translate
    async def ListTasks(
        self, request: master_pb2.ListTasksRequest, context: Ctx
    ) -> master_pb2.ListTasksResponse:
        if request.limit < 0:
            raise InvalidArgument("limit must not be negative")
        found = await self.cluster.list_tasks(
            request.status, request.worker_id, request.limit, request.owner, request.cancelled_by
        )
        return master_pb2.ListTasksResponse(tasks=[task_to_pb(t) for t in found])

    @translate
    async def ListWorkers(
        self, request: master_pb2.ListWorkersRequest, context: Ctx
    ) -> master_pb2.ClusterSnapshot:
        found = await self.cluster.list_workers()
        return master_pb2.ClusterSnapshot(workers=[worker_to_pb(w) for w in found])

    @translate
    async def CancelTask(self, request: types_pb2.TaskID, context: Ctx) -> types_pb2.TaskAck:
        """The spec's form: one task, default stop; NOT_FOUND / FAILED_PRECONDITION on error."""
        outcome = await self.cluster.cancel_one(_require_task_id(request.task_id), _actor(context))
        return outcome.to_pb()

    @translate
    async def CancelTasks(
        self, request: master_pb2.CancelRequest, context: Ctx
    ) -> master_pb2.CancelResponse:
        """With options, one or many: one ack per task, errors in the acks."""
        if not request.task_ids:
            raise InvalidArgument("no task IDs given")
        ids = [_require_task_id(t) for t in request.task_ids]
        grace = request.grace_seconds if request.HasField("grace_seconds") else None
        if grace is not None and not math.isfinite(grace):
            raise InvalidArgument("grace must be a number of seconds")
        outcomes = await self.cluster.cancel(
            ids, _actor(context), request.reason, request.force, grace
        )
        return master_pb2.CancelResponse(acks=[o.to_pb() for o in outcomes])

    @translate
    async def DrainWorker(
        self, request: master_pb2.DrainRequest, context: Ctx
    ) -> types_pb2.WorkerInfo:
        if problem := validate_worker_id(request.worker_id):
            raise InvalidArgument(problem)
        return worker_to_pb(await self.cluster.drain(request.worker_id, request.drain))

    @translate
    async def ReportStopProgress(
        self, request: master_pb2.StopProgress, context: Ctx
    ) -> types_pb2.TaskAck:
        _require_task_id(request.task_id)
        await self.cluster.stop_progress(
            request.task_id, request.worker_id, request.stage, request.at, request.detail[:2000]
        )
        return types_pb2.TaskAck(success=True, message="recorded", task_id=request.task_id)

    @translate_stream
    async def StreamTaskLogs(
        self, request: types_pb2.LogsRequest, context: Ctx
    ) -> AsyncIterator[types_pb2.LogChunk]:
        task_id = _require_task_id(request.task_id)
        async for data in self.cluster.stream_logs(task_id, request.follow):
            yield types_pb2.LogChunk(data=data)
