from cloudai.api.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClusterInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterInfo(_message.Message):
    __slots__ = ("tls", "worker_port", "ca_fingerprint")
    TLS_FIELD_NUMBER: _ClassVar[int]
    WORKER_PORT_FIELD_NUMBER: _ClassVar[int]
    CA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    tls: bool
    worker_port: int
    ca_fingerprint: str
    def __init__(self, tls: _Optional[bool] = ..., worker_port: _Optional[int] = ..., ca_fingerprint: _Optional[str] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("token", "worker_id", "csr_pem")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    token: str
    worker_id: str
    csr_pem: bytes
    def __init__(self, token: _Optional[str] = ..., worker_id: _Optional[str] = ..., csr_pem: _Optional[bytes] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("cert_pem", "ca_pem")
    CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    cert_pem: bytes
    ca_pem: bytes
    def __init__(self, cert_pem: _Optional[bytes] = ..., ca_pem: _Optional[bytes] = ...) -> None: ...

class JoinTokenRequest(_message.Message):
    __slots__ = ("ttl_seconds",)
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ttl_seconds: float
    def __init__(self, ttl_seconds: _Optional[float] = ...) -> None: ...

class JoinTokenResponse(_message.Message):
    __slots__ = ("token", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: float
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[float] = ...) -> None: ...

class AddUserRequest(_message.Message):
    __slots__ = ("name", "admin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    admin: bool
    def __init__(self, name: _Optional[str] = ..., admin: _Optional[bool] = ...) -> None: ...

class UserToken(_message.Message):
    __slots__ = ("name", "token", "admin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    token: str
    admin: bool
    def __init__(self, name: _Optional[str] = ..., token: _Optional[str] = ..., admin: _Optional[bool] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UserInfo(_message.Message):
    __slots__ = ("name", "admin", "created_at", "created_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    admin: bool
    created_at: float
    created_by: str
    def __init__(self, name: _Optional[str] = ..., admin: _Optional[bool] = ..., created_at: _Optional[float] = ..., created_by: _Optional[str] = ...) -> None: ...

class UserList(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[UserInfo]
    def __init__(self, users: _Optional[_Iterable[_Union[UserInfo, _Mapping]]] = ...) -> None: ...

class RemoveUserRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "address", "capacity", "runtime", "running_task_ids", "gpu_ids", "cluster_id")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    GPU_IDS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    capacity: _types_pb2.Resources
    runtime: str
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    gpu_ids: _containers.RepeatedScalarFieldContainer[str]
    cluster_id: str
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., capacity: _Optional[_Union[_types_pb2.Resources, _Mapping]] = ..., runtime: _Optional[str] = ..., running_task_ids: _Optional[_Iterable[str]] = ..., gpu_ids: _Optional[_Iterable[str]] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class RegisterWorkerResponse(_message.Message):
    __slots__ = ("accepted", "message", "heartbeat_interval", "stop_orders", "cluster_id")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    STOP_ORDERS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    message: str
    heartbeat_interval: float
    stop_orders: _containers.RepeatedCompositeFieldContainer[_types_pb2.CancelTaskRequest]
    cluster_id: str
    def __init__(self, accepted: _Optional[bool] = ..., message: _Optional[str] = ..., heartbeat_interval: _Optional[float] = ..., stop_orders: _Optional[_Iterable[_Union[_types_pb2.CancelTaskRequest, _Mapping]]] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class ManualRegisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "address")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "running_task_ids", "cpu_percent", "mem_used_gb", "disk_free_gb", "stopping_task_ids", "usage", "gpus", "cluster_id")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEM_USED_GB_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_GB_FIELD_NUMBER: _ClassVar[int]
    STOPPING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    cpu_percent: float
    mem_used_gb: float
    disk_free_gb: float
    stopping_task_ids: _containers.RepeatedScalarFieldContainer[str]
    usage: _containers.RepeatedCompositeFieldContainer[TaskUsage]
    gpus: _containers.RepeatedCompositeFieldContainer[_types_pb2.GpuDevice]
    cluster_id: str
    def __init__(self, worker_id: _Optional[str] = ..., running_task_ids: _Optional[_Iterable[str]] = ..., cpu_percent: _Optional[float] = ..., mem_used_gb: _Optional[float] = ..., disk_free_gb: _Optional[float] = ..., stopping_task_ids: _Optional[_Iterable[str]] = ..., usage: _Optional[_Iterable[_Union[TaskUsage, _Mapping]]] = ..., gpus: _Optional[_Iterable[_Union[_types_pb2.GpuDevice, _Mapping]]] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class TaskUsage(_message.Message):
    __slots__ = ("task_id", "cpu_percent", "mem_used_gb")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEM_USED_GB_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    cpu_percent: float
    mem_used_gb: float
    def __init__(self, task_id: _Optional[str] = ..., cpu_percent: _Optional[float] = ..., mem_used_gb: _Optional[float] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("worker_id", "drain")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    drain: bool
    def __init__(self, worker_id: _Optional[str] = ..., drain: _Optional[bool] = ...) -> None: ...

class RemoveWorkerRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("known", "stop_task_ids", "stop_orders", "cluster_id")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    STOP_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    STOP_ORDERS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    known: bool
    stop_task_ids: _containers.RepeatedScalarFieldContainer[str]
    stop_orders: _containers.RepeatedCompositeFieldContainer[_types_pb2.CancelTaskRequest]
    cluster_id: str
    def __init__(self, known: _Optional[bool] = ..., stop_task_ids: _Optional[_Iterable[str]] = ..., stop_orders: _Optional[_Iterable[_Union[_types_pb2.CancelTaskRequest, _Mapping]]] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("task_ids", "force", "grace_seconds", "reason", "stop_signal")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    force: bool
    grace_seconds: float
    reason: str
    stop_signal: str
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ..., force: _Optional[bool] = ..., grace_seconds: _Optional[float] = ..., reason: _Optional[str] = ..., stop_signal: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[_types_pb2.TaskAck]
    def __init__(self, acks: _Optional[_Iterable[_Union[_types_pb2.TaskAck, _Mapping]]] = ...) -> None: ...

class StopUpdate(_message.Message):
    __slots__ = ("task_id", "worker_id", "stage", "at", "detail", "result", "cluster_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    worker_id: str
    stage: str
    at: float
    detail: str
    result: _types_pb2.TaskResult
    cluster_id: str
    def __init__(self, task_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., stage: _Optional[str] = ..., at: _Optional[float] = ..., detail: _Optional[str] = ..., result: _Optional[_Union[_types_pb2.TaskResult, _Mapping]] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class StopUpdates(_message.Message):
    __slots__ = ("worker_id", "updates", "cluster_id")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    updates: _containers.RepeatedCompositeFieldContainer[StopUpdate]
    cluster_id: str
    def __init__(self, worker_id: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[StopUpdate, _Mapping]]] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class SubmitTaskRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _types_pb2.TaskSpec
    def __init__(self, spec: _Optional[_Union[_types_pb2.TaskSpec, _Mapping]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("status", "worker_id", "limit", "owner", "cancelled_by", "newest")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_BY_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIELD_NUMBER: _ClassVar[int]
    status: str
    worker_id: str
    limit: int
    owner: str
    cancelled_by: str
    newest: bool
    def __init__(self, status: _Optional[str] = ..., worker_id: _Optional[str] = ..., limit: _Optional[int] = ..., owner: _Optional[str] = ..., cancelled_by: _Optional[str] = ..., newest: _Optional[bool] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "hidden", "total")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_types_pb2.Task]
    hidden: int
    total: int
    def __init__(self, tasks: _Optional[_Iterable[_Union[_types_pb2.Task, _Mapping]]] = ..., hidden: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterSnapshot(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[_types_pb2.WorkerInfo]
    def __init__(self, workers: _Optional[_Iterable[_Union[_types_pb2.WorkerInfo, _Mapping]]] = ...) -> None: ...
