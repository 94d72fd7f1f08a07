"""The runtime contract. The worker speaks only these verbs: prepare, start, wait, stop,
destroy, and list (to re-adopt after a restart), plus its logs and usage. Each runtime
implements the primitives `signal` and `is_running`; `stop` is the one stop sequence built on
them, here, for every runtime.

A runtime labels what it starts with the task and worker IDs, so `list` finds it again after
the worker restarts (re-adoption)."""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from cloudai.core.limits import LOG_TAIL_BYTES
from cloudai.core.models import TaskSpec
from cloudai.errors import CloudAIError, RuntimeFailure

__all__ = ["LOG_LIMIT", "STEP_DEADLINE", "Exit", "Handle", "Runtime"]

LOG_LIMIT = LOG_TAIL_BYTES  # the result keeps the last MiB of a task's output
STEP_DEADLINE = 30.0  # default: each engine step of a stop (signal, kill, remove) has its own


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

    async def wait_and_read(self, handle: Handle, limit: int = LOG_LIMIT) -> tuple[Exit, str]:
        """`wait`, then what the task left: its exit and its output's tail (`read_logs`, or a
        note of why it could not be read). A runtime may read both at once."""
        exit_ = await self.wait(handle)
        return exit_, await self.final_logs(handle, limit)

    async def final_logs(self, handle: Handle, limit: int = LOG_LIMIT) -> str:
        """`read_logs` for a result: a failure to read them is a note, never a lost result."""
        try:
            return await self.read_logs(handle, limit)
        except CloudAIError as exc:
            return f"(logs unavailable: {exc})"

    @abc.abstractmethod
    async def is_running(self, handle: Handle) -> bool:
        """Whether the task's main process is still running (a primitive of `stop`)."""

    @abc.abstractmethod
    async def signal(self, handle: Handle, signal: str) -> bool:
        """Send `signal` (a name such as "SIGTERM") to the task: the container's PID 1, or the
        process group. False when the task is not running; RuntimeFailure when the engine
        refuses. A primitive of `stop`: the worker calls `stop`."""

    async def stop(
        self,
        handle: Handle,
        signal: str,
        grace: float,
        *,
        exited: Callable[[], Awaitable[object]] | None = None,
        on_step: Callable[[str, float], object] = lambda step, at: None,
        step_deadline: float = STEP_DEADLINE,
    ) -> str:
        """The stop sequence, the one the worker runs: send `signal`, wait up to `grace`
        seconds for the exit, then SIGKILL and wait for the exit. Each engine call and the
        wait after SIGKILL have their own deadline (`step_deadline`), so a hung engine is a
        failure, never a hung caller.

        `exited` returns when the task's process has ended (default: poll `is_running`);
        `on_step("signalled" | "killed", at)` is told each signal sent (SIGKILL as the first
        signal is "signalled"). Returns "exited" (ended within the grace), "killed" (needed
        SIGKILL) or "not running"; raises RuntimeFailure saying which step failed."""
        wait_exit = exited or (lambda: self._poll_exit(handle))
        if not await self._send(handle, signal, step_deadline):
            return "not running"
        on_step("signalled", time.time())
        if signal != "SIGKILL":
            try:
                async with asyncio.timeout(grace):
                    await wait_exit()
                return "exited"
            except TimeoutError:
                pass
            if not await self._send(handle, "SIGKILL", step_deadline):
                return "exited"
            on_step("killed", time.time())
        try:
            async with asyncio.timeout(step_deadline):
                await wait_exit()
        except TimeoutError:
            raise RuntimeFailure(
                f"kill failed: still running {step_deadline:g}s after SIGKILL"
            ) from None
        return "killed"

    async def _send(self, handle: Handle, signal: str, deadline: float) -> bool:
        """One signal under its deadline; False when the task is not running."""
        what = "kill" if signal == "SIGKILL" else signal
        try:
            async with asyncio.timeout(deadline):
                return await self.signal(handle, signal)
        except TimeoutError:
            raise RuntimeFailure(
                f"{what} failed: the engine did not answer within {deadline:g}s"
            ) from None
        except CloudAIError as exc:
            said = str(exc)
            if said.startswith((f"{what} failed", f"{signal} failed")):  # the engine said it
                raise RuntimeFailure(said) from exc
            raise RuntimeFailure(f"{what} failed: {said}") from exc

    async def _poll_exit(self, handle: Handle) -> None:
        while await self.is_running(handle):
            await asyncio.sleep(0.05)

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
