"""The master's behaviour, independent of gRPC: every RPC handler calls one method here."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cloudai.core.lifecycle import TERMINAL, TaskStatus
from cloudai.core.models import (
    Task,
    TaskResult,
    TaskSpec,
    Worker,
    new_task_id,
    validate_address,
    validate_worker_id,
)
from cloudai.core.resources import Resources
from cloudai.errors import AlreadyExists, CloudAIError, Conflict, InvalidArgument, NotFound
from cloudai.master import planner
from cloudai.master.dispatcher import Dispatcher
from cloudai.master.peers import WorkerPeers
from cloudai.store import Store, assignments, events, results, tasks, workers

__all__ = ["Cluster", "MasterConfig"]

log = logging.getLogger("cloudai.master")


@dataclass(frozen=True)
class MasterConfig:
    heartbeat_interval: float = 5.0
    dispatch_interval: float = 1.0


class Cluster:
    def __init__(self, store: Store, config: MasterConfig | None = None) -> None:
        self.store = store
        self.config = config or MasterConfig()
        self.peers = WorkerPeers()
        self.dispatcher = Dispatcher(store, self.peers, self.config)

    async def start(self) -> None:
        """Load what the store holds (the spec's LoadWorkersFromDB) and start the loops."""
        snapshot = await self.list_workers()
        active = await self.store.tx(tasks.list_tasks, TaskStatus.RUNNING.value)
        pending = await self.store.tx(tasks.list_tasks, TaskStatus.PENDING.value)
        log.info(
            "loaded %d workers, %d running and %d pending tasks from the store",
            len(snapshot),
            len(active),
            len(pending),
        )
        self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.peers.close()

    # ---- workers -------------------------------------------------------------------------

    async def register_worker(
        self, worker_id: str, address: str, capacity: Resources, runtime: str
    ) -> None:
        for problem in (validate_worker_id(worker_id), validate_address(address)):
            if problem:
                raise InvalidArgument(problem)
        if capacity.cpu <= 0 or capacity.mem_gb < 0 or capacity.storage_gb < 0 or capacity.gpu < 0:
            raise InvalidArgument(f"invalid capacity {capacity}")
        await self.store.tx(
            workers.register_self, worker_id, address, capacity, runtime, time.time()
        )
        log.info("worker %s registered at %s with %s (%s)", worker_id, address, capacity, runtime)
        self.dispatcher.wake()

    async def manual_register(self, worker_id: str, address: str) -> Worker:
        for problem in (validate_worker_id(worker_id), validate_address(address)):
            if problem:
                raise InvalidArgument(problem)
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
            raise Conflict(f"the worker at {address} is {info.worker_id!r}, not {worker_id!r}")
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

    async def heartbeat(self, worker_id: str, running: list[str]) -> tuple[bool, list[str]]:
        """Record a heartbeat; answer whether the worker is known and which tasks to stop."""
        return await self.store.tx(self._heartbeat_tx, worker_id, running, time.time())

    @staticmethod
    def _heartbeat_tx(conn, worker_id: str, running: list[str], now: float):  # type: ignore[no-untyped-def]
        if not workers.touch(conn, worker_id, now):
            return False, []
        stop = []
        for task_id in running:
            task = tasks.get(conn, task_id)
            if task is None or task.status in TERMINAL or task.worker_id != worker_id:
                stop.append(task_id)
        return True, stop

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

    async def list_tasks(self, status: str = "", worker_id: str = "", limit: int = 0) -> list[Task]:
        if status and status not in TaskStatus.__members__.values():
            raise InvalidArgument(
                f"unknown status {status!r}: use one of {', '.join(s.value for s in TaskStatus)}"
            )
        return await self.store.tx(tasks.list_tasks, status, worker_id, limit)

    async def report(self, result: TaskResult) -> str:
        outcome, message = await self.store.tx(planner.record_result, result, time.time())
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

    async def cancel(self, task_id: str, actor: str, reason: str = "") -> str:
        """Cancel a task: decide in the store first, then tell its worker."""
        task = await self.get_task(task_id)
        if task.status is TaskStatus.CANCELLED:
            return f"task {task_id} already cancelled"
        if task.status in TERMINAL:
            raise Conflict(f"task {task_id} already {task.status.value}")
        won = await self.store.tx(self._cancel_tx, task_id, actor, reason, time.time())
        if not won:
            task = await self.get_task(task_id)
            if task.status is TaskStatus.CANCELLED:
                return f"task {task_id} already cancelled"
            raise Conflict(f"task {task_id} already {task.status.value}")
        self.dispatcher.wake()
        if task.worker_id is None:
            return f"task {task_id} cancelled (it had not started)"
        worker = await self.store.tx(workers.get, task.worker_id)
        try:
            await self.peers.cancel(worker["address"], task_id, reason=reason, timeout=5.0)
        except CloudAIError as exc:
            log.warning(
                "⚠ task %s cancelled in the store; worker %s not reached: %s",
                task_id,
                task.worker_id,
                exc,
            )
            return (
                f"task {task_id} cancelled; worker {task.worker_id} not reached, "
                "the stop is delivered at its next heartbeat"
            )
        return f"task {task_id} cancelled; worker {task.worker_id} is stopping it"

    @staticmethod
    def _cancel_tx(conn, task_id: str, actor: str, reason: str, now: float) -> bool:  # type: ignore[no-untyped-def]
        won = tasks.transition(
            conn, task_id, TaskStatus.CANCELLED, completed_at=now, reason=reason or "cancelled"
        )
        if won:
            events.add(conn, task_id, "cancel_requested", actor, reason, now)
        return won

    async def stream_logs(self, task_id: str, follow: bool) -> AsyncIterator[bytes]:
        task = await self.get_task(task_id)
        while follow and task.status is TaskStatus.PENDING:
            await asyncio.sleep(0.5)
            task = await self.get_task(task_id)
        if task.status is TaskStatus.RUNNING and task.worker_id:
            worker = await self.store.tx(workers.get, task.worker_id)
            async for chunk in self.peers.logs(worker["address"], task_id, follow):
                yield chunk
            if not follow:
                return
            # The stream ended with the task; wait briefly for its result to be stored.
            for _ in range(20):
                if (await self.get_task(task_id)).status in TERMINAL:
                    break
                await asyncio.sleep(0.25)
            return
        row = await self.store.tx(results.get, task_id)
        if row is not None and row["logs"]:
            yield row["logs"].encode()

    async def assignment_worker(self, task_id: str) -> str | None:
        return await self.store.tx(assignments.worker_of, task_id)
