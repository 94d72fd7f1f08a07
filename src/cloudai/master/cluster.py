"""The master's behaviour, independent of gRPC: every RPC handler calls one method here."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from sqlalchemy import Connection

from cloudai.api.v1 import types_pb2
from cloudai.core.gpus import GpuDevice, validate_gpu_ids
from cloudai.core.lease import Lease
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
    normalize_signal,
    validate_address,
    validate_task_id,
    validate_worker_id,
)
from cloudai.core.resources import Resources
from cloudai.errors import (
    AlreadyExists,
    CloudAIError,
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    WrongCluster,
    check,
)
from cloudai.failpoints import failpoint
from cloudai.loops import Loops
from cloudai.master import planner
from cloudai.master.auth import Caller
from cloudai.master.canceller import Canceller, CancelOutcome
from cloudai.master.config import MasterConfig
from cloudai.master.deadlines import Deadlines, with_time_limit
from cloudai.master.dispatcher import Dispatcher
from cloudai.master.liveness import reap_lost_workers_tx, reconcile_tx
from cloudai.master.peers import WorkerPeers
from cloudai.master.preemption import Preemptor
from cloudai.master.queue import in_queue_order, queue_tx
from cloudai.master.stop_orders import stop_orders_tx
from cloudai.metrics import MasterMetrics
from cloudai.security.tls import Tls
from cloudai.store import Store, assignments, events, results, tasks, workers
from cloudai.store._dialect import lock_row
from cloudai.store.engine import masked_url
from cloudai.store.schema import workers as workers_table

__all__ = ["Cluster", "MasterConfig"]

log = logging.getLogger("cloudai.master")
REFUSAL_LOG_EVERY = 60.0  # seconds between two ERROR lines about one refused worker


def _worker_problems(capacity: Resources, runtime: str) -> list[str]:
    problems = [f"invalid capacity: {p}" for p in capacity.validate_capacity()]
    if (p := text_problem("runtime", runtime, RUNTIME_MAX)) is not None:
        problems.append(p)
    return problems


def _summaries(found: list[Task]) -> list[Task]:
    return [dataclasses.replace(t, spec=t.spec.summary()) for t in found]


class Cluster:
    def __init__(
        self,
        store: Store,
        config: MasterConfig | None = None,
        tls: Tls | None = None,
        cluster_id: str = "",
    ) -> None:
        self.store = store
        self.cluster_id = cluster_id  # the store's identity (store/identity.py); "": none
        self._refusals_logged: dict[str, float] = {}  # worker_id -> when last logged
        self._unknown_reported: set[tuple[str, str]] = set()  # (worker, task) said once
        self.config = config or MasterConfig()
        self.peers = WorkerPeers(tls)
        self.dispatcher = Dispatcher(store, self.peers, self.config)
        self.metrics = MasterMetrics()
        self.metrics.watch(self._metrics_snapshot)
        self.loops = Loops("master", self.metrics.loop_failures)
        self.metrics_server: Any = None
        self.web_server: Any = None  # web.WebServer, when --http-listen is given
        self.canceller = Canceller(store, self.peers, self.config, self.metrics)
        self.dispatcher.also.append(self.canceller.outage.replay)  # first: before new orders
        self.dispatcher.also.append(self.canceller.retry_undelivered)
        self.dispatcher.on_store_away = self._lease_from_now
        self.dispatcher.also.append(self._reap_lost_workers)
        self.dispatcher.on_placed = lambda w: self.metrics.placements.labels(w).inc()
        self.dispatcher.also.append(Deadlines(store, self.canceller).enforce)
        self.dispatcher.preempt = Preemptor(store, self.canceller)
        self._lease_from_now()  # re-taken by start(), once workers can reach this master

    def _lease_from_now(self) -> None:
        """Every worker's lease counts from now at the earliest: at this master's start, and
        while its store is away (heartbeats could not be recorded: the store was away, not
        the workers)."""
        self.lease = Lease(self.config.worker_lost_after, master_started=time.time())

    async def start(self) -> None:
        """Load what the store holds (the spec's LoadWorkersFromDB) and start the loops.
        Workers' leases count from now at the earliest: each has a full deadline to reach
        this master before it can be judged lost, however long the master was away."""
        self._lease_from_now()
        self.metrics.started.set(self.lease.master_started)
        snapshot = await self.list_workers()
        self.canceller.outage.addresses.update((w.worker_id, w.address) for w in snapshot)
        counts = await self.store.tx(tasks.count_by_status)
        log.info(
            "loaded %d workers, %d running and %d pending tasks from the store",
            len(snapshot),
            counts.get(TaskStatus.RUNNING.value, 0),
            counts.get(TaskStatus.PENDING.value, 0),
        )
        log.info(
            "workers' leases count from now: a worker is lost after %gs without a heartbeat",
            self.lease.lost_after,
        )
        self.loops.start("dispatch-loop", self.dispatcher.run)

    def _metrics_snapshot(self) -> tuple[dict[str, int], list[Worker]]:
        """For a scrape (on the HTTP server's thread): tasks by status, workers."""
        by_status = self.store.tx_sync(tasks.count_by_status)
        snapshot = self.store.tx_sync(
            planner.load_workers, time.time(), self.config.heartbeat_interval
        )
        return by_status, snapshot

    async def stop(self) -> None:
        await self.loops.stop()
        await self.dispatcher.stop()
        await self.canceller.close()
        await self.peers.close()

    # ---- workers -------------------------------------------------------------------------

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
        orders = await self.store.tx(
            self._register_tx,
            worker_id,
            address,
            capacity,
            runtime,
            running or [],
            gpu_ids or None,
            time.time(),
        )
        gpus = f", GPUs {','.join(gpu_ids)}" if gpu_ids else ""
        log.info(
            "worker %s registered at %s with %s (%s)%s", worker_id, address, capacity, runtime, gpus
        )
        if orders:
            log.info("worker %s: %d stop order(s) with its registration", worker_id, len(orders))
        self.dispatcher.wake()
        return orders

    def _register_tx(  # type: ignore[no-untyped-def]
        self, conn, worker_id, address, capacity, runtime, running, gpu_ids, now
    ) -> list[types_pb2.CancelTaskRequest]:
        workers.register_self(conn, worker_id, address, capacity, runtime, now, gpu_ids)
        self._reconcile(conn, worker_id, set(running), set(), now)
        unknown: list[str] = []
        orders = stop_orders_tx(conn, worker_id, running, [], now, unknown)
        self._report_unknown(worker_id, unknown)
        return orders

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

    def _reconcile(self, conn, worker_id: str, running: set[str], stopping: set[str], now: float):  # type: ignore[no-untyped-def]
        lost = reconcile_tx(conn, worker_id, running, stopping, now, self.config.heartbeat_interval)
        for task_id in lost:
            self.metrics.lost.labels("lost_on_worker").inc()
            log.warning("✗ task %s lost on worker %s: failed", task_id, worker_id)

    async def _reap_lost_workers(self) -> None:
        ended = await self.store.tx(reap_lost_workers_tx, time.time(), self.lease)
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
        self.dispatcher.wake()
        return await self.get_worker(worker_id)

    async def heartbeat(
        self,
        worker_id: str,
        running: list[str],
        stopping: list[str],
        telemetry: dict[str, float] | None = None,
        usage: list[tuple[str, float, float]] | None = None,
        gpus: list[GpuDevice] | None = None,
    ) -> tuple[bool, list[types_pb2.CancelTaskRequest]]:
        """Record a heartbeat with its telemetry (GPUs' too: busy ones are not handed out),
        reconcile, and answer whether the worker is known and its stop orders."""
        check(
            validate_worker_id(worker_id),
            ids_problems("running_task_ids", running),
            ids_problems("stopping_task_ids", stopping),
            ids_problems("usage", [u[0] for u in usage or []]),
        )
        self.canceller.outage.heard(worker_id, running)  # before the store, which may be away
        return await self.store.tx(
            self._heartbeat_tx,
            worker_id,
            running,
            stopping,
            telemetry,
            usage or [],
            gpus or [],
            time.time(),
        )

    def _heartbeat_tx(  # type: ignore[no-untyped-def]
        self, conn, worker_id, running, stopping, telemetry, usage, gpus, now
    ):
        if not workers.touch(conn, worker_id, now, telemetry, gpus):
            return False, []
        self.metrics.heartbeats.labels(worker_id).inc()
        if usage:
            tasks.record_usage(conn, usage, worker_id, now)
        self._reconcile(conn, worker_id, set(running), set(stopping), now)
        unknown: list[str] = []
        orders = stop_orders_tx(conn, worker_id, running, stopping, now, unknown)
        self._report_unknown(worker_id, unknown)
        return True, orders

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
        log.info("worker %s removed", worker_id)
        return worker

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

    async def submit(self, spec: TaskSpec, caller: Caller) -> Task:
        """Submit as `caller`, who owns the task (whatever the spec says)."""
        try:
            stop_signal = normalize_signal(spec.stop_signal)  # TERM, term, 15 -> SIGTERM
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        spec = dataclasses.replace(spec, owner=caller.name, stop_signal=stop_signal)
        spec = with_time_limit(spec, self.config.max_task_time)
        problems = spec.problems()
        if problems:
            raise InvalidArgument("; ".join(problems))
        task = await self.store.tx(self._submit_tx, new_task_id(), spec, time.time())
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

    def _submit_tx(self, conn: Connection, task_id: str, spec: TaskSpec, now: float) -> Task:
        if tasks.pending_of(conn, spec.owner) >= self.config.max_pending_per_user:
            raise RateLimited(
                f"{spec.owner} has {self.config.max_pending_per_user} pending tasks already: "
                "wait for some to start, or cancel some",
                retry_after=self.config.heartbeat_interval,
            )
        return planner.submit(conn, task_id, spec, now, self.config.heartbeat_interval)

    async def get_task(self, task_id: str, caller: Caller | None = None) -> Task:
        """A task with its events; with `caller`, only its owner or an admin may see it."""
        task = await self.store.tx(planner.task_detail, task_id)
        if task is None:
            raise NotFound(f"task {task_id!r} not found")
        if caller is not None and not caller.may_touch(task.spec.owner):
            await self.deny(caller, [task_id], "show")
        return task

    async def deny(self, caller: Caller, task_ids: list[str], action: str) -> None:
        """Refuse `action` on other users' tasks: an audit event on each, then PERMISSION_DENIED."""
        await self.store.tx(self._deny_tx, caller, task_ids, action, time.time())
        raise PermissionDenied(f"{caller.name} may not {action} task {task_ids[0]}: not the owner")

    @staticmethod
    def _deny_tx(
        conn: Connection, caller: Caller, task_ids: list[str], action: str, now: float
    ) -> None:
        for task_id in task_ids:
            events.add(
                conn, task_id, "denied", caller.name, f"{action} refused: not the owner", now
            )
        log.warning("⛔ %s may not %s %s: not the owner", caller.name, action, ", ".join(task_ids))

    async def list_tasks(
        self,
        status: str = "",
        worker_id: str = "",
        limit: int = 0,
        owner: str = "",
        cancelled_by: str = "",
        caller: Caller | None = None,
        newest: bool = False,
    ) -> tuple[list[Task], int, int]:
        """The matching tasks the caller may see (admins: all) — the first `limit`, or with
        `newest` the newest `limit` — how many it may not see, and how many it may."""
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
        # Each task as a summary (the command and env cut to LIST_FIELD_MAX): a list of
        # thousands of tasks stays well within a reply. `get_task` has them whole.
        if caller is None or caller.admin:
            found, total = await self.store.tx(
                _page_tx, status, worker_id, limit, owner, cancelled_by, newest
            )
            return await self._queued(status, _summaries(found)), 0, total
        if owner and owner != caller.name:
            hidden = await self.store.tx(
                tasks.count_matching, status, worker_id, caller.name, owner
            )
            return [], hidden, 0
        found, total = await self.store.tx(
            _page_tx, status, worker_id, limit, caller.name, cancelled_by, newest
        )
        # Asked for its own tasks (or by canceller): nothing of others matched to hide.
        hidden = (
            0
            if cancelled_by or owner
            else await self.store.tx(tasks.count_matching, status, worker_id, caller.name)
        )
        return await self._queued(status, _summaries(found)), hidden, total

    async def _queued(self, status: str, found: list[Task]) -> list[Task]:
        """Pending tasks in queue order, each with its position and why it waits."""
        if status != TaskStatus.PENDING.value or not found:
            return found
        slots, _ = await self.store.tx(queue_tx, time.time(), self.config.heartbeat_interval)
        return in_queue_order(found, slots)

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
        await self.canceller.outage.replay()  # a stop journaled without the store goes first
        placed_on = await self.store.tx(assignments.worker_of, result.task_id)
        if placed_on is not None and placed_on != result.worker_id:
            raise PermissionDenied(
                f"task {result.task_id} is not assigned to worker {result.worker_id[:64]!r}"
            )
        failpoint("report.before_result_write")
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
        caller: Caller,
        reason: str = "",
        force: bool = False,
        grace: float | None = None,
        *,
        stop_signal: str = "",
    ) -> list[CancelOutcome]:
        """Cancel what the caller may; other users' tasks get a PERMISSION_DENIED ack each.
        `stop_signal` (a name of STOP_SIGNALS; "": each task's own) overrides the task's."""
        check(
            ids_problems("task_ids", task_ids),
            text_problem("reason", reason, REASON_MAX, multiline=True),
            None if grace is None else number_problem("grace", grace, 0.0, GRACE_MAX, " s"),
        )
        with self.metrics.cancel_answer.time():
            denied = await self._not_permitted(task_ids, caller, "cancel")
            allowed = [t for t in task_ids if t not in denied]
            done = await self.canceller.cancel_many(
                allowed, caller.name, reason, force, grace, stop_signal=stop_signal
            )
        by_id = {o.task_id: o for o in done}
        refusal = PermissionDenied("").code.name
        outcomes = [
            by_id.get(t)
            or CancelOutcome(
                t,
                False,
                f"{caller.name} may not cancel task {t}: not the owner",
                error_code=refusal,
            )
            for t in task_ids
        ]
        self.dispatcher.wake()  # room freed
        return outcomes

    async def _not_permitted(self, task_ids: list[str], caller: Caller, action: str) -> set[str]:
        """The tasks among `task_ids` that are other users' (each refusal an audit event)."""
        if caller.admin:
            return set()
        owned = await self.store.tx(tasks.owners, task_ids)
        denied = [t for t, owner in owned.items() if owner != caller.name]
        if denied:
            await self.store.tx(self._deny_tx, caller, denied, action, time.time())
        return set(denied)

    async def cancel_one(self, task_id: str, caller: Caller) -> CancelOutcome:
        """The spec's CancelTask(TaskID): errors as gRPC status codes."""
        with self.metrics.cancel_answer.time():
            if await self._not_permitted([task_id], caller, "cancel"):
                raise PermissionDenied(
                    f"{caller.name} may not cancel task {task_id}: not the owner"
                )
            outcome = await self.canceller.cancel_one(task_id, caller.name)
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
        placed_on = await self.store.tx(assignments.worker_of, task_id)
        if placed_on is not None and placed_on != worker_id:
            raise PermissionDenied(f"task {task_id} is not assigned to worker {worker_id[:64]!r}")
        await self.canceller.progress(
            task_id, worker_id, stage, at, bounded_text(detail, DETAIL_MAX)
        )
        self.dispatcher.wake()  # an exit or a removal frees the task's resources

    async def stream_logs(
        self, task_id: str, follow: bool, caller: Caller | None = None
    ) -> AsyncIterator[bytes]:
        """Live from the worker while it holds the task (also a cancelled one still
        stopping); from the stored result once there is one."""
        task = await self.get_task(task_id)
        if caller is not None and not caller.may_touch(task.spec.owner):
            await self.deny(caller, [task_id], "read the logs of")
        while follow and task.status is TaskStatus.PENDING:
            await asyncio.sleep(0.5)
            task = await self.get_task(task_id)
        while task.worker_id and task.result is None:
            # Not None: a task's worker_id comes from its assignment, whose worker row (a
            # foreign key) is never deleted.
            worker = cast(workers.WorkerRow, await self.store.tx(workers.get, task.worker_id))
            try:
                async for chunk in self.peers.logs(
                    task.worker_id, worker["address"], task_id, follow
                ):
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


def _page_tx(
    conn: Connection,
    status: str,
    worker_id: str,
    limit: int,
    owner: str,
    cancelled_by: str,
    newest: bool,
) -> tuple[list[Task], int]:
    """A page of tasks, and how many match in all (counted only when the page is full)."""
    found = tasks.list_tasks(conn, status, worker_id, limit, owner, cancelled_by, newest=newest)
    if not limit or len(found) < limit:
        return found, len(found)
    return found, tasks.count_tasks(conn, status, worker_id, owner, cancelled_by)


def _remove_worker_tx(conn: Connection, worker_id: str, now: float) -> None:
    """Mark the worker removed unless a task is active on it. Its row is locked first, as a
    placement locks it, so a task placed meanwhile is seen here (or the placement sees it
    removed)."""
    if lock_row(conn, workers_table, "worker_id", worker_id) is None:
        raise NotFound(f"worker {worker_id!r} not found")
    active = sorted(tasks.active_ids_on(conn, worker_id))
    if active:
        shown = ", ".join(active[:3]) + (", ..." if len(active) > 3 else "")
        raise Conflict(
            f"worker {worker_id} has {len(active)} active task(s) ({shown}): cancel them or "
            f"let them end first (cloudai drain {worker_id} --cancel)"
        )
    if not workers.mark_removed(conn, worker_id, now):
        raise NotFound(f"worker {worker_id!r} not found")
