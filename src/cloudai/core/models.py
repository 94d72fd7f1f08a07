"""Typed records passed between layers. Protobuf stops at rpc/; inside, code uses these."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, replace

from cloudai.core.gpus import GpuDevice
from cloudai.core.hardening import PIDS_LIMIT_CEILING
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.limits import (
    ERROR_MAX,
    GRACE_MAX,
    LIST_FIELD_MAX,
    LOG_TAIL_BYTES,
    NAME_MAX,
    OWNER_MAX,
    TIME_MAX,
    bounded_text,
    command_problems,
    env_problems,
    log_tail,
    number_problem,
    text_problem,
    validate_task_id,
)
from cloudai.core.names import (
    DEFAULT_GRACE_SECONDS,
    STOP_SIGNALS,
    _signal_problem,
    new_task_id,
    normalize_signal,
    validate_address,
    validate_image,
    validate_worker_id,
)
from cloudai.core.policy import PRIORITY_DEFAULT, Attempt, policy_problems
from cloudai.core.resources import Resources
from cloudai.core.stop import StopStage, holds_resources, stage_of

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "Cancellation",
    "STOP_SIGNALS",
    "Task",
    "TaskEvent",
    "TaskResult",
    "TaskSpec",
    "Worker",
    "WorkerState",
    "new_task_id",
    "normalize_signal",
    "validate_address",
    "validate_image",
    "validate_task_id",
    "validate_worker_id",
]

_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


SECRET_MASK = "***"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    image: str
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=lambda: Resources(cpu=1.0, mem_gb=0.5))
    name: str = ""
    worker_id: str = ""
    owner: str = ""
    grace_seconds: float | None = None  # None: not given, DEFAULT_GRACE_SECONDS
    stop_signal: str = ""  # a name of STOP_SIGNALS (normalize_signal); empty: SIGTERM
    pids_limit: int = 0  # 0: the worker's default (core/hardening.py)
    secret_env: dict[str, str] = field(default_factory=dict)  # shown only as "***"
    timeout_seconds: float | None = None  # None: the master's --max-task-time (or none)
    retries: int = 0  # runs again after a failure, up to this many times (core/policy.py)
    retry_on_timeout: bool = False
    priority: int = PRIORITY_DEFAULT
    preemptible: bool = False

    def problems(self) -> list[str]:
        """Every reason this spec cannot be accepted (empty when valid)."""
        out = []
        if (err := validate_image(self.image)) is not None:
            out.append(err)
        out.extend(self.resources.validate_request())
        out.extend(command_problems(self.command))
        # Names only: a secret's value is never quoted.
        out.extend(env_problems({**self.env, **self.secret_env}, _ENV_KEY_RE))
        if self.worker_id and (err := validate_worker_id(self.worker_id)) is not None:
            out.append(err)
        if (
            self.grace_seconds is not None
            and number_problem("grace", self.grace_seconds, 0.0, GRACE_MAX) is not None
        ):
            out.append(
                f"grace must be between 0 and {GRACE_MAX:g} seconds, got {self.grace_seconds:g}"
            )
        if self.stop_signal and self.stop_signal not in STOP_SIGNALS:
            out.append(_signal_problem(self.stop_signal))
        if not 0 <= self.pids_limit <= PIDS_LIMIT_CEILING:
            out.append(
                f"pids limit must be between 1 and {PIDS_LIMIT_CEILING}, got {self.pids_limit}"
            )
        out.extend(policy_problems(self.timeout_seconds, self.retries, self.priority))
        for name, value, limit in (("name", self.name, NAME_MAX), ("owner", self.owner, OWNER_MAX)):
            if (err := text_problem(name, value, limit)) is not None:
                out.append(err)
        return out

    def summary(self) -> TaskSpec:
        """This spec as a task list carries it: the command and the environment cut to their
        first LIST_FIELD_MAX characters each (marked `…`), so a list stays small whatever the
        tasks hold. A task's own view has them whole."""
        command: list[str] = []
        room = LIST_FIELD_MAX
        for arg in self.command:
            if len(arg) > room:
                command.append(arg[:room] + "…")
                break
            command.append(arg)
            room -= len(arg)
        env: dict[str, str] = {}
        room = LIST_FIELD_MAX
        for key, value in self.env.items():
            if len(key) + len(value) > room:
                env["…"] = f"{len(self.env) - len(env)} more"
                break
            env[key] = value
            room -= len(key) + len(value)
        if tuple(command) == self.command and env == self.env:
            return self
        return dataclasses.replace(self, command=tuple(command), env=env)

    @property
    def grace(self) -> float:
        """The grace period: as given (0 included), else the default."""
        return DEFAULT_GRACE_SECONDS if self.grace_seconds is None else self.grace_seconds

    @property
    def container_env(self) -> dict[str, str]:
        """What the task's process sees: its environment with its secrets."""
        return {**self.env, **self.secret_env}

    def masked(self) -> TaskSpec:
        """This spec as anyone may see it: each secret's value replaced by "***"."""
        if not self.secret_env:
            return self
        return replace(self, secret_env=dict.fromkeys(self.secret_env, SECRET_MASK))

    @property
    def signal(self) -> str:
        return self.stop_signal or "SIGTERM"


@dataclass(frozen=True, slots=True)
class TaskEvent:
    at: float
    kind: str
    actor: str
    message: str


@dataclass(frozen=True, slots=True)
class Task:
    task_id: str
    spec: TaskSpec
    status: TaskStatus
    worker_id: str | None = None
    exit_code: int | None = None
    reason: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    oom_killed: bool = False
    events: tuple[TaskEvent, ...] = ()
    result: TaskResult | None = None  # the stored result, in a task's detail view
    cancellation: Cancellation | None = None  # in a task's detail view, when cancelled
    cpu_percent: float | None = None  # usage from the worker's last heartbeat
    mem_used_gb: float | None = None
    usage_at: float | None = None
    gpu_ids: tuple[str, ...] = ()  # the devices its placement gave it
    attempt: int = 1  # which run this is (a retry reuses the task ID)
    attempts: tuple[Attempt, ...] = ()  # its earlier runs, in a task's detail view
    position: int = 0  # pending, in a queue listing: its place (1: next); 0: not known
    waiting_reason: str = ""  # pending, in a queue listing: why it is not placed yet


@dataclass(frozen=True, slots=True)
class TaskResult:
    task_id: str
    worker_id: str
    status: TaskStatus
    logs: str = ""
    exit_code: int | None = None
    completed_at: float = 0.0
    error: str = ""
    oom_killed: bool = False
    started_at: float | None = None

    def problems(self) -> list[str]:
        """Reasons a worker's report cannot be stored (empty when it can)."""
        out = [p for p in (validate_task_id(self.task_id), validate_worker_id(self.worker_id)) if p]
        times = [("completed_at", self.completed_at), ("started_at", self.started_at or 0.0)]
        for name, at in times:
            if (err := number_problem(name, at, 0.0, TIME_MAX)) is not None:
                out.append(err)
        return out

    def bounded(self) -> TaskResult:
        """This report as the master stores it: the logs' tail (LOG_TAIL_BYTES, with a note
        of what was dropped), the error text cut, no NUL characters."""
        logs = self.logs
        if len(logs) > LOG_TAIL_BYTES // 4 or "\x00" in logs:  # else it is short enough
            logs = log_tail(logs.encode("utf-8", "replace"))
        return dataclasses.replace(self, logs=logs, error=bounded_text(self.error, ERROR_MAX))


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What was decided (who, when, why, how) and how far the stop has got."""

    task_id: str
    worker_id: str | None  # None: it had not been placed
    requested_by: str
    requested_at: float
    reason: str
    force: bool
    grace_seconds: float
    stop_signal: str
    delivered_at: float | None = None
    delivery_attempts: int = 0
    last_error: str = ""
    signal_at: float | None = None
    killed_at: float | None = None
    exited_at: float | None = None
    exit_code: int | None = None
    forced: bool = False
    removed_at: float | None = None
    stop_error: str = ""
    run: int = 0  # the task's run it stops (a retry reuses the task ID); 0: every run

    @property
    def stage(self) -> StopStage:
        """How far the stop has got, by the table in core/stop.py."""
        return stage_of(
            delivered_at=self.delivered_at,
            signal_at=self.signal_at,
            killed_at=self.killed_at,
            exited_at=self.exited_at,
            removed_at=self.removed_at,
            stop_error=self.stop_error,
        )

    @property
    def state(self) -> str:
        """The stage's name; `not_started` for a task cancelled before it was placed."""
        return "not_started" if self.worker_id is None else self.stage.value

    @property
    def holds_resources(self) -> bool:
        """Whether the task still holds its worker's resources: until its container exited."""
        return self.worker_id is not None and holds_resources(self.stage)

    @property
    def confirmed(self) -> bool:
        return self.state in ("not_started", "removed")

    @property
    def stop_seconds(self) -> float | None:
        """From the request to the exit (or to the removal when the exit time is unknown)."""
        end = self.exited_at or self.removed_at
        return None if end is None or self.worker_id is None else max(end - self.requested_at, 0)


class WorkerState:
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Worker:
    worker_id: str
    address: str
    capacity: Resources
    allocated: Resources = field(default_factory=Resources)
    state: str = WorkerState.OFFLINE
    last_heartbeat: float | None = None
    registered_at: float = 0.0
    runtime: str = ""
    running_tasks: tuple[str, ...] = ()
    releasing_tasks: tuple[str, ...] = ()  # cancelled, still holding: their stop is not done
    releasing: Resources = field(default_factory=Resources)
    drained: bool = False  # takes no new tasks
    cpu_percent: float | None = None  # node telemetry from its last heartbeat
    mem_used_gb: float | None = None
    disk_free_gb: float | None = None
    gpus: tuple[GpuDevice, ...] = ()  # its devices, who holds each, and their telemetry
    # (task_id, why) of its releasing tasks whose stop failed: they hold until their container goes
    stop_failures: tuple[tuple[str, str], ...] = ()

    @property
    def available(self) -> Resources:
        """What is left; GPUs only as many as are free devices (not held, not busy)."""
        room = (self.capacity - self.allocated).clamp_zero()
        if self.gpus:
            room = replace(room, gpu=min(room.gpu, sum(g.free for g in self.gpus)))
        return room


def worker_state(last_heartbeat: float | None, now: float, interval: float) -> str:
    """healthy within 3 heartbeat intervals, unhealthy within 12, offline after (or never seen)."""
    if last_heartbeat is None:
        return WorkerState.OFFLINE
    age = now - last_heartbeat
    if age <= 3 * interval:
        return WorkerState.HEALTHY
    if age <= 12 * interval:
        return WorkerState.UNHEALTHY
    return WorkerState.OFFLINE
