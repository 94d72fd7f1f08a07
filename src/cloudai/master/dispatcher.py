"""dispatch-loop: places pending tasks and delivers assignments to their workers (run and
restarted by the master's Loops).

Placement is proposed by the scheduler from a snapshot and committed by the planner against the
store; delivery is retried until the worker acknowledges it. Everything the loop needs is read
from the store each round, so a restarted master picks up where the last one stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Task, Worker
from cloudai.errors import CloudAIError, InvalidArgument, RuntimeFailure, StoreUnavailable
from cloudai.master import planner
from cloudai.master.peers import WorkerPeers
from cloudai.master.queue import queue_tx
from cloudai.scheduler.queue import Slot
from cloudai.store import Store, assignments, events, tasks, workers

if TYPE_CHECKING:
    from cloudai.master.config import MasterConfig

__all__ = ["Dispatcher"]

log = logging.getLogger("cloudai.master.dispatch")


class Dispatcher:
    def __init__(self, store: Store, peers: WorkerPeers, config: MasterConfig) -> None:
        self.store = store
        self.peers = peers
        self.config = config
        self._wake = asyncio.Event()
        self._delivering: set[str] = set()
        self._placing = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        # More work for a round, at most once a dispatch interval (not at every wake-up).
        self.also: list[Callable[[], Awaitable[None]]] = []
        self._also_at = -float("inf")  # monotonic: when `also` last ran
        self._deliver_due = False
        self.on_placed: Callable[[str], None] = lambda _worker_id: None
        self.on_delivered: Callable[[str], None] = lambda _worker_id: None
        self.heard: Callable[[], Mapping[str, float]] = dict  # heartbeats not yet written
        # Makes room for waiting tasks by preempting lower-priority ones (master/preemption.py).
        self.preempt: Callable[[list[Slot], list[Worker]], Awaitable[None]] | None = None
        self.on_store_away: Callable[[], None] = lambda: None  # each round the store fails
        self.store_away_since: float | None = None  # monotonic

    def wake(self, deliver: bool = False) -> None:
        """Run a round now: placement (room may have freed, work may wait); with `deliver`,
        also the retry of undelivered assignments (a worker is back), which otherwise runs
        once a dispatch interval."""
        self._deliver_due = self._deliver_due or deliver
        self._wake.set()

    async def stop(self) -> None:
        """Cancel the deliveries in flight (the loop itself is stopped by its Loops)."""
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def run(self) -> None:
        """The loop: a round at each wake-up, at least every dispatch interval. A round that
        fails fails the loop, which its Loops logs and restarts."""
        while True:
            try:
                await self.round()
            except StoreUnavailable as exc:  # not the loop's failure: it waits for the store
                self._store_away(exc)
            else:
                if self.store_away_since is not None:
                    away = time.monotonic() - self.store_away_since
                    log.info("✓ the store answers again, after %.1fs away", away)
                    self.store_away_since = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.dispatch_interval):
                    await self._wake.wait()
            self._wake.clear()

    def _store_away(self, exc: StoreUnavailable) -> None:
        if self.store_away_since is None:
            self.store_away_since = time.monotonic()
            log.warning(
                "⚠ %s: each round is tried again; clients get UNAVAILABLE meanwhile", exc.message
            )
        self.on_store_away()

    async def round(self) -> None:
        await self.place_pending()
        periodic = time.monotonic() - self._also_at >= self.config.dispatch_interval
        if periodic or self._deliver_due:
            self._deliver_due = False
            await self.deliver()
        if not periodic:
            return  # a wake-up (room freed): placement only
        self._also_at = time.monotonic()
        for extra in self.also:
            await extra()

    async def place_pending(self) -> int:
        """Place what fits, in queue order (scheduler/queue.py); one placer at a time (the
        store re-checks anyway). Then make room for what waits, by preemption."""
        async with self._placing:
            return await self._place_pending()

    async def _place_pending(self) -> int:
        interval = self.config.heartbeat_interval
        slots, workers = await self.store.tx(queue_tx, time.time(), interval, self.heard())
        placed = 0
        for slot in slots:
            if slot.worker_id is None:
                continue
            task = slot.task
            ok = await self.store.tx(
                planner.commit_placement,
                task.task_id,
                slot.worker_id,
                task.spec.resources,
                time.time(),
                "scheduler",
            )
            if ok:
                placed += 1
                self.on_placed(slot.worker_id)
                log.info("task %s placed on %s", task.task_id, slot.worker_id)
                self.deliver_soon(task.task_id, slot.worker_id)
        waiting = [s for s in slots if s.worker_id is None]
        if waiting and self.preempt is not None:
            await self.preempt(waiting, workers)
        return placed

    def deliver_soon(
        self, task_id: str, worker_id: str, placed: tuple[Task, str] | None = None
    ) -> None:
        """Send a new assignment now, not at the next round (`placed`: the task and the
        worker's address, as the transaction that placed it read them)."""
        if task_id in self._delivering:
            return
        t = asyncio.create_task(
            self._deliver_one(task_id, worker_id, placed), name=f"assign-{task_id}"
        )
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def deliver(self) -> None:
        todo = [
            (t, w)
            for t, w in await self.store.tx(assignments.undelivered)
            if t not in self._delivering
        ]
        if todo:
            await asyncio.gather(*(self._deliver_one(t, w) for t, w in todo))

    async def _deliver_one(
        self, task_id: str, worker_id: str, placed: tuple[Task, str] | None = None
    ) -> None:
        if task_id in self._delivering:
            return
        self._delivering.add(task_id)
        try:
            if placed is None:
                task, worker, done = await self.store.tx(
                    self._delivery_state_tx, task_id, worker_id
                )
                if task is None or worker is None or task.status is not TaskStatus.RUNNING:
                    return
                if done:
                    return
                placed = task, worker["address"]
            task, address = placed
            try:
                await self.peers.assign(
                    worker_id, address, task_id, task.spec, task.gpu_ids, task.attempt
                )
            except (InvalidArgument, RuntimeFailure) as exc:
                await self.store.tx(self._reject_tx, task_id, worker_id, str(exc), time.time())
                log.warning("✗ worker %s refused task %s: %s", worker_id, task_id, exc)
                return
            except CloudAIError as exc:
                attempts = await self.store.tx(assignments.record_attempt, task_id, str(exc))
                if attempts in (1, 10, 100) or attempts % 500 == 0:
                    log.warning(
                        "⚠ task %s not delivered to %s (attempt %d): %s",
                        task_id,
                        worker_id,
                        attempts,
                        exc,
                    )
                return
            await self.store.tx(self._delivered_tx, task_id, worker_id, time.time())
            self.on_delivered(worker_id)
            log.info("✓ task %s delivered to %s", task_id, worker_id)
        finally:
            self._delivering.discard(task_id)

    @staticmethod
    def _delivery_state_tx(conn, task_id: str, worker_id: str):  # type: ignore[no-untyped-def]
        return (
            tasks.get(conn, task_id),
            workers.get(conn, worker_id),
            assignments.is_delivered(conn, task_id),
        )

    @staticmethod
    def _delivered_tx(conn, task_id: str, worker_id: str, now: float) -> None:  # type: ignore[no-untyped-def]
        assignments.mark_delivered(conn, task_id, now)
        tasks.mark_started(conn, task_id, now)
        events.add(conn, task_id, "delivered", "master", f"accepted by {worker_id}", now)

    @staticmethod
    def _reject_tx(conn, task_id: str, worker_id: str, error: str, now: float) -> None:  # type: ignore[no-untyped-def]
        if tasks.transition(conn, task_id, TaskStatus.FAILED, completed_at=now, reason=error):
            events.add(conn, task_id, "failed", worker_id, f"worker refused the task: {error}", now)
