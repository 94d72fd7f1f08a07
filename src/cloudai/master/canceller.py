"""Cancellation on the master: decide in the store, then get the stop to the worker.

The decision is one transaction: a compare-and-set of the task's status from `pending` or
`running` to `cancelled`, the cancellations row (who, when, why, how) and an audit event. The
task keeps its worker's resources until its container has exited (core/stop.py; they are
derived from the tasks that hold them, in store/tasks.py).

Then a nudge: the order goes to the worker over gRPC (30 s deadline), once, in the background;
the caller waits only a moment for the worker's acknowledgement, so an unreachable or frozen
worker never makes a cancel hang. The retry rule is the store's: every heartbeat and
registration reply carries each order until the worker confirms the container removed
(`stop_orders.py`), so a nudge that fails is only counted (`delivery_attempts`, `last_error`).

Beside this module: `stop_orders.py` (the orders a worker is owed, a query over the store),
`stop_updates.py` (the worker's updates, the one writer of the stop's stages) and `webhook.py`
(each event POSTed to the operator)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from sqlalchemy import Connection

from cloudai.api.v1 import types_pb2
from cloudai.core.lifecycle import TERMINAL, TaskStatus
from cloudai.core.models import Cancellation, worker_state
from cloudai.core.requests import CancelRequest
from cloudai.errors import CloudAIError, Conflict, NotFound, StoreUnavailable, check
from cloudai.failpoints import failpoint
from cloudai.logsetup import box
from cloudai.master import scheduler_stops
from cloudai.master.outage import OutageCancels
from cloudai.master.peers import WorkerPeers
from cloudai.master.stop_orders import order_pb, store_unrun_result
from cloudai.master.webhook import Webhook
from cloudai.metrics import MasterMetrics
from cloudai.store import Store, cancellations, events, tasks, workers

if TYPE_CHECKING:
    from cloudai.master.config import MasterConfig

__all__ = ["CancelOutcome", "Canceller"]

log = logging.getLogger("cloudai.master.cancel")


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    task_id: str
    success: bool
    message: str
    status: str = ""
    error_code: str = ""
    already: bool = False
    queued: bool = False

    def to_pb(self) -> types_pb2.TaskAck:
        return types_pb2.TaskAck(
            success=self.success,
            message=self.message,
            task_id=self.task_id,
            status=self.status,
            error_code=self.error_code,
            already=self.already,
            queued=self.queued,
        )


def _decide_tx(
    conn: Connection,
    task_id: str,
    req: CancelRequest,
    now: float,
    final: TaskStatus | None = TaskStatus.CANCELLED,
) -> tuple[str, Cancellation | None]:
    """The decision: ("cancelled", row) when this call cancelled it, ("already", None) when
    it was cancelled before. Raises NotFound / Conflict otherwise; writes nothing then."""
    task = tasks.get(conn, task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    if task.status is TaskStatus.CANCELLED or scheduler_stops.settle(conn, task, final):
        return "already", None
    if task.status in TERMINAL:
        raise Conflict(f"task {task_id} already {task.status.value}: nothing to cancel")
    why = req.reason or f"cancelled by {req.actor}"
    if not scheduler_stops.set_status(conn, task_id, final, now, why):  # moved: a report won
        now_status = tasks.get(conn, task_id)
        if now_status is None or now_status.status is TaskStatus.CANCELLED:
            return "already", None
        raise Conflict(f"task {task_id} already {now_status.status.value}: nothing to cancel")
    worker_id = task.worker_id  # its assignment's (tasks.get reads it alongside)
    if worker_id is None:  # never placed: this is its end, and its one result
        store_unrun_result(conn, task_id, "", "cancelled before it was placed", now)
    signal, grace = req.signal_for(task.spec.signal), req.grace_for(task.spec.grace)
    cancellations.create(
        conn, task_id, worker_id, req.actor, req.reason, req.force, grace, signal, now
    )
    how = "force (SIGKILL now)" if req.force else f"{signal}, grace {grace:g}s"
    where = f"on {worker_id}" if worker_id else "not started"
    detail = f"{how}; {where}" + (f"; reason: {req.reason}" if req.reason else "")
    events.add(conn, task_id, "cancel_requested", req.actor, detail, now)
    return "cancelled", cancellations.get(conn, task_id)


def _decide_where_tx(
    conn: Connection, task_id: str, req: CancelRequest, now: float, final: TaskStatus | None
) -> tuple[str, Cancellation | None, workers.WorkerRow | None]:
    """The decision, and the row of the worker to stop it on (None: not placed)."""
    outcome, c = _decide_tx(conn, task_id, req, now, final)
    worker = None if c is None or c.worker_id is None else workers.get(conn, c.worker_id)
    return outcome, c, worker


class Canceller:
    def __init__(
        self, store: Store, peers: WorkerPeers, config: MasterConfig, metrics: MasterMetrics
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.peers = peers
        self.config = config
        self._delivering: dict[str, asyncio.Task[bool]] = {}
        self.webhook = Webhook(config.cancel_webhook)
        self.outage = OutageCancels(config, peers, self.cancel)  # cancels without the store
        self.on_decided: Callable[[str], None] = lambda _worker_id: None  # a stop for a worker

    # ---- the decision -------------------------------------------------------------------

    async def cancel_many(self, task_ids: list[str], req: CancelRequest) -> list[CancelOutcome]:
        """Cancel each task, in parallel; one outcome per task, in order (an error in its
        outcome), each counted by outcome."""
        check(req.problems())
        return list(await asyncio.gather(*(self._counted(t, req) for t in task_ids)))

    async def _counted(self, task_id: str, req: CancelRequest) -> CancelOutcome:
        try:
            return await self.cancel_one(task_id, req)
        except CloudAIError as exc:
            return CancelOutcome(task_id, False, str(exc), error_code=exc.code.name)

    async def cancel_one(self, task_id: str, req: CancelRequest) -> CancelOutcome:
        """`cancel`, counted by outcome."""
        try:
            outcome = await self.cancel(task_id, req)
        except StoreUnavailable as exc:  # journaled if it can be (outage.py); else raises
            said = await self.outage.cancel(exc, task_id, req)
            outcome = CancelOutcome(task_id, True, said, "cancelled", queued=True)  # "queued"
        except CloudAIError as exc:
            kind = {NotFound: "not_found", Conflict: "conflict"}.get(type(exc), "error")
            self.metrics.cancels.labels(kind).inc()
            raise
        kind = "already" if outcome.already else "queued" if outcome.queued else "cancelled"
        self.metrics.cancels.labels(kind).inc()
        return outcome

    async def cancel(
        self, task_id: str, req: CancelRequest, final: TaskStatus | None = TaskStatus.CANCELLED
    ) -> CancelOutcome:
        """Cancel one task (`final`: scheduler_stops.py); NotFound / Conflict if it cannot be."""
        outcome, c, worker = await self.store.tx(_decide_where_tx, task_id, req, time.time(), final)
        if outcome == "already" or c is None:
            return CancelOutcome(
                task_id, True, f"task {task_id} already cancelled", "cancelled", already=True
            )
        failpoint("cancel.after_status_write")
        if c.worker_id is not None:
            self.on_decided(c.worker_id)
        self.webhook.notify("cancel_requested", c)
        lines = [f"Task ID: {task_id}", f"Requested by: {req.actor}"]
        if req.reason:
            lines.append(f"Reason: {req.reason}")
        if c.worker_id is None:
            log.info(box("CANCELLING TASK", [*lines, "✓ status set to 'cancelled' (not started)"]))
            self.webhook.notify("cancel_confirmed", c)  # nothing ran: nothing to remove
            return CancelOutcome(
                task_id, True, f"task {task_id} cancelled (it had not started)", "cancelled"
            )
        # Not None: an assignment's worker row (a foreign key) is never deleted.
        worker = cast(workers.WorkerRow, worker)
        lines.append(f"Target Worker: {c.worker_id} ({worker['address']})")
        lines.append("✓ status set to 'cancelled'; resources held until its container is gone")
        state = worker_state(worker["last_heartbeat"], time.time(), self.config.heartbeat_interval)
        if state == "offline":
            lines.append(f"⚠ worker is offline: stop order queued for {c.worker_id}")
            log.info(box("CANCELLING TASK", lines))
            return self._queued(c, f"worker {c.worker_id} is offline")
        delivery = self._nudge(c, c.worker_id, worker["address"])
        done, _ = await asyncio.wait({delivery}, timeout=self.config.cancel_ack_wait)
        if done and delivery.result():
            lines.append(f"✓ worker {c.worker_id} acknowledged: stopping it")
            log.info(box("CANCELLING TASK", lines))
            return CancelOutcome(
                task_id,
                True,
                f"task {task_id} cancelled; worker {c.worker_id} is stopping it",
                "cancelled",
            )
        lines.append(f"⚠ worker {c.worker_id} has not answered yet: stop order queued")
        log.info(box("CANCELLING TASK", lines))
        return self._queued(c, f"worker {c.worker_id} not reached yet")

    @staticmethod
    def _queued(c: Cancellation, why: str) -> CancelOutcome:
        said = f"task {c.task_id} cancelled; {why}: the stop is queued and reaches it by "
        said += "its next heartbeat or re-registration"
        return CancelOutcome(c.task_id, True, said, "cancelled", queued=True)

    # ---- the nudge ----------------------------------------------------------------------

    def _nudge(self, c: Cancellation, worker_id: str, address: str) -> asyncio.Task[bool]:
        running = self._delivering.get(c.task_id)
        if running is not None:
            return running
        t = asyncio.create_task(
            self._nudge_once(c, worker_id, address), name=f"nudge-stop-{c.task_id}"
        )
        self._delivering[c.task_id] = t
        t.add_done_callback(lambda _t: self._delivering.pop(c.task_id, None))
        return t

    async def _nudge_once(self, c: Cancellation, worker_id: str, address: str) -> bool:
        """One direct call under the cancel deadline, carrying the order the heartbeat would
        carry; True when the worker acknowledged it. It writes no stage: the worker's own
        updates do (`stop_updates.py`)."""
        failpoint("cancel.before_worker_call")
        try:
            await self.peers.cancel(
                worker_id, address, order_pb(c), timeout=self.config.cancel_deadline
            )
        except NotFound:
            # The worker does not hold it: it never arrived, or it ended meanwhile. The
            # worker remembers the order (so it never starts it) and says so in an update.
            return True
        except CloudAIError as exc:
            await self.store.tx(self._attempt_tx, c, str(exc))
            log.warning(
                box(
                    "CANCELLING TASK",
                    [
                        f"Task ID: {c.task_id}",
                        f"Target Worker: {worker_id} ({address})",
                        f"✗ stop order not delivered: {exc}",
                        "⚠ status stays 'cancelled'; the next heartbeat reply carries the order",
                    ],
                )
            )
            return False
        failpoint("cancel.after_worker_ack")
        return True

    @staticmethod
    def _attempt_tx(conn: Connection, c: Cancellation, error: str) -> None:
        cancellations.mark_attempt(conn, c.task_id, error)
        events.add(conn, c.task_id, "stop_not_delivered", "master", error[:500], time.time())

    async def close(self) -> None:
        pending = list(self._delivering.values())
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.outage.stop()
        await self.webhook.close()
