"""Runs each task through the runtime, from start to removal to reported result, and stops it
on order.

When a task's process has ended, its end (result, last log lines, times) is written to the
spool (worker/spool.py) first; then its container (or process group) is removed and the master
told (worker/ending.py), the removal never waiting on the master. A worker that dies before the
master has answered finds the spooled end again at start (`adopt`), removes what is left of
the container and tells it then; one that dies before the spool was written finds the
container instead, re-adopts it, and reports it then.

A stop is carried out in steps, each under its own deadline, so a hung engine call is reported
("kill failed"), never a hung worker: the stop signal, the grace period, SIGKILL if it still
runs, then removal. A start re-checks for a cancel before each of its steps, so a task
cancelled mid-start never runs on.

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

from cloudai.core.models import TaskSpec
from cloudai.core.stop import StopStage
from cloudai.errors import CloudAIError, Conflict, NotFound
from cloudai.failpoints import failpoint
from cloudai.logsetup import box
from cloudai.metrics import WorkerMetrics
from cloudai.runtime.base import STEP_DEADLINE, Exit, Handle, Runtime
from cloudai.worker.ending import Ends, StopRecord, build_result
from cloudai.worker.link import MasterLink
from cloudai.worker.orders import CancelOrder
from cloudai.worker.spool import Spool, Spooled

__all__ = ["STEP_DEADLINE", "CancelOrder", "Supervisor"]

log = logging.getLogger("cloudai.worker")
TOMBSTONES = 10_000  # cancelled task IDs remembered, so a late assignment is refused
EVERY_RUN = 2**31  # a tombstone for every run of a task (a stop order that names none)


@dataclass
class _Entry:
    task_id: str
    spec: TaskSpec | None  # None for a task re-adopted after a restart
    handle: Handle | None = None
    cancel: CancelOrder | None = None
    stop: StopRecord | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task[None] | None = None
    stopper: asyncio.Task[None] | None = None
    gpu_ids: tuple[str, ...] = ()  # its devices, held until its process has exited
    exited_at: float | None = None  # when the runtime saw its process end
    attempt: int = 0  # which run of the task (a retry reuses its ID); 0: not told


class Supervisor:
    def __init__(
        self,
        runtime: Runtime,
        link: MasterLink,
        worker_id: str,
        metrics: WorkerMetrics | None = None,
        step_deadline: float = STEP_DEADLINE,
        spool: Spool | None = None,
    ) -> None:
        self.step_deadline = step_deadline  # `cloudai worker --engine-deadline`
        self.metrics = metrics or WorkerMetrics()
        self.runtime = runtime
        self.link = link
        self.spool = spool or Spool(None)  # None: in memory only (tests of this class)
        self.ends = Ends(runtime, link, self.metrics, step_deadline)
        self.worker_id = worker_id
        self._tasks: dict[str, _Entry] = {}
        # task_id -> the last run stopped here: that run never starts, a later one (a retry
        # the master decided after the stop) may.
        self._tombstones: OrderedDict[str, int] = OrderedDict()
        self._confirming: set[str] = set()  # tasks not here whose removal is being confirmed
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
        """Take back the tasks this worker's runtime still holds (after a restart), and tell
        the master the spooled ends it has not answered for (their containers, if still
        there, are removed first). Returns how many tasks it took back or replays."""
        spooled: dict[str, list[Spooled]] = {}
        for rec in await asyncio.to_thread(self.spool.load):
            spooled.setdefault(rec.task_id, []).append(rec)
        handles = await self.runtime.list()
        held = {h.task_id: h for h in handles}
        for task_id, recs in spooled.items():
            if task_id in self._tasks:
                continue
            entry = _Entry(task_id, None, attempt=recs[-1].attempt)
            if any(r.stop for r in recs):
                entry.cancel = CancelOrder()  # its stop orders are this replay's to answer
            entry.started.set()
            entry.exited.set()
            self._tasks[task_id] = entry
            entry.runner = asyncio.create_task(
                self._replay(entry, recs, held.pop(task_id, None)), name=f"replay-{task_id}"
            )
            log.info("[Task %s] its end is spooled: telling the master again", task_id)
        adopted = 0
        for handle in held.values():
            if handle.task_id in self._tasks:
                continue
            adopted += 1
            entry = _Entry(handle.task_id, None, handle, gpu_ids=handle.gpu_ids)
            entry.started.set()
            self._tasks[handle.task_id] = entry
            entry.runner = asyncio.create_task(
                self._finish(entry, handle), name=f"task-{handle.task_id}"
            )
            log.info("[Task %s] re-adopted (%s)", handle.task_id, handle.ref[:12])
        return adopted + len(spooled)

    async def _replay(self, entry: _Entry, recs: list[Spooled], handle: Handle | None) -> None:
        for rec in recs:
            mine = handle if handle is not None and handle.ref == rec.ref else None
            await self._deliver(entry, rec, mine)
        if handle is not None and all(handle.ref != r.ref for r in recs):
            await self.ends.remove(handle)  # not a run it knows of (cannot be: see `assign`)
        self._tasks.pop(entry.task_id, None)

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
        entry.runner = asyncio.create_task(self._run(entry, spec), name=f"task-{task_id}")
        return f"task {task_id} accepted by {self.worker_id}"

    async def _run(self, entry: _Entry, spec: TaskSpec) -> None:
        try:
            handle = await self._start(entry, spec)
        except CloudAIError as exc:
            log.warning("[Task %s] ✗ could not start: %s", entry.task_id, exc)
            handle, error = None, str(exc)
        except Exception as exc:  # a task's runner must end in a report, whatever broke
            log.exception("[Task %s] ✗ unexpected error while starting", entry.task_id)
            handle, error = None, f"worker error while starting: {type(exc).__name__}: {exc}"
        else:
            error = ""
        if handle is None:  # cancelled before it started, or it could not start
            entry.started.set()
            await self._report_and_forget(entry, Exit(None, error=error), time.time())
            return
        if entry.cancel is not None and entry.stopper is None:  # cancelled while starting
            entry.stopper = asyncio.create_task(self._stop(entry), name=f"stop-{entry.task_id}")
        await self._finish(entry, handle)

    async def _start(self, entry: _Entry, spec: TaskSpec) -> Handle | None:
        """Pull, then create and start, re-checking for a cancel before each step; None when
        a cancel came first."""
        for step in ("pull", "create+start"):
            if entry.cancel is not None:
                log.info("[Task %s] cancelled before %s: not starting", entry.task_id, step)
                return None
            if step == "pull":
                await self.runtime.prepare(entry.task_id, spec)
        handle = entry.handle = await self.runtime.start(entry.task_id, spec, entry.gpu_ids)
        entry.started.set()
        self.metrics.tasks_started.inc()
        log.info("[Task %s] started (%s)", entry.task_id, handle.ref[:12])
        return handle

    async def _finish(self, entry: _Entry, handle: Handle) -> None:
        try:
            exit_, logs = await self.runtime.wait_and_read(handle)
        except Exception as exc:  # a task's runner must end in a report, whatever broke
            log.exception("[Task %s] ✗ cannot follow its container", entry.task_id)
            exit_, logs = Exit(None, error=f"worker cannot follow the container: {exc}"), ""
        exited_at = entry.exited_at = time.time()
        entry.exited.set()
        if entry.stopper is not None:  # let the stop record how it ended
            try:
                async with asyncio.timeout(self.step_deadline):
                    await asyncio.shield(entry.stopper)
            except TimeoutError:
                log.warning("[Task %s] ⚠ stop still busy after the exit", entry.task_id)
        if entry.stop is not None:
            entry.stop.exited_at = exited_at
        await self._report_and_forget(entry, exit_, handle.started_at, logs)

    async def _report_and_forget(
        self, entry: _Entry, exit_: Exit, started_at: float, logs: str = ""
    ) -> None:
        """The run's end: spooled (durable), then its container removed and the master told;
        forgotten once the master has answered."""
        entry.exited.set()  # its devices are let go (it never started, or it has exited)
        handle = entry.handle
        result = build_result(
            entry.task_id,
            self.worker_id,
            exit_,
            logs,
            cancelled=entry.cancel is not None,
            started_at=started_at if handle else None,
        )
        rec = Spooled(
            result,
            entry.attempt,
            stop=entry.cancel is not None,
            exited_at=entry.exited_at if handle else None,
            ref=handle.ref if handle else "",
        )
        try:
            await self.spool.write(rec)
            durable = True
        except OSError as exc:  # e.g. a full disk: the master hears first, as before the spool
            log.error(
                "[Task %s] ✗ cannot spool its end: %s; removing after the report", rec.task_id, exc
            )
            durable = False
        failpoint("worker.after_spool")  # a test hook: spooled, not yet removed nor reported
        log.info(
            "[Task %s] ended %s (exit %s)%s",
            entry.task_id,
            result.status.value,
            exit_.exit_code,
            f": {exit_.error}" if exit_.error else "",
        )
        self.metrics.tasks_ended.labels(result.status.value).inc()
        if entry.stop is not None:
            self.ends.count_stop(entry.stop)
        await self._deliver(entry, rec, handle, durable)
        self._tasks.pop(entry.task_id, None)

    async def _deliver(
        self, entry: _Entry, rec: Spooled, handle: Handle | None, durable: bool = True
    ) -> None:
        """Remove the container and tell the master (a stop: after the removal, else alongside
        it), then drop the spool entry; not `durable` (unspooled): the master hears first."""
        if durable:
            removal = self.ends.removal(rec, handle)
            if removal is not None and rec.stop:
                await asyncio.wait({removal})
        else:
            await self.ends.tell_end(rec)
            removal = self.ends.removal(rec, handle)
        if handle is not None and entry.gpu_ids and self.on_gpus_released is not None:
            try:
                async with asyncio.timeout(self.step_deadline):
                    await self.on_gpus_released(entry.gpu_ids)
            except (CloudAIError, TimeoutError) as exc:
                log.warning("[Task %s] ⚠ GPU check after the exit: %s", entry.task_id, exc)
        await self.ends.tell(rec, removal, lambda: entry.cancel is not None, told=not durable)
        if durable:
            await self.spool.delete(rec)

    def _tombstone(self, task_id: str, attempt: int) -> None:
        self._tombstones[task_id] = max(attempt, self._tombstones.get(task_id, -1))
        self._tombstones.move_to_end(task_id)
        while len(self._tombstones) > TOMBSTONES:
            self._tombstones.popitem(last=False)

    def cancel(self, task_id: str, order: CancelOrder) -> str:
        """Record the order and carry it out in the background; answers at once. For a task
        this worker does not hold, the master hears at once that there is nothing to stop
        (and the task never starts here: the order is remembered); NotFound says so."""
        entry = self._tasks.get(task_id)
        if entry is not None and 0 < order.attempt < entry.attempt:
            # An order for an earlier run (a reply built before the master requeued it):
            # that run is gone, and the one here is a later one the master wants run.
            return f"task {task_id}: run {order.attempt} is not here (run {entry.attempt} is)"
        self._tombstone(task_id, order.attempt or (entry.attempt if entry else EVERY_RUN))
        if entry is None:
            self._confirm_gone(task_id)
            raise NotFound(f"task {task_id} is not on worker {self.worker_id}")
        if entry.cancel is not None:
            return f"task {task_id} is already stopping on {self.worker_id}"
        entry.cancel = order
        if entry.handle is not None and entry.stopper is None:  # first: the signal goes out
            entry.stopper = asyncio.create_task(self._stop(entry), name=f"stop-{task_id}")
        self.link.update(
            task_id,
            StopStage.DELIVERED,
            f"order from {order.requested_by or '-'}",
            at=order.received_at,
        )
        log.info(
            box(
                "TASK CANCELLATION REQUEST",
                [
                    f"Task ID: {task_id}",
                    f"Requested by: {order.requested_by or '-'}",
                    f"Reason: {order.reason or '-'}",
                    "Mode: force (SIGKILL now)"
                    if order.force
                    else f"Mode: {order.signal_for(entry.spec)}, "
                    f"grace {order.grace_for(entry.spec):g}s",
                ],
            )
        )
        return f"task {task_id} stopping on {self.worker_id}"

    def _confirm_gone(self, task_id: str) -> None:
        """Tell the master a task it asks to stop is not here: it never started here, or it
        ended and was removed. Once per order in flight."""
        if task_id in self._confirming:
            return
        self._confirming.add(task_id)
        sent = self.link.update(task_id, StopStage.REMOVED, f"not on {self.worker_id}")
        sent.add_done_callback(lambda _t: self._confirming.discard(task_id))

    async def _stop(self, entry: _Entry) -> None:
        """The runtime's stop sequence (signal, grace, SIGKILL, each step under its own
        deadline), each step told to the master as it happens."""
        handle, order, tid = entry.handle, entry.cancel, entry.task_id
        if handle is None or order is None:
            return  # not started, or no order: nothing to stop (yet)
        signal, grace = order.signal_for(entry.spec), order.grace_for(entry.spec)
        stop = entry.stop = StopRecord(received_at=order.received_at, signal=signal)
        log.info("[Task %s] Cancelling task (container: %s)...", tid, handle.ref[:12])

        def on_step(step: str, at: float) -> None:
            if step == "killed":
                stop.killed_at, stop.forced = at, True
                self.link.update(tid, StopStage.KILLED, f"SIGKILL after {grace:g}s grace", at=at)
                log.info("[Task %s] still running after %gs grace: SIGKILL sent", tid, grace)
                return
            stop.signal_at, stop.forced = at, signal == "SIGKILL"
            self.link.update(tid, StopStage.SIGNALLED, signal, at=at)
            log.info("[Task %s] ✓ %s sent", tid, signal)

        try:
            how = await self.runtime.stop(
                handle,
                signal,
                grace,
                exited=entry.exited.wait,
                on_step=on_step,
                step_deadline=self.step_deadline,
            )
        except CloudAIError as exc:
            stop.error = str(exc)
            log.error("[Task %s] ✗ %s", tid, stop.error)
            self.link.update(tid, StopStage.STOP_FAILED, stop.error)
            return
        if how == "not running":
            log.info("[Task %s] ✓ already stopped (no %s needed)", tid, signal)
        else:
            log.info("[Task %s] ✓ %s", tid, "killed" if how == "killed" else "exited in its grace")

    def stop_orders(self, orders: list[tuple[str, CancelOrder]]) -> None:
        """Orders from the master's heartbeat or registration reply: stop these tasks.
        Orders for tasks this worker does not run are remembered, so they never start."""
        for task_id, order in orders:
            entry = self._tasks.get(task_id)
            if entry is None:
                self._tombstone(task_id, order.attempt or EVERY_RUN)
                self._confirm_gone(task_id)
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
