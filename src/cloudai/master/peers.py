"""Channels to workers, cached by worker and address (a cache: rebuilt on demand). With the
cluster's TLS, each channel is mutual TLS and checks that the peer holds worker ID's
certificate (the name `ID.worker.cloudai`), whatever address it was registered at."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc

from cloudai.api.v1 import types_pb2, worker_pb2, worker_pb2_grpc
from cloudai.core.models import TaskSpec, Worker
from cloudai.errors import Conflict, Unavailable
from cloudai.rpc.convert import spec_to_pb, worker_from_pb
from cloudai.rpc.errors import from_rpc_error
from cloudai.rpc.server import CHANNEL_OPTIONS
from cloudai.security.tls import Tls, worker_target_options

__all__ = ["WorkerPeers"]

ASSIGN_DEADLINE = 10.0
CANCEL_DEADLINE = 30.0
DESCRIBE_DEADLINE = 3.0
LOGS_CONNECT_DEADLINE = 5.0  # a worker that does not answer this soon is named in the error
FOLLOW_DEADLINE = 24 * 3600.0


class WorkerPeers:
    def __init__(self, tls: Tls | None = None) -> None:
        self.tls = tls
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}

    def _stub(self, worker_id: str, address: str) -> worker_pb2_grpc.WorkerStub:
        channel = self._channels.get((worker_id, address))
        if channel is None:
            if self.tls is None:
                channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.secure_channel(
                    address,
                    self.tls.channel_credentials(),
                    options=[*CHANNEL_OPTIONS, *worker_target_options(worker_id)],
                )
            self._channels[(worker_id, address)] = channel
        return worker_pb2_grpc.WorkerStub(channel)

    async def assign(
        self,
        worker_id: str,
        address: str,
        task_id: str,
        spec: TaskSpec,
        gpu_ids: Sequence[str] = (),
        attempt: int = 1,
    ) -> str:
        try:
            ack = await self._stub(worker_id, address).AssignTask(
                worker_pb2.AssignTaskRequest(
                    task_id=task_id, spec=spec_to_pb(spec), gpu_ids=list(gpu_ids), attempt=attempt
                ),
                timeout=ASSIGN_DEADLINE,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"worker at {address}") from exc
        return str(ack.message)

    async def cancel(
        self,
        worker_id: str,
        address: str,
        order: types_pb2.CancelTaskRequest,
        timeout: float = CANCEL_DEADLINE,
    ) -> str:
        try:
            ack = await self._stub(worker_id, address).CancelTask(order, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, f"worker at {address}") from exc
        return str(ack.message)

    async def describe(self, worker_id: str, address: str) -> Worker:
        try:
            info = await self._stub(worker_id, address).Describe(
                worker_pb2.DescribeRequest(), timeout=DESCRIBE_DEADLINE
            )
        except grpc.aio.AioRpcError as exc:
            if "hostname verification" in (exc.details() or "").lower():
                raise Conflict(
                    f"the peer at {address} is not worker {worker_id!r}: its certificate is "
                    "another's"
                ) from exc
            raise from_rpc_error(exc, f"worker at {address}") from exc
        return worker_from_pb(info)

    async def logs(
        self, worker_id: str, address: str, task_id: str, follow: bool
    ) -> AsyncIterator[bytes]:
        """The task's output from its worker. The worker is asked first, briefly, whether it
        answers at all: a stopped or unreachable worker is named at once, not when the
        stream's own deadline runs out."""
        try:
            await self._stub(worker_id, address).Describe(
                worker_pb2.DescribeRequest(), timeout=LOGS_CONNECT_DEADLINE
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise from_rpc_error(exc, f"worker {worker_id} at {address}") from exc
            raise Unavailable(
                f"worker {worker_id} at {address} did not answer within "
                f"{LOGS_CONNECT_DEADLINE:g}s (stopped, or unreachable from the master?): "
                f"the logs of {task_id} are on it"
            ) from exc
        call = self._stub(worker_id, address).StreamTaskLogs(
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
