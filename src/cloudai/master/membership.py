"""The cluster's workers: who may join, registration, heartbeats (with the stop orders
their replies carry), drain, removal, and the workers' view."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection

from cloudai.api.v1 import types_pb2
from cloudai.core.gpus import GpuDevice, validate_gpu_ids
from cloudai.core.lease import Lease
from cloudai.core.limits import (
    RUNTIME_MAX,
    ids_problems,
    quote,
    text_problem,
)
from cloudai.core.models import (
    Worker,
    validate_address,
    validate_worker_id,
    worker_state,
)
from cloudai.core.resources import Resources
from cloudai.errors import (
    AlreadyExists,
    CloudAIError,
    Conflict,
    InvalidArgument,
    NotFound,
    StoreUnavailable,
    WrongCluster,
    check,
)
from cloudai.master import planner
from cloudai.master.beats import Beats, Touch
from cloudai.master.canceller import Canceller
from cloudai.master.config import MasterConfig
from cloudai.master.dispatcher import Dispatcher
from cloudai.master.liveness import reap_lost_workers_tx, reconcile_tx
from cloudai.master.peers import WorkerPeers
from cloudai.master.stop_orders import stop_orders_tx
from cloudai.metrics import MasterMetrics
from cloudai.store import Store, holdings, tasks, workers
from cloudai.store._dialect import lock_row
from cloudai.store.engine import masked_url
from cloudai.store.schema import workers as workers_table

__all__ = ["Membership"]

log = logging.getLogger("cloudai.master")


def _write_beats_tx(conn: Connection, batch: dict[str, Touch]) -> None:
    workers.touch_many(conn, ((w, t.at, t.telemetry, t.gpus) for w, t in batch.items()))
    tasks.record_usage_many(
        conn, [(task, w, c, m, t.at) for w, t in batch.items() for task, c, m in t.usage]
    )


def _worker_problems(capacity: Resources, runtime: str) -> list[str]:
    problems = [f"invalid capacity: {p}" for p in capacity.validate_capacity()]
    if (p := text_problem("runtime", runtime, RUNTIME_MAX)) is not None:
        problems.append(p)
    return problems


def _remove_worker_tx(conn: Connection, worker_id: str, now: float) -> None:
    """Mark the worker removed unless a task is active on it. Its row is locked first, as a
    placement locks it, so a task placed meanwhile is seen here (or the placement sees it
    removed)."""
    if lock_row(conn, workers_table, "worker_id", worker_id) is None:
        raise NotFound(f"worker {worker_id!r} not found")
    active = sorted(holdings.active_ids_on(conn, worker_id))
    if active:
        shown = ", ".join(active[:3]) + (", ..." if len(active) > 3 else "")
        raise Conflict(
            f"worker {worker_id} has {len(active)} active task(s) ({shown}): cancel them or "
            f"let them end first (cloudai drain {worker_id} --cancel)"
        )
    if not workers.mark_removed(conn, worker_id, now):
        raise NotFound(f"worker {worker_id!r} not found")


REFUSAL_LOG_EVERY = 60.0  # seconds between two ERROR lines about one refused worker


class Membership:
    """Workers joining, beating and leaving (part of Cluster)."""

    # Set by Cluster.__init__.
    store: Store
    config: MasterConfig
    metrics: MasterMetrics
    dispatcher: Dispatcher
    peers: WorkerPeers
    canceller: Canceller
    cluster_id: str
    lease: Lease
    beats: Beats
    _refusals_logged: dict[str, float]
    _unknown_reported: set[tuple[str, str]]

    def admit(self, worker_id: str, claimed: str) -> None:
        """Refuse, before anything is written, a worker of another cluster: it learnt another
        cluster ID from an earlier master (this master runs on another store). A worker that
        names none (new, or older than cluster IDs) is admitted."""
        if not claimed or not self.cluster_id or claimed == self.cluster_id:
            return
        now = time.monotonic()
        if now - self._refusals_logged.get(worker_id, -math.inf) >= REFUSAL_LOG_EVERY:
            self._refusals_logged[worker_id] = now
            log.error(
                "✗ worker %s belongs to cluster %s, this master is cluster %s (store %s): "
                "refused. Is this master on the wrong --db?",
                worker_id,
                claimed[:64],
                self.cluster_id,
                masked_url(self.store.url),
            )
        self.metrics.workers_refused.inc()
        raise WrongCluster(
            f"this master is cluster {self.cluster_id}, not {claimed[:64]}: it runs on another "
            "store",
            self.cluster_id,
        )

    async def register_worker(
        self,
        worker_id: str,
        address: str,
        capacity: Resources,
        runtime: str,
        running: list[str] | None = None,
        gpu_ids: list[str] | None = None,
    ) -> list[types_pb2.CancelTaskRequest]:
        """A worker announced itself (with its GPUs' IDs; none: 0..capacity.gpu-1); answers
        the stop orders queued for it."""
        check(
            validate_worker_id(worker_id),
            validate_address(address),
            _worker_problems(capacity, runtime),
            ids_problems("running_task_ids", running or []),
        )
        if gpu_ids and (problem := validate_gpu_ids(gpu_ids)):
            raise InvalidArgument(problem)
        if gpu_ids and len(gpu_ids) != capacity.gpu:
            raise InvalidArgument(f"{len(gpu_ids)} GPU ids for a capacity of {capacity.gpu} GPUs")
        self.canceller.outage.heard(worker_id, running or [], address)
        self.beats.forget(worker_id)  # nothing of it is answered from memory until...
        gen, now = self.beats.generation(worker_id), time.time()
        orders, quiet = await self.store.tx(
            self._register_tx,
            worker_id,
            address,
            capacity,
            runtime,
            running or [],
            gpu_ids or None,
            now,
        )
        # ...this registration, a full pass of its own (written, reconciled, its orders): a
        # first heartbeat that says the same is answered from memory, as after a heartbeat's.
        # Not for a worker with GPUs: its first heartbeat writes their telemetry at once.
        if capacity.gpu == 0:
            self.beats.after_full(worker_id, gen, running or [], [], [], now, quiet)
        gpus = f", GPUs {','.join(gpu_ids)}" if gpu_ids else ""
        log.info(
            "worker %s registered at %s with %s (%s)%s", worker_id, address, capacity, runtime, gpus
        )
        if orders:
            log.info("worker %s: %d stop order(s) with its registration", worker_id, len(orders))
        self.dispatcher.wake(deliver=True)  # what waits for it goes now
        return orders

    def _register_tx(
        self,
        conn: Connection,
        worker_id: str,
        address: str,
        capacity: Resources,
        runtime: str,
        running: list[str],
        gpu_ids: list[str] | None,
        now: float,
    ) -> tuple[list[types_pb2.CancelTaskRequest], bool]:
        """Register, reconcile, the stop orders; and whether it was quiet (as `_heartbeat_tx`)."""
        workers.register_self(conn, worker_id, address, capacity, runtime, now, gpu_ids)
        waiting = self._reconcile(conn, worker_id, set(running), set(), now)
        unknown: list[str] = []
        orders = stop_orders_tx(conn, worker_id, running, unknown)
        self._report_unknown(worker_id, unknown)
        return orders, not (orders or unknown or waiting)

    def _report_unknown(self, worker_id: str, unknown: list[str]) -> None:
        """Tasks a worker runs that the store has no record of: kept running (this master may
        be on an older copy of the store), said once each per master process."""
        for task_id in unknown:
            if (worker_id, task_id) in self._unknown_reported:
                continue
            self._unknown_reported.add((worker_id, task_id))
            self.metrics.unknown_tasks.inc()
            log.warning(
                "⚠ worker %s runs task %s, which this store has no record of: left running "
                "(not stopped); is this master on the right --db?",
                worker_id,
                task_id,
            )

    def _reconcile(
        self, conn: Connection, worker_id: str, running: set[str], stopping: set[str], now: float
    ) -> list[str]:
        """Reconcile (liveness.py); the tasks delivered there that the worker may not list
        yet."""
        waiting: list[str] = []
        interval = self.config.heartbeat_interval
        lost = reconcile_tx(conn, worker_id, running, stopping, now, interval, waiting)
        for task_id in lost:
            self.metrics.lost.labels("lost_on_worker").inc()
            log.warning("✗ task %s lost on worker %s: failed", task_id, worker_id)
        return waiting

    async def _reap_lost_workers(self) -> None:
        reaped: list[str] = []
        heard = self.beats.heard()  # heartbeats not yet written count
        ended = await self.store.tx(reap_lost_workers_tx, time.time(), self.lease, heard, reaped)
        for worker_id in reaped:
            self.beats.changed(worker_id)
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
            info: Worker | None = await self.peers.describe(worker_id, address)
        except Conflict:
            raise  # someone else answers there
        except CloudAIError as exc:
            log.warning("⚠ worker %s at %s not reachable yet: %s", worker_id, address, exc)
            info = None
        if info is not None and info.worker_id and info.worker_id != worker_id:
            raise Conflict(f"the worker at {address} is {quote(info.worker_id)}, not {worker_id!r}")
        if info is not None and (problems := _worker_problems(info.capacity, info.runtime)):
            raise Conflict(f"the worker at {address} describes itself wrongly: {problems[0]}")
        gpu_ids = [g.gpu_id for g in info.gpus] if info is not None else []
        if problem := validate_gpu_ids(gpu_ids):
            raise InvalidArgument(f"the worker at {address} says: {problem}")
        await self.store.tx(
            workers.register_manual,
            worker_id,
            address,
            info.capacity if info else None,
            info.runtime if info else "",
            time.time(),
            gpu_ids or None,
        )
        self.dispatcher.wake(deliver=True)
        return await self.get_worker(worker_id)

    async def heartbeat(
        self,
        worker_id: str,
        running: list[str],
        stopping: list[str],
        telemetry: Mapping[str, float | None] | None = None,
        usage: Sequence[tuple[str, float | None, float | None]] | None = None,
        gpus: list[GpuDevice] | None = None,
    ) -> tuple[bool, list[types_pb2.CancelTaskRequest]]:
        """Record a heartbeat with its telemetry (GPUs' too: busy ones are not handed out),
        reconcile, and answer whether the worker is known and its stop orders. Most are
        answered from memory and written in a batch (master/beats.py)."""
        check(
            validate_worker_id(worker_id),
            ids_problems("running_task_ids", running),
            ids_problems("stopping_task_ids", stopping),
            ids_problems("usage", [u[0] for u in usage or []]),
        )
        self.canceller.outage.heard(worker_id, running)  # before the store, which may be away
        self.metrics.heartbeats.labels(worker_id).inc()
        touch = Touch(time.time(), telemetry, gpus or [], usage or [])
        if self.beats.answer(worker_id, running, stopping, touch):
            return True, []
        gen = self.beats.generation(worker_id)
        known, orders, quiet = await self.store.tx(
            self._heartbeat_tx, worker_id, running, stopping, touch
        )
        self.beats.after_full(
            worker_id, gen, running, stopping, touch.gpus, touch.at, known and quiet
        )
        return known, orders

    def _heartbeat_tx(
        self,
        conn: Connection,
        worker_id: str,
        running: list[str],
        stopping: list[str],
        touch: Touch,
    ) -> tuple[bool, list[types_pb2.CancelTaskRequest], bool]:
        """The full pass: write the heartbeat, reconcile, the stop orders; and whether it was
        quiet (no order, no unknown task, none delivered that the worker does not list yet)."""
        now = touch.at
        if not workers.touch(conn, worker_id, now, touch.telemetry, touch.gpus):
            return False, [], False
        tasks.record_usage_many(conn, [(t, worker_id, c, m, now) for t, c, m in touch.usage])
        waiting = self._reconcile(conn, worker_id, set(running), set(stopping), now)
        unknown: list[str] = []
        orders = stop_orders_tx(conn, worker_id, running, unknown)
        self._report_unknown(worker_id, unknown)
        return True, orders, not (orders or unknown or waiting)

    async def _write_beats_loop(self) -> None:
        """beat-writer: the heartbeats answered from memory, written once an interval."""
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            with contextlib.suppress(StoreUnavailable):  # kept; the dispatch loop says so
                await self.write_beats()

    async def write_beats(self) -> None:
        """The heartbeats answered from memory since the last call, in one transaction (each
        dispatch round); kept for the next one if the store is away."""
        batch = self.beats.take()
        if not batch:
            return
        try:
            await self.store.tx(_write_beats_tx, batch)
        except BaseException:
            self.beats.put_back(batch)
            raise

    async def drain(self, worker_id: str, drain: bool) -> Worker:
        """Stop (or resume) placing new tasks on a worker; its running tasks go on."""
        if not await self.store.tx(workers.set_drained, worker_id, drain):
            raise NotFound(f"worker {worker_id!r} not found")
        log.info("worker %s %s", worker_id, "drained: no new tasks" if drain else "undrained")
        self.dispatcher.wake()
        return await self.get_worker(worker_id)

    async def remove_worker(self, worker_id: str) -> Worker:
        """Forget a worker (`cloudai worker rm`) that runs no active task; its finished tasks
        keep their history. A worker still running registers itself again at its next
        heartbeat."""
        worker = await self.get_worker(worker_id)
        await self.store.tx(_remove_worker_tx, worker_id, time.time())
        self.beats.forget(worker_id)
        log.info("worker %s removed", worker_id)
        return worker

    async def list_workers(self) -> list[Worker]:
        now = time.time()
        interval = self.config.heartbeat_interval
        found = await self.store.tx(planner.load_workers, now, interval, None, self.beats.heard())
        return [self.with_latest_beat(w, now) for w in found]

    def with_latest_beat(self, w: Worker, now: float) -> Worker:
        """The worker with the telemetry of its newest heartbeat, written or not."""
        touch = self.beats.latest(w.worker_id)  # not written yet: newer than the store's
        if touch is None:
            return w
        t = touch.telemetry or {}
        last = max(touch.at, w.last_heartbeat or 0.0)
        return dataclasses.replace(
            w,
            last_heartbeat=last,
            state=worker_state(last, now, self.config.heartbeat_interval),
            cpu_percent=t.get("cpu_percent", w.cpu_percent),
            mem_used_gb=t.get("mem_used_gb", w.mem_used_gb),
            disk_free_gb=t.get("disk_free_gb", w.disk_free_gb),
        )

    async def get_worker(self, worker_id: str) -> Worker:
        for w in await self.list_workers():
            if w.worker_id == worker_id:
                return w
        raise NotFound(f"worker {worker_id!r} not found")
