"""The Worker gRPC service: the master assigns, cancels and reads logs through it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from cloudai.api.v1 import types_pb2, worker_pb2, worker_pb2_grpc
from cloudai.core.gpus import GpuDevice
from cloudai.core.hardening import ContainerPolicy
from cloudai.core.models import Worker, validate_task_id
from cloudai.errors import InvalidArgument, PermissionDenied, Unauthenticated, check
from cloudai.rpc.convert import spec_from_pb, worker_to_pb
from cloudai.rpc.errors import translate, translate_stream
from cloudai.security.tls import peer_identity
from cloudai.worker.gpus import Gpus
from cloudai.worker.link import MasterLink
from cloudai.worker.orders import order_from_pb
from cloudai.worker.supervisor import Supervisor

__all__ = ["WorkerService"]

# An explicit alias: grpc is untyped, so to mypy this is Any (a bare assignment is a variable).
Ctx: TypeAlias = grpc.aio.ServicerContext


class WorkerService(worker_pb2_grpc.WorkerServicer):
    """Every call must come from the master: with TLS, the handshake already demands a
    certificate of the cluster CA, and `_from_master` demands the master's."""

    def __init__(
        self,
        supervisor: Supervisor,
        link: MasterLink,
        metrics: Any = None,
        policy: ContainerPolicy | None = None,
        secure: bool = True,
        gpus: Gpus | None = None,
    ) -> None:
        self.gpus = gpus or Gpus(())
        self.supervisor = supervisor
        self.link = link
        self.metrics = metrics  # RPC errors are counted by the translate decorator
        self.policy = policy or ContainerPolicy()
        self.secure = secure

    def _from_master(self, context: Ctx) -> None:
        if not self.secure:
            return
        who = peer_identity(context)
        if who is None:
            raise Unauthenticated("calls to a worker need the master's certificate")
        if who.role != "master":
            raise PermissionDenied(f"only the master may call a worker, not {who.role} {who.name}")

    @translate
    async def AssignTask(
        self, request: worker_pb2.AssignTaskRequest, context: Ctx
    ) -> types_pb2.TaskAck:
        self._from_master(context)
        spec = spec_from_pb(request.spec)
        check(validate_task_id(request.task_id), spec.problems())
        # This worker's admin rules; the master ends a refused task failed with this reason.
        if (refusal := self.policy.refusal(spec.image, spec.pids_limit)) is not None:
            raise InvalidArgument(refusal)
        gpu_ids = tuple(request.gpu_ids)
        if (refusal := self._gpu_refusal(spec.resources.gpu, gpu_ids)) is not None:
            raise InvalidArgument(refusal)
        attempt = max(request.attempt, 0)
        message = self.supervisor.assign(request.task_id, spec, gpu_ids, attempt)
        return types_pb2.TaskAck(success=True, message=message)

    def _gpu_refusal(self, wanted: int, gpu_ids: tuple[str, ...]) -> str | None:
        """Why this worker cannot give a task `gpu_ids` (None: it can). By ID only: a task
        that asks for GPUs and comes with none (an older master) is refused."""
        if len(gpu_ids) != wanted or len(set(gpu_ids)) != len(gpu_ids):
            return (
                f"the task asks for {wanted} GPU(s) but was assigned {','.join(gpu_ids) or 'none'}"
            )
        if unknown := [g for g in gpu_ids if g not in self.gpus.ids]:
            mine = ",".join(self.gpus.ids) or "none"
            return f"GPU {','.join(unknown)} is not on this worker (its GPUs: {mine})"
        return None

    @translate
    async def CancelTask(
        self, request: types_pb2.CancelTaskRequest, context: Ctx
    ) -> types_pb2.TaskAck:
        """Acknowledge at once; the stop runs on the worker's own time."""
        self._from_master(context)
        task_id, order = order_from_pb(request)
        message = self.supervisor.cancel(task_id, order)
        return types_pb2.TaskAck(success=True, message=message, task_id=task_id)

    @translate_stream
    async def StreamTaskLogs(
        self, request: types_pb2.LogsRequest, context: Ctx
    ) -> AsyncIterator[types_pb2.LogChunk]:
        self._from_master(context)
        check(validate_task_id(request.task_id))
        entry = self.supervisor.handle_of(request.task_id)
        async with asyncio.timeout(600):
            await entry.started.wait()
        if entry.handle is None:
            return
        async for data in self.supervisor.runtime.follow_logs(entry.handle, request.follow):
            yield types_pb2.LogChunk(data=data)

    @translate
    async def Describe(
        self, request: worker_pb2.DescribeRequest, context: Ctx
    ) -> types_pb2.WorkerInfo:
        self._from_master(context)
        info = Worker(
            worker_id=self.link.worker_id,
            address=self.link.address,
            capacity=self.link.capacity,
            state="healthy",
            runtime=self.link.runtime,
            running_tasks=tuple(self.supervisor.running_ids()),
            gpus=tuple(GpuDevice(g) for g in self.gpus.ids),
        )
        return worker_to_pb(info)
