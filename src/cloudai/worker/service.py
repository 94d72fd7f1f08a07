"""The Worker gRPC service: the master assigns, cancels and reads logs through it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from cloudai.api.v1 import types_pb2, worker_pb2, worker_pb2_grpc
from cloudai.core.models import Worker, validate_task_id
from cloudai.errors import check
from cloudai.rpc.convert import spec_from_pb, worker_to_pb
from cloudai.rpc.errors import translate, translate_stream
from cloudai.worker.link import MasterLink
from cloudai.worker.orders import order_from_pb
from cloudai.worker.supervisor import Supervisor

__all__ = ["WorkerService"]

# An explicit alias: grpc is untyped, so to mypy this is Any (a bare assignment is a variable).
Ctx: TypeAlias = grpc.aio.ServicerContext


class WorkerService(worker_pb2_grpc.WorkerServicer):
    def __init__(self, supervisor: Supervisor, link: MasterLink, metrics: Any = None) -> None:
        self.supervisor = supervisor
        self.link = link
        self.metrics = metrics  # RPC errors are counted by the translate decorator

    @translate
    async def AssignTask(
        self, request: worker_pb2.AssignTaskRequest, context: Ctx
    ) -> types_pb2.TaskAck:
        spec = spec_from_pb(request.spec)
        check(validate_task_id(request.task_id), spec.problems())
        message = self.supervisor.assign(request.task_id, spec)
        return types_pb2.TaskAck(success=True, message=message)

    @translate
    async def CancelTask(
        self, request: types_pb2.CancelTaskRequest, context: Ctx
    ) -> types_pb2.TaskAck:
        """Acknowledge at once; the stop runs on the worker's own time."""
        task_id, order = order_from_pb(request)
        message = self.supervisor.cancel(task_id, order)
        return types_pb2.TaskAck(success=True, message=message, task_id=task_id)

    @translate_stream
    async def StreamTaskLogs(
        self, request: types_pb2.LogsRequest, context: Ctx
    ) -> AsyncIterator[types_pb2.LogChunk]:
        check(validate_task_id(request.task_id))
        entry = self.supervisor.handle_of(request.task_id)
        await asyncio.wait_for(entry.started.wait(), timeout=600)
        if entry.handle is None:
            return
        async for data in self.supervisor.runtime.follow_logs(entry.handle, request.follow):
            yield types_pb2.LogChunk(data=data)

    @translate
    async def Describe(
        self, request: worker_pb2.DescribeRequest, context: Ctx
    ) -> types_pb2.WorkerInfo:
        info = Worker(
            worker_id=self.link.worker_id,
            address=self.link.address,
            capacity=self.link.capacity,
            state="healthy",
            runtime=self.link.runtime,
            running_tasks=tuple(self.supervisor.running_ids()),
        )
        return worker_to_pb(info)
