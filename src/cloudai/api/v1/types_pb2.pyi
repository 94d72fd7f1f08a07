from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Resources(_message.Message):
    __slots__ = ("cpu", "mem_gb", "storage_gb", "gpu")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEM_GB_FIELD_NUMBER: _ClassVar[int]
    STORAGE_GB_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    cpu: float
    mem_gb: float
    storage_gb: float
    gpu: int
    def __init__(self, cpu: _Optional[float] = ..., mem_gb: _Optional[float] = ..., storage_gb: _Optional[float] = ..., gpu: _Optional[int] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("image", "command", "env", "resources", "name", "worker_id", "owner", "grace_seconds", "stop_signal", "pids_limit", "secret_env", "timeout_seconds", "retries", "retry_on_timeout", "priority", "preemptible")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretEnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    PIDS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    SECRET_ENV_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_ON_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PREEMPTIBLE_FIELD_NUMBER: _ClassVar[int]
    image: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    resources: Resources
    name: str
    worker_id: str
    owner: str
    grace_seconds: float
    stop_signal: str
    pids_limit: int
    secret_env: _containers.ScalarMap[str, str]
    timeout_seconds: float
    retries: int
    retry_on_timeout: bool
    priority: int
    preemptible: bool
    def __init__(self, image: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., name: _Optional[str] = ..., worker_id: _Optional[str] = ..., owner: _Optional[str] = ..., grace_seconds: _Optional[float] = ..., stop_signal: _Optional[str] = ..., pids_limit: _Optional[int] = ..., secret_env: _Optional[_Mapping[str, str]] = ..., timeout_seconds: _Optional[float] = ..., retries: _Optional[int] = ..., retry_on_timeout: _Optional[bool] = ..., priority: _Optional[int] = ..., preemptible: _Optional[bool] = ...) -> None: ...

class TaskID(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class TaskAck(_message.Message):
    __slots__ = ("success", "message", "task_id", "status", "error_code", "already", "queued")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ALREADY_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    success: bool
    message: str
    task_id: str
    status: str
    error_code: str
    already: bool
    queued: bool
    def __init__(self, success: _Optional[bool] = ..., message: _Optional[str] = ..., task_id: _Optional[str] = ..., status: _Optional[str] = ..., error_code: _Optional[str] = ..., already: _Optional[bool] = ..., queued: _Optional[bool] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("task_id", "stop_signal", "grace_seconds", "force", "reason", "requested_by", "attempt")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    stop_signal: str
    grace_seconds: float
    force: bool
    reason: str
    requested_by: str
    attempt: int
    def __init__(self, task_id: _Optional[str] = ..., stop_signal: _Optional[str] = ..., grace_seconds: _Optional[float] = ..., force: _Optional[bool] = ..., reason: _Optional[str] = ..., requested_by: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class Cancellation(_message.Message):
    __slots__ = ("requested_by", "requested_at", "reason", "force", "grace_seconds", "stop_signal", "delivered_at", "delivery_attempts", "last_error", "signal_at", "killed_at", "exited_at", "exit_code", "forced", "removed_at", "stop_error", "state")
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_AT_FIELD_NUMBER: _ClassVar[int]
    KILLED_AT_FIELD_NUMBER: _ClassVar[int]
    EXITED_AT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_AT_FIELD_NUMBER: _ClassVar[int]
    STOP_ERROR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    requested_by: str
    requested_at: float
    reason: str
    force: bool
    grace_seconds: float
    stop_signal: str
    delivered_at: float
    delivery_attempts: int
    last_error: str
    signal_at: float
    killed_at: float
    exited_at: float
    exit_code: int
    forced: bool
    removed_at: float
    stop_error: str
    state: str
    def __init__(self, requested_by: _Optional[str] = ..., requested_at: _Optional[float] = ..., reason: _Optional[str] = ..., force: _Optional[bool] = ..., grace_seconds: _Optional[float] = ..., stop_signal: _Optional[str] = ..., delivered_at: _Optional[float] = ..., delivery_attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., signal_at: _Optional[float] = ..., killed_at: _Optional[float] = ..., exited_at: _Optional[float] = ..., exit_code: _Optional[int] = ..., forced: _Optional[bool] = ..., removed_at: _Optional[float] = ..., stop_error: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("at", "kind", "actor", "message")
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    at: float
    kind: str
    actor: str
    message: str
    def __init__(self, at: _Optional[float] = ..., kind: _Optional[str] = ..., actor: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "spec", "status", "worker_id", "exit_code", "reason", "created_at", "started_at", "completed_at", "events", "oom_killed", "result", "cancellation", "cpu_percent", "mem_used_gb", "usage_at", "gpu_ids", "attempts", "attempt", "position", "waiting_reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CANCELLATION_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEM_USED_GB_FIELD_NUMBER: _ClassVar[int]
    USAGE_AT_FIELD_NUMBER: _ClassVar[int]
    GPU_IDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    WAITING_REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    spec: TaskSpec
    status: str
    worker_id: str
    exit_code: int
    reason: str
    created_at: float
    started_at: float
    completed_at: float
    events: _containers.RepeatedCompositeFieldContainer[TaskEvent]
    oom_killed: bool
    result: TaskResult
    cancellation: Cancellation
    cpu_percent: float
    mem_used_gb: float
    usage_at: float
    gpu_ids: _containers.RepeatedScalarFieldContainer[str]
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    attempt: int
    position: int
    waiting_reason: str
    def __init__(self, task_id: _Optional[str] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., status: _Optional[str] = ..., worker_id: _Optional[str] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., created_at: _Optional[float] = ..., started_at: _Optional[float] = ..., completed_at: _Optional[float] = ..., events: _Optional[_Iterable[_Union[TaskEvent, _Mapping]]] = ..., oom_killed: _Optional[bool] = ..., result: _Optional[_Union[TaskResult, _Mapping]] = ..., cancellation: _Optional[_Union[Cancellation, _Mapping]] = ..., cpu_percent: _Optional[float] = ..., mem_used_gb: _Optional[float] = ..., usage_at: _Optional[float] = ..., gpu_ids: _Optional[_Iterable[str]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., attempt: _Optional[int] = ..., position: _Optional[int] = ..., waiting_reason: _Optional[str] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("number", "worker_id", "status", "exit_code", "reason", "started_at", "ended_at", "oom_killed", "gpu_ids")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    GPU_IDS_FIELD_NUMBER: _ClassVar[int]
    number: int
    worker_id: str
    status: str
    exit_code: int
    reason: str
    started_at: float
    ended_at: float
    oom_killed: bool
    gpu_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, number: _Optional[int] = ..., worker_id: _Optional[str] = ..., status: _Optional[str] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., oom_killed: _Optional[bool] = ..., gpu_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task_id", "worker_id", "status", "logs", "exit_code", "completed_at", "error", "oom_killed", "started_at", "cluster_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    worker_id: str
    status: str
    logs: str
    exit_code: int
    completed_at: float
    error: str
    oom_killed: bool
    started_at: float
    cluster_id: str
    def __init__(self, task_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., status: _Optional[str] = ..., logs: _Optional[str] = ..., exit_code: _Optional[int] = ..., completed_at: _Optional[float] = ..., error: _Optional[str] = ..., oom_killed: _Optional[bool] = ..., started_at: _Optional[float] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("task_id", "follow")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    follow: bool
    def __init__(self, task_id: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "address", "capacity", "allocated", "available", "state", "last_heartbeat", "running_tasks", "registered_at", "runtime", "drained", "cpu_percent", "mem_used_gb", "disk_free_gb", "releasing_tasks", "releasing", "gpus", "stop_failures")
    class StopFailuresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEM_USED_GB_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_GB_FIELD_NUMBER: _ClassVar[int]
    RELEASING_TASKS_FIELD_NUMBER: _ClassVar[int]
    RELEASING_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    STOP_FAILURES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    capacity: Resources
    allocated: Resources
    available: Resources
    state: str
    last_heartbeat: float
    running_tasks: _containers.RepeatedScalarFieldContainer[str]
    registered_at: float
    runtime: str
    drained: bool
    cpu_percent: float
    mem_used_gb: float
    disk_free_gb: float
    releasing_tasks: _containers.RepeatedScalarFieldContainer[str]
    releasing: Resources
    gpus: _containers.RepeatedCompositeFieldContainer[GpuDevice]
    stop_failures: _containers.ScalarMap[str, str]
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., capacity: _Optional[_Union[Resources, _Mapping]] = ..., allocated: _Optional[_Union[Resources, _Mapping]] = ..., available: _Optional[_Union[Resources, _Mapping]] = ..., state: _Optional[str] = ..., last_heartbeat: _Optional[float] = ..., running_tasks: _Optional[_Iterable[str]] = ..., registered_at: _Optional[float] = ..., runtime: _Optional[str] = ..., drained: _Optional[bool] = ..., cpu_percent: _Optional[float] = ..., mem_used_gb: _Optional[float] = ..., disk_free_gb: _Optional[float] = ..., releasing_tasks: _Optional[_Iterable[str]] = ..., releasing: _Optional[_Union[Resources, _Mapping]] = ..., gpus: _Optional[_Iterable[_Union[GpuDevice, _Mapping]]] = ..., stop_failures: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GpuDevice(_message.Message):
    __slots__ = ("id", "name", "memory_total_mb", "memory_used_mb", "utilization_percent", "busy", "task_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MB_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    memory_total_mb: float
    memory_used_mb: float
    utilization_percent: float
    busy: bool
    task_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., memory_total_mb: _Optional[float] = ..., memory_used_mb: _Optional[float] = ..., utilization_percent: _Optional[float] = ..., busy: _Optional[bool] = ..., task_id: _Optional[str] = ...) -> None: ...
