"""The end of a task run on this worker: its result built, its container removed, and the
master told, from the spool (worker/spool.py).

The removal never waits on the master: a run's end is spooled first, then its container is
removed and the master told. A stop's updates (`exited` with the result, then `removed`) leave
after the removal; the report of a run that ended by itself leaves alongside it (the master
frees its slot on the report, so a removal in front of it would only idle the slot)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskResult
from cloudai.core.stop import StopStage
from cloudai.errors import CloudAIError
from cloudai.failpoints import failpoint
from cloudai.metrics import WorkerMetrics
from cloudai.runtime.base import Exit, Handle, Runtime
from cloudai.worker.link import MasterLink
from cloudai.worker.spool import Spooled

__all__ = ["Ends", "Removal", "StopRecord", "build_result"]

log = logging.getLogger("cloudai.worker")
Removal = asyncio.Task[tuple[float, str]]  # when the container was gone, and why not ("")


@dataclass(slots=True)
class StopRecord:
    """How this worker stopped a task (for its metrics; the master hears each stage as a
    stop update)."""

    received_at: float
    signal: str
    signal_at: float | None = None
    killed_at: float | None = None  # SIGKILL after the grace ran out
    exited_at: float | None = None
    forced: bool = False  # it ended by SIGKILL
    error: str = ""  # e.g. "kill failed: ..."


def build_result(
    task_id: str,
    worker_id: str,
    exit_: Exit,
    logs: str,
    *,
    cancelled: bool,
    started_at: float | None,
) -> TaskResult:
    if cancelled:
        status = TaskStatus.CANCELLED
    elif exit_.exit_code == 0 and not exit_.error:
        status = TaskStatus.COMPLETED
    else:
        status = TaskStatus.FAILED
    return TaskResult(
        task_id=task_id,
        worker_id=worker_id,
        status=status,
        logs=logs,
        exit_code=exit_.exit_code,
        completed_at=time.time(),
        error=exit_.error,
        oom_killed=exit_.oom_killed,
        started_at=started_at,
    )


class Ends:
    """The engine and master steps of a run's end (the supervisor decides their order)."""

    def __init__(
        self, runtime: Runtime, link: MasterLink, metrics: WorkerMetrics, step_deadline: float
    ) -> None:
        self.runtime = runtime
        self.link = link
        self.metrics = metrics
        self.step_deadline = step_deadline

    def removal(self, rec: Spooled, handle: Handle | None) -> Removal | None:
        """Start removing the run's container: `handle`'s; none when it never started; one
        already gone when it did start but is not in the engine any more (a spool replayed
        after a crash that came after the removal)."""
        if handle is not None:
            return asyncio.create_task(self.remove(handle), name=f"remove-{rec.task_id}")
        if rec.ref:
            return asyncio.create_task(_gone(), name=f"remove-{rec.task_id}")
        return None

    async def remove(self, handle: Handle) -> tuple[float, str]:
        """Remove the container under the step deadline: (when, "") or (when, why not)."""
        try:
            async with asyncio.timeout(self.step_deadline):
                await self.runtime.destroy(handle)
        except (CloudAIError, TimeoutError) as exc:
            silent = f"the engine did not answer within {self.step_deadline:g}s"
            error = f"remove failed: {str(exc) or silent}"
            log.warning("[Task %s] ✗ %s", handle.task_id, error)
            return time.time(), error
        at = time.time()
        log.info("[Task %s] ✓ container removed", handle.task_id)
        failpoint("worker.after_remove")  # a test hook: the run is spooled, not yet reported
        return at, ""

    async def tell(
        self,
        rec: Spooled,
        removal: Removal | None,
        cancelled: Callable[[], bool],
        *,
        told: bool = False,
    ) -> None:
        """Tell the master how the run ended (`tell_end`, unless `told` already); then, for a
        stop (or a cancel that came while the run was ending), the removal's outcome. Returns
        once the master has answered every one (or refused it: a retry would be refused too)."""
        tid = rec.task_id
        last = None if told else self.tell_end(rec)
        if removal is not None:
            removed_at, error = await removal
            if cancelled():
                if error:
                    last = self.link.update(tid, StopStage.STOP_FAILED, error)
                else:
                    last = self.link.update(tid, StopStage.REMOVED, at=removed_at)
        if last is not None:
            await last  # a stop's updates go in order: the last answered, all are
        if rec.stop:
            log.info("[Task %s] ✓ cancellation reported to master", tid)

    def tell_end(self, rec: Spooled) -> Awaitable[None]:
        """The run's end to the master: a stop's `exited` update with the result (or, never
        started, its `removed`), else the result's report. Await it for the answer."""
        if not rec.stop:
            return asyncio.ensure_future(self.link.report(rec.result))
        stage = StopStage.EXITED if rec.ref else StopStage.REMOVED
        detail = "" if rec.ref else "never started"
        return self.link.update(rec.task_id, stage, detail, rec.result, at=rec.exited_at)

    def count_stop(self, stop: StopRecord) -> None:
        if stop.error:
            how = "kill_failed"
        elif stop.signal_at is None and stop.killed_at is None:
            how = "already_stopped"
        else:
            how = "forced" if stop.forced else "graceful"
        self.metrics.stops.labels(how).inc()
        if stop.exited_at is not None:
            self.metrics.stop_seconds.observe(max(stop.exited_at - stop.received_at, 0.0))


async def _gone() -> tuple[float, str]:
    return time.time(), ""
