"""Runs each task through the runtime, from start to reported result to removal.

The container (or process group) is removed only after the master acknowledged the result, so
a worker that dies in between finds it again at start (`adopt`) and reports it then."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskResult, TaskSpec
from cloudai.errors import CloudAIError, NotFound
from cloudai.logsetup import box
from cloudai.runtime.base import Exit, Handle, Runtime
from cloudai.worker.link import MasterLink

__all__ = ["CancelOrder", "Supervisor"]

log = logging.getLogger("cloudai.worker")
STEP_DEADLINE = 30.0  # each engine step of a stop (signal, kill, remove) has its own


@dataclass
class CancelOrder:
    signal: str
    grace: float
    force: bool
    reason: str = ""
    at: float = field(default_factory=time.time)


@dataclass
class _Entry:
    task_id: str
    spec: TaskSpec | None
    handle: Handle | None = None
    cancel: CancelOrder | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None


class Supervisor:
    def __init__(self, runtime: Runtime, link: MasterLink, worker_id: str) -> None:
        self.runtime = runtime
        self.link = link
        self.worker_id = worker_id
        self._tasks: dict[str, _Entry] = {}

    def running_ids(self) -> list[str]:
        return sorted(self._tasks)

    def handle_of(self, task_id: str) -> _Entry:
        entry = self._tasks.get(task_id)
        if entry is None:
            raise NotFound(f"task {task_id} is not on worker {self.worker_id}")
        return entry

    async def adopt(self) -> int:
        """Take back the tasks this worker's runtime still holds (after a restart)."""
        handles = await self.runtime.list()
        for handle in handles:
            if handle.task_id in self._tasks:
                continue
            entry = _Entry(handle.task_id, None, handle)
            entry.started.set()
            self._tasks[handle.task_id] = entry
            entry.runner = asyncio.create_task(self._finish(entry), name=f"task-{handle.task_id}")
            log.info("[Task %s] re-adopted (%s)", handle.task_id, handle.ref[:12])
        return len(handles)

    def assign(self, task_id: str, spec: TaskSpec) -> str:
        if task_id in self._tasks:
            return f"task {task_id} already on {self.worker_id}"
        entry = _Entry(task_id, spec)
        self._tasks[task_id] = entry
        entry.runner = asyncio.create_task(self._run(entry), name=f"task-{task_id}")
        return f"task {task_id} accepted by {self.worker_id}"

    async def _run(self, entry: _Entry) -> None:
        assert entry.spec is not None
        spec = entry.spec
        try:
            for step in ("placed", "prepare", "start"):
                if entry.cancel is not None:
                    log.info("[Task %s] cancelled before %s: not starting", entry.task_id, step)
                    await self._report_and_forget(entry, Exit(None), time.time())
                    return
                if step == "prepare":
                    await self.runtime.prepare(entry.task_id, spec)
                elif step == "start":
                    entry.handle = await self.runtime.start(entry.task_id, spec)
                    entry.started.set()
                    log.info("[Task %s] started (%s)", entry.task_id, entry.handle.ref[:12])
        except CloudAIError as exc:
            log.warning("[Task %s] ✗ could not start: %s", entry.task_id, exc)
            entry.started.set()
            await self._report_and_forget(entry, Exit(None, error=str(exc)), time.time())
            return
        except Exception as exc:  # a task's runner must end in a report, whatever broke
            log.exception("[Task %s] ✗ unexpected error while starting", entry.task_id)
            entry.started.set()
            error = f"worker error while starting: {type(exc).__name__}: {exc}"
            await self._report_and_forget(entry, Exit(None, error=error), time.time())
            return
        if entry.cancel is not None:  # cancelled while it was starting
            asyncio.create_task(self._stop(entry), name=f"stop-{entry.task_id}")
        await self._finish(entry)

    async def _finish(self, entry: _Entry) -> None:
        assert entry.handle is not None
        exit_ = await self.runtime.wait(entry.handle)
        await self._report_and_forget(entry, exit_, entry.handle.started_at)

    async def _report_and_forget(self, entry: _Entry, exit_: Exit, started_at: float) -> None:
        logs = await self.runtime.read_logs(entry.handle) if entry.handle else ""
        if entry.cancel is not None:
            status = TaskStatus.CANCELLED
        elif exit_.exit_code == 0 and not exit_.error:
            status = TaskStatus.COMPLETED
        else:
            status = TaskStatus.FAILED
        result = TaskResult(
            task_id=entry.task_id,
            worker_id=self.worker_id,
            status=status,
            logs=logs,
            exit_code=exit_.exit_code,
            completed_at=time.time(),
            error=exit_.error,
            oom_killed=exit_.oom_killed,
            started_at=started_at if entry.handle else None,
        )
        log.info(
            "[Task %s] ended %s (exit %s)%s",
            entry.task_id,
            status.value,
            exit_.exit_code,
            f": {exit_.error}" if exit_.error else "",
        )
        await self.link.report(result)
        if entry.handle is not None:
            try:
                await asyncio.wait_for(self.runtime.destroy(entry.handle), STEP_DEADLINE)
            except (CloudAIError, TimeoutError) as exc:
                log.warning("[Task %s] ⚠ remove failed: %s", entry.task_id, exc)
        self._tasks.pop(entry.task_id, None)

    async def cancel(self, task_id: str, order: CancelOrder) -> str:
        """Record the order and carry it out in the background; answers at once."""
        entry = self.handle_of(task_id)
        log.info(
            box(
                "TASK CANCELLATION REQUEST",
                [f"Task ID: {task_id}", f"Reason: {order.reason or '-'}"],
            )
        )
        if entry.cancel is not None:
            return f"task {task_id} is already stopping"
        entry.cancel = order
        if entry.handle is not None:
            asyncio.create_task(self._stop(entry), name=f"stop-{task_id}")
        return f"task {task_id} stopping on {self.worker_id}"

    async def _stop(self, entry: _Entry) -> None:
        order = entry.cancel
        assert order is not None and entry.handle is not None
        signal = "SIGKILL" if order.force else order.signal
        try:
            how = await asyncio.wait_for(
                self.runtime.stop(entry.handle, signal, order.grace), order.grace + STEP_DEADLINE
            )
            log.info("[Task %s] ✓ stop: %s", entry.task_id, how)
        except (CloudAIError, TimeoutError) as exc:
            log.error("[Task %s] ✗ stop failed: %s", entry.task_id, exc or "engine timed out")

    async def stop_orders(self, task_ids: list[str]) -> None:
        """Orders from the master's heartbeat reply: stop these tasks."""
        for task_id in task_ids:
            entry = self._tasks.get(task_id)
            if entry is not None and entry.cancel is None:
                grace = entry.spec.grace if entry.spec else 10.0
                signal = entry.spec.signal if entry.spec else "SIGTERM"
                await self.cancel(
                    task_id, CancelOrder(signal, grace, False, "stop order from master")
                )

    async def close(self) -> None:
        for entry in list(self._tasks.values()):
            if entry.runner is not None:
                entry.runner.cancel()
        await asyncio.gather(
            *(e.runner for e in self._tasks.values() if e.runner), return_exceptions=True
        )
