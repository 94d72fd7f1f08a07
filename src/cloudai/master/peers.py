"""Channels to workers, cached by address (a cache: rebuilt on demand)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from cloudai.api.v1 import types_pb2, worker_pb2, worker_pb2_grpc
from cloudai.core.models import TaskSpec, Worker
from cloudai.rpc.convert import spec_to_pb, worker_from_pb
from cloudai.rpc.errors import from_rpc_error
from cloudai.rpc.server import CHANNEL_OPTIONS

__all__ = ["WorkerPeers"]

ASSIGN_DEADLINE = 10.0
CANCEL_DEADLINE = 30.0
DESCRIBE_DEADLINE = 3.0
FOLLOW_DEADLINE = 24 * 3600.0


class WorkerPeers:
    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, address: str) -> worker_pb2_grpc.WorkerStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._channels[address] = channel
        return worker_pb2_grpc.WorkerStub(channel)

    async def assign(self, address: str, task_id: str, spec: TaskSpec) -> str:
        try:
            ack = await self._stub(address).AssignTask(
                worker_pb2.AssignTaskRequest(task_id=task_id, spec=spec_to_pb(spec)),
                timeout=ASSIGN_DEADLINE,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"worker at {address}") from exc
        return str(ack.message)

    async def cancel(
        self, address: str, order: types_pb2.CancelTaskRequest, timeout: float = CANCEL_DEADLINE
    ) -> str:
        try:
            ack = await self._stub(address).CancelTask(order, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"worker at {address}") from exc
        return str(ack.message)

    async def describe(self, address: str) -> Worker:
        try:
            info = await self._stub(address).Describe(
                worker_pb2.DescribeRequest(), timeout=DESCRIBE_DEADLINE
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"worker at {address}") from exc
        return worker_from_pb(info)

    async def logs(self, address: str, task_id: str, follow: bool) -> AsyncIterator[bytes]:
        call = self._stub(address).StreamTaskLogs(
            types_pb2.LogsRequest(task_id=task_id, follow=follow),
            timeout=FOLLOW_DEADLINE if follow else 30.0,
        )
        try:
            async for chunk in call:
                yield chunk.data
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"worker at {address}") from exc
        finally:
            call.cancel()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
