"""The Master gRPC service: validates at the edge, converts, calls Cluster."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from cloudai.api.v1 import master_pb2, master_pb2_grpc, types_pb2
from cloudai.core.models import validate_task_id, validate_worker_id
from cloudai.errors import InvalidArgument, check
from cloudai.master.accounts import Accounts
from cloudai.master.auth import Auth
from cloudai.master.cluster import Cluster
from cloudai.rpc.convert import (
    cancel_request_from_pb,
    gpu_from_pb,
    resources_from_pb,
    result_from_pb,
    spec_from_pb,
    stop_update_from_pb,
    task_filter_from_pb,
    task_to_pb,
    worker_to_pb,
)
from cloudai.rpc.errors import translate, translate_stream
from cloudai.store import users

__all__ = ["MasterService"]

# An explicit alias: grpc is untyped, so to mypy this is Any (a bare assignment is a variable).
Ctx: TypeAlias = grpc.aio.ServicerContext


def _finite(value: float) -> float:
    """Telemetry from a peer: a non-negative finite number, or an INVALID_ARGUMENT."""
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"invalid telemetry value {value!r}")
    return float(value)


def _require_task_id(task_id: str) -> str:
    task_id = task_id.strip()
    check(validate_task_id(task_id))
    return task_id


class MasterService(master_pb2_grpc.MasterServicer):
    """Every handler first says who may call it: `auth.worker` (the worker's certificate),
    `auth.user` (a token) or `auth.admin` (an admin's token); GetClusterInfo and JoinCluster
    are open (a join token is the credential)."""

    def __init__(self, cluster: Cluster, accounts: Accounts, info: master_pb2.ClusterInfo) -> None:
        self.cluster = cluster
        self.accounts = accounts
        self.auth: Auth = accounts.auth
        self.info = info
        self.metrics = cluster.metrics  # RPC errors are counted by the translate decorator

    @translate
    async def RegisterWorker(
        self, request: master_pb2.RegisterWorkerRequest, context: Ctx
    ) -> master_pb2.RegisterWorkerResponse:
        self.auth.worker(context, request.worker_id)
        self.cluster.admit(request.worker_id, request.cluster_id)
        orders = await self.cluster.register_worker(
            request.worker_id,
            request.address,
            resources_from_pb(request.capacity),
            request.runtime,
            list(request.running_task_ids),
            list(request.gpu_ids),
        )
        return master_pb2.RegisterWorkerResponse(
            accepted=True,
            message=f"worker {request.worker_id} registered",
            heartbeat_interval=self.cluster.config.heartbeat_interval,
            stop_orders=orders,
            cluster_id=self.cluster.cluster_id,
        )

    @translate
    async def ManualRegisterWorker(
        self, request: master_pb2.ManualRegisterWorkerRequest, context: Ctx
    ) -> types_pb2.WorkerInfo:
        await self.auth.admin(context, "register")
        worker = await self.cluster.manual_register(request.worker_id, request.address)
        return worker_to_pb(worker)

    @translate
    async def SendHeartbeat(
        self, request: master_pb2.HeartbeatRequest, context: Ctx
    ) -> master_pb2.HeartbeatResponse:
        return await self._heartbeat(request, context)

    @translate_stream
    async def Heartbeats(
        self, requests: AsyncIterator[master_pb2.HeartbeatRequest], context: Ctx
    ) -> AsyncIterator[master_pb2.HeartbeatResponse]:
        checked = None  # the worker the peer's certificate was checked for, on this stream
        async for request in requests:
            yield await self._heartbeat(request, context, checked)
            checked = request.worker_id

    async def _heartbeat(
        self, request: master_pb2.HeartbeatRequest, context: Ctx, checked: str | None = None
    ) -> master_pb2.HeartbeatResponse:
        if request.worker_id != checked:
            self.auth.worker(context, request.worker_id)
        self.cluster.admit(request.worker_id, request.cluster_id)
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
            [gpu_from_pb(g) for g in request.gpus],
        )
        return master_pb2.HeartbeatResponse(
            known=known,
            stop_task_ids=[o.task_id for o in orders],
            stop_orders=orders,
            cluster_id=self.cluster.cluster_id,
        )

    @translate
    async def ReportTaskCompletion(
        self, request: types_pb2.TaskResult, context: Ctx
    ) -> types_pb2.TaskAck:
        self.auth.worker(context, request.worker_id)
        self.cluster.admit(request.worker_id, request.cluster_id)
        _require_task_id(request.task_id)
        message = await self.cluster.report(result_from_pb(request))
        return types_pb2.TaskAck(success=True, message=message)

    @translate
    async def SubmitTask(
        self, request: master_pb2.SubmitTaskRequest, context: Ctx
    ) -> types_pb2.Task:
        caller = await self.auth.user(context)
        self.auth.limit_submit(caller)
        return task_to_pb(await self.cluster.submit(spec_from_pb(request.spec), caller))

    @translate
    async def GetTask(self, request: types_pb2.TaskID, context: Ctx) -> types_pb2.Task:
        caller = await self.auth.user(context)
        return task_to_pb(await self.cluster.get_task(_require_task_id(request.task_id), caller))

    @translate
    async def ListTasks(
        self, request: master_pb2.ListTasksRequest, context: Ctx
    ) -> master_pb2.ListTasksResponse:
        caller = await self.auth.user(context)
        found, hidden, total = await self.cluster.list_tasks(task_filter_from_pb(request), caller)
        return master_pb2.ListTasksResponse(
            tasks=[task_to_pb(t) for t in found], hidden=hidden, total=total
        )

    @translate
    async def ListWorkers(
        self, request: master_pb2.ListWorkersRequest, context: Ctx
    ) -> master_pb2.ClusterSnapshot:
        await self.auth.user(context)
        found = await self.cluster.list_workers()
        return master_pb2.ClusterSnapshot(workers=[worker_to_pb(w) for w in found])

    @translate
    async def CancelTask(self, request: types_pb2.TaskID, context: Ctx) -> types_pb2.TaskAck:
        """The spec's form: one task, default stop; NOT_FOUND / FAILED_PRECONDITION on error."""
        caller = await self.auth.user(context)
        self.auth.limit_cancel(caller, 1)
        outcome = await self.cluster.cancel_one(_require_task_id(request.task_id), caller)
        return outcome.to_pb()

    @translate
    async def CancelTasks(
        self, request: master_pb2.CancelRequest, context: Ctx
    ) -> master_pb2.CancelResponse:
        """With options, one or many: one ack per task, errors in the acks."""
        caller = await self.auth.user(context)
        if not request.task_ids:
            raise InvalidArgument("no task IDs given")
        ids = [_require_task_id(t) for t in request.task_ids]
        req = cancel_request_from_pb(request, caller.name)
        self.auth.limit_cancel(caller, len(ids))
        outcomes = await self.cluster.cancel(ids, caller, req)
        return master_pb2.CancelResponse(acks=[o.to_pb() for o in outcomes])

    @translate
    async def DrainWorker(
        self, request: master_pb2.DrainRequest, context: Ctx
    ) -> types_pb2.WorkerInfo:
        await self.auth.admin(context, "drain" if request.drain else "undrain")
        if problem := validate_worker_id(request.worker_id):
            raise InvalidArgument(problem)
        return worker_to_pb(await self.cluster.drain(request.worker_id, request.drain))

    @translate
    async def RemoveWorker(
        self, request: master_pb2.RemoveWorkerRequest, context: Ctx
    ) -> types_pb2.WorkerInfo:
        await self.auth.admin(context, "worker rm")
        if problem := validate_worker_id(request.worker_id):
            raise InvalidArgument(problem)
        return worker_to_pb(await self.cluster.remove_worker(request.worker_id))

    @translate
    async def UpdateStop(self, request: master_pb2.StopUpdate, context: Ctx) -> types_pb2.TaskAck:
        self.auth.worker(context, request.worker_id)
        self.cluster.admit(request.worker_id, request.cluster_id)
        _require_task_id(request.task_id)
        changed = await self.cluster.update_stop(stop_update_from_pb(request))
        message = "recorded" if changed else "already recorded (or the stop is past it)"
        return types_pb2.TaskAck(success=True, message=message, task_id=request.task_id)

    @translate
    async def UpdateStops(self, request: master_pb2.StopUpdates, context: Ctx) -> types_pb2.TaskAck:
        self.auth.worker(context, request.worker_id)
        self.cluster.admit(request.worker_id, request.cluster_id)
        for u in request.updates:
            _require_task_id(u.task_id)
            if u.worker_id != request.worker_id:
                raise InvalidArgument(
                    f"a stop update of worker {u.worker_id[:64]!r} in {request.worker_id!r}'s call"
                )
        changed = await self.cluster.update_stops([stop_update_from_pb(u) for u in request.updates])
        message = f"recorded {sum(changed)} of {len(changed)}"
        return types_pb2.TaskAck(success=True, message=message)

    @translate_stream
    async def StreamTaskLogs(
        self, request: types_pb2.LogsRequest, context: Ctx
    ) -> AsyncIterator[types_pb2.LogChunk]:
        caller = await self.auth.user(context)
        task_id = _require_task_id(request.task_id)
        async for data in self.cluster.stream_logs(task_id, request.follow, caller):
            yield types_pb2.LogChunk(data=data)

    # ---- security ------------------------------------------------------------------------

    @translate
    async def GetClusterInfo(
        self, request: master_pb2.ClusterInfoRequest, context: Ctx
    ) -> master_pb2.ClusterInfo:
        return self.info

    @translate
    async def JoinCluster(
        self, request: master_pb2.JoinRequest, context: Ctx
    ) -> master_pb2.JoinResponse:
        cert, ca = await self.accounts.join(request.token, request.worker_id, request.csr_pem)
        return master_pb2.JoinResponse(cert_pem=cert, ca_pem=ca)

    @translate
    async def CreateJoinToken(
        self, request: master_pb2.JoinTokenRequest, context: Ctx
    ) -> master_pb2.JoinTokenResponse:
        caller = await self.auth.admin(context, "join-token")
        if not math.isfinite(request.ttl_seconds):
            raise InvalidArgument("--ttl must be a duration")
        token, expires = await self.accounts.create_join_token(caller, request.ttl_seconds)
        return master_pb2.JoinTokenResponse(token=token, expires_at=expires)

    @translate
    async def AddUser(
        self, request: master_pb2.AddUserRequest, context: Ctx
    ) -> master_pb2.UserToken:
        caller = await self.auth.admin(context, "user add")
        token = await self.accounts.add_user(caller, request.name, request.admin)
        return master_pb2.UserToken(name=request.name, token=token, admin=request.admin)

    @translate
    async def ListUsers(
        self, request: master_pb2.ListUsersRequest, context: Ctx
    ) -> master_pb2.UserList:
        await self.auth.admin(context, "user ls")
        found = await self.accounts.list_users()
        return master_pb2.UserList(users=[_user_pb(u) for u in found])

    @translate
    async def RemoveUser(
        self, request: master_pb2.RemoveUserRequest, context: Ctx
    ) -> master_pb2.UserInfo:
        caller = await self.auth.admin(context, "user rm")
        return _user_pb(await self.accounts.remove_user(caller, request.name))

    @translate
    async def WhoAmI(self, request: master_pb2.WhoAmIRequest, context: Ctx) -> master_pb2.UserInfo:
        caller = await self.auth.user(context)
        return master_pb2.UserInfo(name=caller.name, admin=caller.admin)


def _user_pb(u: users.User) -> master_pb2.UserInfo:
    return master_pb2.UserInfo(
        name=u.name, admin=u.admin, created_at=u.created_at, created_by=u.created_by
    )
