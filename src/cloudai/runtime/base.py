"""The runtime contract. The worker speaks only these verbs; each runtime implements them.

A runtime labels what it starts with the task and worker IDs, so `list` finds it again after
the worker restarts (re-adoption)."""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from cloudai.core.limits import LOG_TAIL_BYTES
from cloudai.core.models import TaskSpec

__all__ = ["LOG_LIMIT", "Exit", "Handle", "Runtime"]

LOG_LIMIT = LOG_TAIL_BYTES  # the result keeps the last MiB of a task's output


@dataclass(frozen=True, slots=True)
class Handle:
    task_id: str
    ref: str  # container ID, or process group ID
    started_at: float
    gpu_ids: tuple[str, ...] = ()  # the devices it was started with (kept for re-adoption)


@dataclass(frozen=True, slots=True)
class Exit:
    exit_code: int | None
    oom_killed: bool = False
    error: str = ""


class Runtime(abc.ABC):
    name: str
    # The cluster this worker belongs to ("" until it knows): a runtime that labels what it
    # starts marks it, and `list` leaves another cluster's alone (two clusters on one engine
    # never adopt each other's containers, even with the same worker ID).
    cluster: Callable[[], str] = staticmethod(lambda: "")

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise Unavailable when the engine does not answer."""

    @abc.abstractmethod
    async def prepare(self, task_id: str, spec: TaskSpec) -> None:
        """Make the task startable (pull a missing image). Raise RuntimeFailure with the cause."""

    @abc.abstractmethod
    async def start(self, task_id: str, spec: TaskSpec, gpu_ids: Sequence[str] = ()) -> Handle:
        """Create and start the task with the GPUs its placement picked (by ID, never by
        count; as many as it asks for). Raise RuntimeFailure when it cannot start."""

    @abc.abstractmethod
    async def wait(self, handle: Handle) -> Exit:
        """Block until the task has exited; its exit code and whether it was OOM-killed."""

    @abc.abstractmethod
    async def is_running(self, handle: Handle) -> bool:
        """Whether the task's main process is still running."""

    @abc.abstractmethod
    async def signal(self, handle: Handle, signal: str) -> bool:
        """Send `signal` (a name such as "SIGTERM") to the task: the container's PID 1, or the
        process group. False when the task is not running; RuntimeFailure when the engine
        refuses."""

    async def stop(self, handle: Handle, signal: str, grace: float) -> str:
        """Send `signal`, wait up to `grace` seconds, then SIGKILL. Returns how it went:
        "exited" (ended within the grace), "killed" (needed SIGKILL) or "not running".

        The worker's supervisor runs these steps itself, each under its own deadline; this is
        the same sequence for callers that need no more than the outcome."""
        if signal != "SIGKILL":
            if not await self.signal(handle, signal):
                return "not running"
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if not await self.is_running(handle):
                    return "exited"
                await asyncio.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
            if not await self.is_running(handle):
                return "exited"
        if not await self.signal(handle, "SIGKILL"):
            return "exited" if signal != "SIGKILL" else "not running"
        return "killed"

    @abc.abstractmethod
    async def destroy(self, handle: Handle) -> None:
        """Remove every trace of the task (container, files). Idempotent."""

    @abc.abstractmethod
    async def list(self) -> list[Handle]:
        """Tasks of this worker that exist in the engine (running or exited, not destroyed)."""

    @abc.abstractmethod
    async def read_logs(self, handle: Handle, limit: int = LOG_LIMIT) -> str:
        """The task's output so far (stdout and stderr), the last `limit` bytes, read without
        holding more than that in memory; when more was written, a first line says how many
        bytes were dropped (core.limits.log_tail)."""

    @abc.abstractmethod
    def follow_logs(self, handle: Handle, follow: bool) -> AsyncIterator[bytes]:
        """The task's output from the start; with `follow`, on until the task ends."""

    async def usage(self, handle: Handle) -> tuple[float, float] | None:
        """What the task uses now: (CPU % of one core, memory GB); None when unknown."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime's own resources."""
