"""The master's behaviour, independent of gRPC: every RPC handler calls one method here."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection

from cloudai.api.v1 import types_pb2
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.limits import (
    ACTOR_MAX,
    DETAIL_MAX,
    GRACE_MAX,
    OWNER_MAX,
    REASON_MAX,
    RUNTIME_MAX,
    TIME_MAX,
    bounded_text,
    ids_problems,
    number_problem,
    quote,
    text_problem,
)
from cloudai.core.models import (
    Task,
    TaskResult,
    TaskSpec,
    Worker,
    new_task_id,
    validate_address,
    validate_task_id,
    validate_worker_id,
)
from cloudai.core.resources import Resources
from cloudai.errors import AlreadyExists, CloudAIError, Conflict, InvalidArgument, NotFound, check
from cloudai.master import planner
from cloudai.master.canceller import Canceller, CancelOutcome, stop_orders_tx
from cloudai.master.dispatcher import Dispatcher
from cloudai.master.liveness import reap_lost_workers_tx, reconcile_tx
from cloudai.master.peers import WorkerPeers
from cloudai.metrics import MasterMetrics
from cloudai.store import Store, assignments, results, tasks, workers

__all__ = ["Cluster", "MasterConfig"]

log = logging.getLogger("cloudai.master")


@dataclass(frozen=True)
class MasterConfig:
    heartbeat_interval: float = 5.0
    dispatch_interval: float = 1.0
    cancel_deadline: float = 30.0  # the CancelTask RPC to a worker
    cancel_ack_wait: float = 0.05  # how long a cancel waits for the worker's ack before "queued"
    cancel_retry_interval: float = 2.0  # between deliveries of an unacknowledged stop order
    cancel_webhook: str = ""  # POST cancellation events here (JSON), when set
    worker_lost_after: float = 300.0  # a silent worker's running tasks end failed after this
    metrics_listen: str = ""  # HOST:PORT for /metrics; empty: none
    metrics_required: bool = False  # False: a busy (default) address is only a warning


def _worker_problems(capacity: Resources, runtime: str) -> list[str]:
    problems = [f"invalid capacity: {p}" for p in capacity.validate_capacity()]
    if (p := text_problem("runtime", runtime, RUNTIME_MAX)) is not None:
        problems.append(p)
    return problems


class Cluster:
    def __init__(self, store: Store, config: MasterConfig | None = None) -> None:
        self.store = store
        self.config = config or MasterConfig()
        self.peers = WorkerPeers()
        self.dispatcher = Dispatcher(store, self.peers, self.config)
        self.metrics = MasterMetrics()
        self.metrics.watch(self._metrics_snapshot)
        self.metrics_server: Any = None
        self.canceller = Canceller(store, self.peers, self.config, self.metrics)
        self.dispatcher.also.append(self.canceller.retry_undelivered)
        self.dispatcher.also.append(self._reap_lost_workers)
        self.dispatcher.on_placed = lambda w: self.metrics.placements.labels(w).inc()

    async def start(self) -> None:
        """Load what the store holds (the spec's LoadWorkersFromDB) and start the loops."""
        snapshot = await self.list_workers()
        counts = await self.store.tx(tasks.count_by_status)
        log.info(
            "loaded %d workers, %d running and %d pending tasks from the store",
            len(snapshot),
            counts.get(TaskStatus.RUNNING.value, 0),
            counts.get(TaskStatus.PENDING.value, 0),
        )
        self.dispatcher.start()

    def _metrics_snapshot(self) -> tuple[dict[str, int], list[Worker]]:
        """For a scrape (on the HTTP server's thread): tasks by status, workers."""
        by_status = self.store.tx_sync(tasks.count_by_status)
        snapshot = self.store.tx_sync(
            planner.load_workers, time.time(), self.config.heartbeat_interval
        )
        return by_status, snapshot

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.canceller.close()
        await self.peers.close()

    # ---- workers -------------------------------------------------------------------------

    async def register_worker(
        self,
        worker_id: str,
        address: str,
        capacity: Resources,
        runtime: str,
        running: list[str] | None = None,
    ) -> list[types_pb2.CancelTaskRequest]:
        """A worker announced itself; answers the stop orders queued for it."""
        check(
            validate_worker_id(worker_id),
            validate_address(address),
            _worker_problems(capacity, runtime),
            ids_problems("running_task_ids", running or []),
        )
        orders = await self.store.tx(
            self._register_tx, worker_id, address, capacity, runtime, running or [], time.time()
        )
        log.info("worker %s registered at %s with %s (%s)", worker_id, address, capacity, runtime)
        if orders:
            log.info("worker %s: %d stop order(s) with its registration", worker_id, len(orders))
        self.dispatcher.wake()
        return orders

    def _register_tx(  # type: ignore[no-untyped-def]
        self, conn, worker_id, address, capacity, runtime, running, now
    ) -> list[types_pb2.CancelTaskRequest]:
        workers.register_self(conn, worker_id, address, capacity, runtime, now)
        self._reconcile(conn, worker_id, set(running), set(), now)
        return stop_orders_tx(conn, worker_id, running, [], now)

    def _reconcile(self, conn, worker_id: str, running: set[str], stopping: set[str], now: float):  # type: ignore[no-untyped-def]
        lost = reconcile_tx(conn, worker_id, running, stopping, now, self.config.heartbeat_interval)
        for task_id in lost:
            self.metrics.lost.labels("lost_on_worker").inc()
            log.warning("✗ task %s lost on worker %s: failed", task_id, worker_id)

    async def _reap_lost_workers(self) -> None:
        ended = await self.store.tx(
            reap_lost_workers_tx, time.time(), self.config.worker_lost_after
        )
        for task_id in ended:
            self.metrics.lost.labels("worker_lost").inc()
            log.warning("✗ task %s failed: its worker was lost", task_id)

    async def manual_register(self, worker_id: str, address: str) -> Worker:
        check(validate_worker_id(worker_id), validate_address(address))
        existing = await self.store.tx(workers.get, worker_id)
        if existing is not None and existing["address"] != address and existing["source"] == "self":
            raise AlreadyExists(
                f"worker {worker_id!r} is already registered at {existing['address']}"
            )
        try:
            info: Worker | None = await self.peers.describe(address)
        except CloudAIError as exc:
            log.warning("⚠ worker %s at %s not reachable yet: %s", worker_id, address, exc)
            info = None
        if info is not None and info.worker_id and info.worker_id != worker_id:
            raise Conflict(f"the worker at {address} is {quote(info.worker_id)}, not {worker_id!r}")
        if info is not None and (problems := _worker_problems(info.capacity, info.runtime)):
            raise Conflict(f"the worker at {address} describes itself wrongly: {problems[0]}")
        await self.store.tx(
            workers.register_manual,
            worker_id,
            address,
            info.capacity if info else None,
            info.runtime if info else "",
            time.time(),
        )
        self.dispatcher.wake()
        return await self.get_worker(worker_id)

    async def heartbeat(
        self,
        worker_id: str,
        running: list[str],
        stopping: list[str],
        telemetry: dict[str, float] | None = None,
        usage: list[tuple[str, float, float]] | None = None,
    ) -> tuple[bool, list[types_pb2.CancelTaskRequest]]:
        """Record a heartbeat with its telemetry, reconcile, and answer whether the worker is
        known and its stop orders."""
        check(
            validate_worker_id(worker_id),
            ids_problems("running_task_ids", running),
            ids_problems("stopping_task_ids", stopping),
            ids_problems("usage", [u[0] for u in usage or []]),
        )
        return await self.store.tx(
            self._heartbeat_tx, worker_id, running, stopping, telemetry, usage or [], time.time()
        )

    def _heartbeat_tx(  # type: ignore[no-untyped-def]
        self, conn, worker_id, running, stopping, telemetry, usage, now
    ):
        if not workers.touch(conn, worker_id, now, telemetry):
            return False, []
        self.metrics.heartbeats.labels(worker_id).inc()
        if usage:
            tasks.record_usage(conn, usage, worker_id, now)
        self._reconcile(conn, worker_id, set(running), set(stopping), now)
        return True, stop_orders_tx(conn, worker_id, running, stopping, now)

    async def drain(self, worker_id: str, drain: bool) -> Worker:
        """Stop (or resume) placing new tasks on a worker; its running tasks go on."""
        if not await self.store.tx(workers.set_drained, worker_id, drain):
            raise NotFound(f"worker {worker_id!r} not found")
        log.info("worker %s %s", worker_id, "drained: no new tasks" if drain else "undrained")
        self.dispatcher.wake()
        return await self.get_worker(worker_id)

    async def list_workers(self) -> list[Worker]:
        return await self.store.tx(
            planner.load_workers, time.time(), self.config.heartbeat_interval
        )

    async def get_worker(self, worker_id: str) -> Worker:
        for w in await self.list_workers():
            if w.worker_id == worker_id:
                return w
        raise NotFound(f"worker {worker_id!r} not found")

    # ---- tasks ---------------------------------------------------------------------------

    async def submit(self, spec: TaskSpec) -> Task:
        problems = spec.problems()
        if problems:
            raise InvalidArgument("; ".join(problems))
        task = await self.store.tx(
            planner.submit, new_task_id(), spec, time.time(), self.config.heartbeat_interval
        )
        log.info("task %s submitted (%s, %s)", task.task_id, spec.image, spec.resources)
        self.metrics.submitted.inc()
        if task.worker_id:
            self.metrics.placements.labels(task.worker_id).inc()
            self.dispatcher.deliver_soon(task.task_id, task.worker_id)
        # Place it now if it fits, so the reply already says where it runs.
        if task.status is TaskStatus.PENDING and await self.dispatcher.place_pending():
            task = await self.get_task(task.task_id)
        self.dispatcher.wake()
        return task

    async def get_task(self, task_id: str) -> Task:
        task = await self.store.tx(planner.task_detail, task_id)
        if task is None:
            raise NotFound(f"task {task_id!r} not found")
        return task

    async def list_tasks(
        self,
        status: str = "",
        worker_id: str = "",
        limit: int = 0,
        owner: str = "",
        cancelled_by: str = "",
    ) -> list[Task]:
        if status and status not in TaskStatus.__members__.values():
            raise InvalidArgument(
                f"unknown status {quote(status)}: use one of "
                + ", ".join(s.value for s in TaskStatus)
            )
        check(
            validate_worker_id(worker_id) if worker_id else None,
            text_problem("owner", owner, OWNER_MAX),
            text_problem("cancelled_by", cancelled_by, ACTOR_MAX),
        )
        found = await self.store.tx(tasks.list_tasks, status, worker_id, limit, owner, cancelled_by)
        # A summary of each (the command and env cut to LIST_FIELD_MAX): a list of thousands
        # of tasks stays well within a reply, whatever each holds. `get_task` has them whole.
        return [dataclasses.replace(t, spec=t.spec.summary()) for t in found]

    @staticmethod
    def _report_tx(
        conn: Connection, result: TaskResult, now: float
    ) -> tuple[tuple[str, str], tuple[float, str] | None]:
        outcome = planner.record_result(conn, result, now)
        stopped = Canceller.record_stop_tx(conn, result) if result.stop is not None else None
        return outcome, stopped

    async def report(self, result: TaskResult) -> str:
        check(result.problems())
        result = result.bounded()  # the logs' tail, short texts: what the store keeps
        (outcome, message), stopped = await self.store.tx(self._report_tx, result, time.time())
        if stopped is not None:
            took, how = stopped
            self.metrics.cancel_stop.labels(how).observe(took)
        log.info(
            "task %s reported %s by %s (exit %s): %s",
            result.task_id,
            result.status.value,
            result.worker_id,
            result.exit_code,
            outcome,
        )
        self.dispatcher.wake()  # room may have freed
        return message

    async def cancel(
        self,
        task_ids: list[str],
        actor: str,
        reason: str = "",
        force: bool = False,
        grace: float | None = None,
    ) -> list[CancelOutcome]:
        check(
            ids_problems("task_ids", task_ids),
            text_problem("reason", reason, REASON_MAX, multiline=True),
            None if grace is None else number_problem("grace", grace, 0.0, GRACE_MAX, " s"),
        )
        with self.metrics.cancel_answer.time():
            outcomes = await self.canceller.cancel_many(task_ids, actor, reason, force, grace)
        self.dispatcher.wake()  # room freed
        return outcomes

    async def cancel_one(self, task_id: str, actor: str) -> CancelOutcome:
        """The spec's CancelTask(TaskID): errors as gRPC status codes."""
        with self.metrics.cancel_answer.time():
            outcome = await self.canceller.cancel_one(task_id, actor)
        self.dispatcher.wake()
        return outcome

    async def stop_progress(
        self, task_id: str, worker_id: str, stage: str, at: float, detail: str
    ) -> None:
        check(
            validate_task_id(task_id),
            validate_worker_id(worker_id),
            number_problem("at", at, 0.0, TIME_MAX),
        )
        await self.canceller.progress(
            task_id, worker_id, stage, at, bounded_text(detail, DETAIL_MAX)
        )

    async def stream_logs(self, task_id: str, follow: bool) -> AsyncIterator[bytes]:
        """Live from the worker while it holds the task (also a cancelled one still
        stopping); from the stored result once there is one."""
        task = await self.get_task(task_id)
        while follow and task.status is TaskStatus.PENDING:
            await asyncio.sleep(0.5)
            task = await self.get_task(task_id)
        while task.worker_id and task.result is None:
            # Not None: a task's worker_id comes from its assignment, whose worker row (a
            # foreign key) is never deleted.
            worker = cast(workers.WorkerRow, await self.store.tx(workers.get, task.worker_id))
            try:
                async for chunk in self.peers.logs(worker["address"], task_id, follow):
                    yield chunk
            except NotFound:
                # Not accepted by the worker yet, or already reported and removed.
                task = await self.get_task(task_id)
                if task.result is None and task.status is TaskStatus.RUNNING:
                    if not follow:
                        return  # no output yet
                    await asyncio.sleep(0.25)
                    continue
                break
            if follow:  # the stream ended with the task: wait briefly for its result
                for _ in range(20):
                    if (await self.get_task(task_id)).result is not None:
                        break
                    await asyncio.sleep(0.25)
            return
        row = await self.store.tx(results.get, task_id)
        if row is not None and row["logs"]:
            yield row["logs"].encode()

    async def assignment_worker(self, task_id: str) -> str | None:
        return await self.store.tx(assignments.worker_of, task_id)
