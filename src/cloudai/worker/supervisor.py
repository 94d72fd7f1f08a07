"""Runs each task through the runtime, from start to reported result to removal, and stops it
on order.

The container (or process group) is removed only after the master acknowledged the result, so
a worker that dies in between finds it again at start (`adopt`) and reports it then.

A stop is carried out in steps, each under its own deadline, so a hung engine call is reported
("kill failed"), never a hung worker: the stop signal, the grace period, SIGKILL if it still
runs, then (after the result is acknowledged) removal. A start re-checks for a cancel before
each of its steps, so a task cancelled mid-start never runs on.

A task's GPUs are the device IDs the master picked; they are held while its process lives.
When it has exited, `on_gpus_released` (the worker's GPU check) runs before the task's end is
reported, so the master never hands a device on before the worker has looked at it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import DEFAULT_GRACE_SECONDS, StopReport, TaskResult, TaskSpec
from cloudai.errors import CloudAIError, Conflict, NotFound
from cloudai.logsetup import box
from cloudai.metrics import WorkerMetrics
from cloudai.runtime.base import Exit, Handle, Runtime
from cloudai.worker.link import MasterLink
from cloudai.worker.orders import CancelOrder

__all__ = ["CancelOrder", "Supervisor"]

log = logging.getLogger("cloudai.worker")
STEP_DEADLINE = 30.0  # default: each engine step of a stop (signal, kill, remove) has its own
TOMBSTONES = 10_000  # cancelled task IDs remembered, so a late assignment is refused
EVERY_RUN = 2**31  # a tombstone for every run of a task (a stop order that names none)


@dataclass
class _Entry:
    task_id: str
    spec: TaskSpec | None  # None for a task re-adopted after a restart
    handle: Handle | None = None
    cancel: CancelOrder | None = None
    stop: StopReport | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None
    stopper: asyncio.Task[None] | None = None
    gpu_ids: tuple[str, ...] = ()  # its devices, held until its process has exited
    attempt: int = 0  # which run of the task (a retry reuses its ID); 0: not told


class Supervisor:
    def __init__(
        self,
        runtime: Runtime,
        link: MasterLink,
        worker_id: str,
        metrics: WorkerMetrics | None = None,
        step_deadline: float = STEP_DEADLINE,
    ) -> None:
        self.step_deadline = step_deadline  # `cloudai worker --engine-deadline`
        self.metrics = metrics or WorkerMetrics()
        self.runtime = runtime
        self.link = link
        self.worker_id = worker_id
        self._tasks: dict[str, _Entry] = {}
        # task_id -> the last run stopped here: that run never starts, a later one (a retry
        # the master decided after the stop) may.
        self._tombstones: OrderedDict[str, int] = OrderedDict()
        # Checks the devices a task let go, before its end is reported (worker/gpus.py).
        self.on_gpus_released: Callable[[tuple[str, ...]], Awaitable[object]] | None = None

    def running_ids(self) -> list[str]:
        return sorted(self._tasks)

    def handles(self) -> list[Handle]:
        """The started tasks' handles (for usage sampling)."""
        return [e.handle for e in self._tasks.values() if e.handle is not None]

    def gpus_in_use(self) -> set[str]:
        """The devices of this worker's tasks whose process has not exited."""
        return {g for e in self._tasks.values() if not e.exited.is_set() for g in e.gpu_ids}

    def stopping_ids(self) -> list[str]:
        """Tasks with a stop order being carried out (the master counts it as delivered)."""
        return sorted(t for t, e in self._tasks.items() if e.cancel is not None)

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
            entry = _Entry(handle.task_id, None, handle, gpu_ids=handle.gpu_ids)
            entry.started.set()
            self._tasks[handle.task_id] = entry
            entry.runner = asyncio.create_task(self._finish(entry), name=f"task-{handle.task_id}")
            log.info("[Task %s] re-adopted (%s)", handle.task_id, handle.ref[:12])
        return len(handles)

    def assign(
        self, task_id: str, spec: TaskSpec, gpu_ids: Sequence[str] = (), attempt: int = 0
    ) -> str:
        if self._tombstones.get(task_id, -1) >= attempt:
            raise Conflict(f"task {task_id} was cancelled: not starting it")
        if (old := self._tasks.get(task_id)) is not None:
            if old.attempt >= attempt:
                return f"task {task_id} already on {self.worker_id}"
            # A retry of a task whose earlier run is still being cleaned up here: the master
            # delivers it again once the earlier run is gone.
            raise Conflict(f"task {task_id}: its run {old.attempt} is still being removed")
        entry = _Entry(task_id, spec, gpu_ids=tuple(gpu_ids), attempt=attempt)
        self._tasks[task_id] = entry
        entry.runner = asyncio.create_task(self._run(entry), name=f"task-{task_id}")
        return f"task {task_id} accepted by {self.worker_id}"

    async def _run(self, entry: _Entry) -> None:
        assert entry.spec is not None
        spec = entry.spec
        try:
            for step in ("placed", "pull", "create+start"):
                if entry.cancel is not None:
                    log.info("[Task %s] cancelled before %s: not starting", entry.task_id, step)
                    entry.started.set()
                    await self._report_and_forget(entry, Exit(None), time.time())
                    return
                if step == "pull":
                    await self.runtime.prepare(entry.task_id, spec)
                elif step == "create+start":
                    entry.handle = await self.runtime.start(entry.task_id, spec, entry.gpu_ids)
                    entry.started.set()
                    self.metrics.tasks_started.inc()
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
        if entry.cancel is not None and entry.stopper is None:  # cancelled while starting
            entry.stopper = asyncio.create_task(self._stop(entry), name=f"stop-{entry.task_id}")
        await self._finish(entry)

    async def _finish(self, entry: _Entry) -> None:
        assert entry.handle is not None
        try:
            exit_ = await self.runtime.wait(entry.handle)
        except Exception as exc:  # a task's runner must end in a report, whatever broke
            log.exception("[Task %s] ✗ cannot follow its container", entry.task_id)
            exit_ = Exit(None, error=f"worker cannot follow the container: {exc}")
        exited_at = time.time()
        entry.exited.set()
        if entry.stopper is not None:  # let the stop record how it ended
            try:
                await asyncio.wait_for(asyncio.shield(entry.stopper), self.step_deadline)
            except TimeoutError:
                log.warning("[Task %s] ⚠ stop still busy after the exit", entry.task_id)
        if entry.stop is not None:
            entry.stop.exited_at = exited_at
        await self._report_and_forget(entry, exit_, entry.handle.started_at)

    async def _report_and_forget(self, entry: _Entry, exit_: Exit, started_at: float) -> None:
        entry.exited.set()  # its devices are let go (it never started, or it has exited)
        if entry.handle is not None and entry.gpu_ids and self.on_gpus_released is not None:
            try:
                await asyncio.wait_for(self.on_gpus_released(entry.gpu_ids), self.step_deadline)
            except (CloudAIError, TimeoutError) as exc:
                log.warning("[Task %s] ⚠ GPU check after the exit: %s", entry.task_id, exc)
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
            stop=entry.stop,
        )
        log.info(
            "[Task %s] ended %s (exit %s)%s",
            entry.task_id,
            status.value,
            exit_.exit_code,
            f": {exit_.error}" if exit_.error else "",
        )
        await self.link.report(result)
        self.metrics.tasks_ended.labels(status.value).inc()
        if entry.stop is not None:
            self._count_stop(entry.stop)
        if entry.cancel is not None:
            log.info("[Task %s] ✓ cancellation reported to master", entry.task_id)
        if entry.handle is not None:
            try:
                await asyncio.wait_for(self.runtime.destroy(entry.handle), self.step_deadline)
                if entry.cancel is not None:
                    log.info("[Task %s] ✓ container removed", entry.task_id)
                    self.link.progress(entry.task_id, "removed")
            except (CloudAIError, TimeoutError) as exc:
                silent = f"the engine did not answer within {self.step_deadline:g}s"
                error = f"remove failed: {str(exc) or silent}"
                log.warning("[Task %s] ✗ %s", entry.task_id, error)
                if entry.cancel is not None:
                    self.link.progress(entry.task_id, "remove_failed", error)
        elif entry.cancel is not None:  # it never started: nothing to remove
            self.link.progress(entry.task_id, "removed", "never started")
        self._tasks.pop(entry.task_id, None)

    def _count_stop(self, stop: StopReport) -> None:
        if stop.error:
            how = "kill_failed"
        elif stop.signal_at is None and stop.killed_at is None:
            how = "already_stopped"
        else:
            how = "forced" if stop.forced else "graceful"
        self.metrics.stops.labels(how).inc()
        if stop.exited_at is not None:
            self.metrics.stop_seconds.observe(max(stop.exited_at - stop.received_at, 0.0))

    def _tombstone(self, task_id: str, attempt: int) -> None:
        self._tombstones[task_id] = max(attempt, self._tombstones.get(task_id, -1))
        self._tombstones.move_to_end(task_id)
        while len(self._tombstones) > TOMBSTONES:
            self._tombstones.popitem(last=False)

    def cancel(self, task_id: str, order: CancelOrder) -> str:
        """Record the order and carry it out in the background; answers at once."""
        entry = self._tasks.get(task_id)
        self._tombstone(task_id, order.attempt or (entry.attempt if entry else EVERY_RUN))
        entry = self.handle_of(task_id)
        if entry.cancel is not None:
            return f"task {task_id} is already stopping on {self.worker_id}"
        entry.cancel = order
        log.info(
            box(
                "TASK CANCELLATION REQUEST",
                [
                    f"Task ID: {task_id}",
                    f"Requested by: {order.requested_by or '-'}",
                    f"Reason: {order.reason or '-'}",
                    "Mode: force (SIGKILL now)"
                    if order.force
                    else f"Mode: {self._signal_of(entry)}, grace {self._grace_of(entry):g}s",
                ],
            )
        )
        if entry.handle is not None and entry.stopper is None:
            entry.stopper = asyncio.create_task(self._stop(entry), name=f"stop-{task_id}")
        return f"task {task_id} stopping on {self.worker_id}"

    def _signal_of(self, entry: _Entry) -> str:
        assert entry.cancel is not None
        if entry.cancel.force:
            return "SIGKILL"
        return entry.cancel.signal or (entry.spec.signal if entry.spec else "SIGTERM")

    def _grace_of(self, entry: _Entry) -> float:
        assert entry.cancel is not None
        if entry.cancel.grace is not None:
            return entry.cancel.grace
        return entry.spec.grace if entry.spec else DEFAULT_GRACE_SECONDS

    async def _stop(self, entry: _Entry) -> None:
        """Signal, grace, SIGKILL: each step under its own deadline."""
        assert entry.handle is not None and entry.cancel is not None
        handle, tid = entry.handle, entry.task_id
        signal, grace = self._signal_of(entry), self._grace_of(entry)
        stop = entry.stop = StopReport(received_at=entry.cancel.received_at, signal=signal)
        log.info("[Task %s] Cancelling task (container: %s)...", tid, handle.ref[:12])
        if not await self._send(entry, signal):
            return
        if signal != "SIGKILL":
            try:
                await asyncio.wait_for(entry.exited.wait(), grace)
                log.info("[Task %s] ✓ exited within the grace after %s", tid, signal)
                return
            except TimeoutError:
                log.info("[Task %s] still running after %gs grace: SIGKILL", tid, grace)
            if not await self._send(entry, "SIGKILL"):
                return
        stop.forced = True
        try:
            await asyncio.wait_for(entry.exited.wait(), self.step_deadline)
            log.info("[Task %s] ✓ killed", tid)
        except TimeoutError:
            stop.error = f"kill failed: still running {self.step_deadline:g}s after SIGKILL"
            log.error("[Task %s] ✗ %s", tid, stop.error)
            self.link.progress(tid, "kill_failed", stop.error)

    async def _send(self, entry: _Entry, signal: str) -> bool:
        """One signal under its deadline; False when there is nothing more to do."""
        assert entry.handle is not None and entry.stop is not None
        tid, stop = entry.task_id, entry.stop
        try:
            sent = await asyncio.wait_for(
                self.runtime.signal(entry.handle, signal), self.step_deadline
            )
        except (CloudAIError, TimeoutError) as exc:
            what = "kill" if signal == "SIGKILL" else signal
            silent = f"the engine did not answer within {self.step_deadline:g}s"
            stop.error = f"{what} failed: {str(exc) or silent}"
            log.error("[Task %s] ✗ %s", tid, stop.error)
            self.link.progress(tid, "kill_failed", stop.error)
            return False
        if not sent:
            log.info("[Task %s] ✓ already stopped (no %s needed)", tid, signal)
            return False
        now = time.time()
        if signal == "SIGKILL" and stop.signal != "SIGKILL":
            stop.killed_at = now
            self.link.progress(tid, "killed", f"SIGKILL after {self._grace_of(entry):g}s grace")
        else:
            stop.signal_at = now
            self.link.progress(tid, "signal_sent", signal)
        log.info("[Task %s] ✓ %s sent", tid, signal)
        return True

    def stop_orders(self, orders: list[tuple[str, CancelOrder]]) -> None:
        """Orders from the master's heartbeat or registration reply: stop these tasks.
        Orders for tasks this worker does not run are remembered, so they never start."""
        for task_id, order in orders:
            entry = self._tasks.get(task_id)
            if entry is None:
                self._tombstone(task_id, order.attempt or EVERY_RUN)
            elif entry.cancel is None:
                self.cancel(task_id, order)

    async def close(self) -> None:
        for entry in list(self._tasks.values()):
            for t in (entry.runner, entry.stopper):
                if t is not None:
                    t.cancel()
        await asyncio.gather(
            *(t for e in self._tasks.values() for t in (e.runner, e.stopper) if t),
            return_exceptions=True,
        )
