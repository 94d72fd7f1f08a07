"""Typed records passed between layers. Protobuf stops at rpc/; inside, code uses these."""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from dataclasses import dataclass, field, replace

from cloudai.core.gpus import GpuDevice
from cloudai.core.hardening import PIDS_LIMIT_CEILING
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.limits import (
    ADDRESS_MAX,
    DETAIL_MAX,
    ERROR_MAX,
    GRACE_MAX,
    IMAGE_MAX,
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
    quote,
    text_problem,
    validate_task_id,
)
from cloudai.core.policy import PRIORITY_DEFAULT, Attempt, policy_problems
from cloudai.core.resources import Resources
from cloudai.core.stop import StopStage, holds_resources, stage_of

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "Cancellation",
    "StopReport",
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

DEFAULT_GRACE_SECONDS = 10.0
# The stop signals a task may name, with their numbers on Linux (where every task runs).
_SIGNAL_NUMBERS = {
    "SIGTERM": 15,
    "SIGINT": 2,
    "SIGQUIT": 3,
    "SIGHUP": 1,
    "SIGUSR1": 10,
    "SIGUSR2": 12,
    "SIGKILL": 9,
}
STOP_SIGNALS = frozenset(_SIGNAL_NUMBERS)


def _signal_problem(text: str) -> str:
    accepted = ", ".join(f"{name[3:]} ({number})" for name, number in _SIGNAL_NUMBERS.items())
    return (
        f"unknown stop signal {text[:32]!r}: use one of {accepted}, with or without SIG, "
        "in any case, or its number"
    )


def normalize_signal(text: str) -> str:
    """A stop signal as the user wrote it (`TERM`, `term`, `SIGTERM`, `15`) as its one name
    (`SIGTERM`); "" stays "" (not given). ValueError names the accepted signals."""
    name = text.strip().upper()
    if not name:
        return ""
    if name.isdigit():
        name = next((n for n, number in _SIGNAL_NUMBERS.items() if str(number) == name), name)
    elif not name.startswith("SIG"):
        name = "SIG" + name
    if name not in STOP_SIGNALS:
        raise ValueError(_signal_problem(text))
    return name


# Docker's reference grammar (distribution/reference), anchored.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
_IMAGE_RE = re.compile(rf"^{_NAME}(?::{_TAG})?(?:@{_DIGEST})?$")
_WORKER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOST_RE = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def validate_image(image: str) -> str | None:
    """None when `image` is a valid Docker image reference, else the problem."""
    if not image:
        return "image is required"
    if len(image) > IMAGE_MAX:
        return f"invalid image reference {quote(image)}: longer than {IMAGE_MAX} characters"
    if not _IMAGE_RE.fullmatch(image):
        return f"invalid image reference {quote(image)}"
    return None


def validate_worker_id(worker_id: str) -> str | None:
    if not _WORKER_ID_RE.fullmatch(worker_id or ""):
        return (
            f"invalid worker id {quote(worker_id)}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return None


def validate_address(address: str) -> str | None:
    """None when `address` is HOST:PORT with a port in 1..65535."""
    host, sep, port = (address or "").rpartition(":")
    if (
        len(address) > ADDRESS_MAX
        or not sep
        or not _HOST_RE.fullmatch(host)
        or not (port.isascii() and port.isdigit())
        or not 0 < int(port) < 65536
    ):
        return f"invalid address {quote(address)}: expected HOST:PORT"
    return None


SECRET_MASK = "***"


def new_task_id(now: float | None = None) -> str:
    """`task-<unix seconds>-<random>`: readable like the spec's, unique under concurrency."""
    seconds = int(time.time() if now is None else now)
    return f"task-{seconds}-{secrets.token_hex(4)}"


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
    stop: StopReport | None = None  # how the worker stopped it, when it had a stop order

    def problems(self) -> list[str]:
        """Reasons a worker's report cannot be stored (empty when it can)."""
        out = [p for p in (validate_task_id(self.task_id), validate_worker_id(self.worker_id)) if p]
        times = [("completed_at", self.completed_at), ("started_at", self.started_at or 0.0)]
        if self.stop is not None:
            s = self.stop
            times += [
                ("stop.received_at", s.received_at),
                *((f"stop.{k}", v or 0.0) for k, v in s.times()),
            ]
            if s.signal and s.signal not in STOP_SIGNALS:
                out.append(f"unknown stop signal {quote(s.signal)}")
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
        stop = self.stop
        if stop is not None and stop.error:
            stop = dataclasses.replace(stop, error=bounded_text(stop.error, DETAIL_MAX))
        return dataclasses.replace(
            self, logs=logs, error=bounded_text(self.error, ERROR_MAX), stop=stop
        )


@dataclass(slots=True)
class StopReport:
    """A worker's account of a stop, filled in step by step."""

    received_at: float
    signal: str
    signal_at: float | None = None
    killed_at: float | None = None  # SIGKILL after the grace ran out
    exited_at: float | None = None
    forced: bool = False  # it ended by SIGKILL
    error: str = ""  # e.g. "kill failed: ..."

    def times(self) -> list[tuple[str, float | None]]:
        return [
            ("signal_at", self.signal_at),
            ("killed_at", self.killed_at),
            ("exited_at", self.exited_at),
        ]


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
