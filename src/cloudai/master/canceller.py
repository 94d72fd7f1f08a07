"""Cancellation on the master: decide in the store, then get the stop to the worker.

The decision is one transaction: a compare-and-set of the task's status from `pending` or
`running` to `cancelled`, the cancellations row (who, when, why, how) and an audit event. The
task keeps its worker's resources until its container has exited (core/stop.py; they are
derived from the tasks that hold them, in store/tasks.py).

Then the stop order goes to the worker over gRPC (30 s deadline), in the background: the caller
waits only a moment for the worker's acknowledgement, so an unreachable or frozen worker never
makes a cancel hang. An order not acknowledged stays in the store and reaches the worker by
whichever comes first: a retry of the delivery, the worker's next heartbeat, or its
re-registration. The worker confirms each stage (signal sent, killed, exited, removed), so
the task shows how far the stop has got, and an unconfirmed stop stays visible.

Beside this module: `stop_orders.py` (the orders a worker is owed, a query over the store, for
heartbeat and registration replies) and `webhook.py` (each event POSTed to the operator)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from cloudai.api.v1 import types_pb2
from cloudai.core.lifecycle import TERMINAL, TaskStatus
from cloudai.core.limits import quote
from cloudai.core.models import Cancellation, TaskResult, worker_state
from cloudai.errors import CloudAIError, Conflict, InvalidArgument, NotFound, StoreUnavailable
from cloudai.failpoints import failpoint
from cloudai.logsetup import box
from cloudai.master import scheduler_stops
from cloudai.master.outage import OutageCancels
from cloudai.master.peers import WorkerPeers
from cloudai.master.stop_orders import order_pb, store_unrun_result
from cloudai.master.webhook import Webhook
from cloudai.metrics import MasterMetrics
from cloudai.store import Store, assignments, cancellations, events, tasks, workers

if TYPE_CHECKING:
    from cloudai.master.config import MasterConfig

__all__ = ["PROGRESS_STAGES", "CancelOutcome", "Canceller"]

log = logging.getLogger("cloudai.master.cancel")
PROGRESS_STAGES = ("signal_sent", "killed", "kill_failed", "removed", "remove_failed")


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
    actor: str,
    reason: str,
    force: bool,
    grace: float | None,
    now: float,
    stop_signal: str = "",
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
    why = reason or f"cancelled by {actor}"
    if not scheduler_stops.set_status(conn, task_id, final, now, why):  # moved: a report won
        now_status = tasks.get(conn, task_id)
        assert now_status is not None
        if now_status.status is TaskStatus.CANCELLED:
            return "already", None
        raise Conflict(f"task {task_id} already {now_status.status.value}: nothing to cancel")
    worker_id = assignments.worker_of(conn, task_id)
    if worker_id is None:  # never placed: this is its end, and its one result
        store_unrun_result(conn, task_id, "", "cancelled before it was placed", now)
    signal = "SIGKILL" if force else (stop_signal or task.spec.signal)
    grace_s = 0.0 if force else (task.spec.grace if grace is None else grace)
    cancellations.create(conn, task_id, worker_id, actor, reason, force, grace_s, signal, now)
    how = "force (SIGKILL now)" if force else f"{signal}, grace {grace_s:g}s"
    where = f"on {worker_id}" if worker_id else "not started"
    detail = f"{how}; {where}" + (f"; reason: {reason}" if reason else "")
    events.add(conn, task_id, "cancel_requested", actor, detail, now)
    return "cancelled", cancellations.get(conn, task_id)


class Canceller:
    def __init__(
        self, store: Store, peers: WorkerPeers, config: MasterConfig, metrics: MasterMetrics
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.peers = peers
        self.config = config
        self._delivering: dict[str, asyncio.Task[bool]] = {}
        self._next_try: dict[str, float] = {}
        self.webhook = Webhook(config.cancel_webhook)
        self.outage = OutageCancels(config, peers, self.cancel)  # cancels without the store

    # ---- the decision -------------------------------------------------------------------

    async def cancel_many(
        self,
        task_ids: list[str],
        actor: str,
        reason: str = "",
        force: bool = False,
        grace: float | None = None,
        *,
        stop_signal: str = "",
    ) -> list[CancelOutcome]:
        """Cancel each task, in parallel; one outcome per task, in order. `stop_signal` (a
        name of STOP_SIGNALS; "": each task's own) is the signal sent first."""
        if grace is not None and not 0 <= grace <= 3600:
            raise InvalidArgument(f"grace must be between 0 and 3600 seconds, got {grace:g}")
        if len(reason) > 1000:
            raise InvalidArgument("reason is longer than 1000 characters")
        return list(
            await asyncio.gather(
                *(self._cancel_one(t, actor, reason, force, grace, stop_signal) for t in task_ids)
            )
        )

    async def _cancel_one(
        self,
        task_id: str,
        actor: str,
        reason: str,
        force: bool,
        grace: float | None,
        stop_signal: str = "",
    ) -> CancelOutcome:
        try:
            return await self.cancel_one(
                task_id, actor, reason, force, grace, stop_signal=stop_signal
            )
        except CloudAIError as exc:
            return CancelOutcome(task_id, False, str(exc), error_code=exc.code.name)

    async def cancel_one(
        self,
        task_id: str,
        actor: str,
        reason: str = "",
        force: bool = False,
        grace: float | None = None,
        *,
        stop_signal: str = "",
    ) -> CancelOutcome:
        """`cancel`, counted by outcome."""
        try:
            outcome = await self.cancel(
                task_id, actor, reason, force, grace, stop_signal=stop_signal
            )
        except StoreUnavailable as exc:  # journaled if it can be (outage.py); else raises
            said = await self.outage.cancel(exc, task_id, actor, reason, force, grace, stop_signal)
            outcome = CancelOutcome(task_id, True, said, "cancelled", queued=True)  # "queued"
        except CloudAIError as exc:
            kind = {NotFound: "not_found", Conflict: "conflict"}.get(type(exc), "error")
            self.metrics.cancels.labels(kind).inc()
            raise
        kind = "already" if outcome.already else "queued" if outcome.queued else "cancelled"
        self.metrics.cancels.labels(kind).inc()
        return outcome

    async def cancel(
        self,
        task_id: str,
        actor: str,
        reason: str = "",
        force: bool = False,
        grace: float | None = None,
        *,
        stop_signal: str = "",
        final: TaskStatus | None = TaskStatus.CANCELLED,
    ) -> CancelOutcome:
        """Cancel one task (`final`: scheduler_stops.py); NotFound / Conflict if it cannot be."""
        outcome, c = await self.store.tx(
            _decide_tx, task_id, actor, reason, force, grace, time.time(), stop_signal, final
        )
        if outcome == "already" or c is None:
            return CancelOutcome(
                task_id, True, f"task {task_id} already cancelled", "cancelled", already=True
            )
        failpoint("cancel.after_status_write")
        self.webhook.notify("cancel_requested", c)
        lines = [f"Task ID: {task_id}", f"Requested by: {actor}"]
        if reason:
            lines.append(f"Reason: {reason}")
        if c.worker_id is None:
            log.info(box("CANCELLING TASK", [*lines, "✓ status set to 'cancelled' (not started)"]))
            return CancelOutcome(
                task_id, True, f"task {task_id} cancelled (it had not started)", "cancelled"
            )
        worker = await self.store.tx(workers.get, c.worker_id)
        assert worker is not None
        lines.append(f"Target Worker: {c.worker_id} ({worker['address']})")
        lines.append("✓ status set to 'cancelled'; resources held until its container is gone")
        state = worker_state(worker["last_heartbeat"], time.time(), self.config.heartbeat_interval)
        if state == "offline":
            lines.append(f"⚠ worker is offline: stop order queued for {c.worker_id}")
            log.info(box("CANCELLING TASK", lines))
            return self._queued(c, f"worker {c.worker_id} is offline")
        delivery = self._deliver(c, worker["address"])
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
        said += "retry, heartbeat or re-registration"
        return CancelOutcome(c.task_id, True, said, "cancelled", queued=True)

    # ---- delivery -----------------------------------------------------------------------

    def _deliver(self, c: Cancellation, address: str) -> asyncio.Task[bool]:
        running = self._delivering.get(c.task_id)
        if running is not None:
            return running
        t = asyncio.create_task(self._deliver_once(c, address), name=f"deliver-stop-{c.task_id}")
        self._delivering[c.task_id] = t
        t.add_done_callback(lambda _t: self._delivering.pop(c.task_id, None))
        return t

    async def _deliver_once(self, c: Cancellation, address: str) -> bool:
        """One delivery attempt under the cancel deadline; True when the worker acknowledged."""
        assert c.worker_id is not None
        failpoint("cancel.before_worker_call")
        try:
            message = await self.peers.cancel(
                c.worker_id or "", address, order_pb(c), timeout=self.config.cancel_deadline
            )
        except NotFound as exc:
            # The worker does not hold it: it never arrived, or it ended meanwhile (its
            # report says how). The worker remembers the order, so it will never start it.
            await self.store.tx(self._delivered_tx, c, f"worker does not hold it: {exc}")
            return True
        except CloudAIError as exc:
            self._next_try[c.task_id] = time.monotonic() + self.config.cancel_retry_interval
            await self.store.tx(self._attempt_tx, c, str(exc))
            log.warning(
                box(
                    "CANCELLING TASK",
                    [
                        f"Task ID: {c.task_id}",
                        f"Target Worker: {c.worker_id} ({address})",
                        f"✗ stop order not delivered: {exc}",
                        "⚠ status stays 'cancelled'; the order is queued for the worker",
                    ],
                )
            )
            return False
        failpoint("cancel.after_worker_ack")
        self._next_try.pop(c.task_id, None)
        await self.store.tx(self._delivered_tx, c, message)
        return True

    @staticmethod
    def _delivered_tx(conn: Connection, c: Cancellation, message: str) -> None:
        now = time.time()
        if cancellations.mark_delivered(conn, c.task_id, now):
            events.add(conn, c.task_id, "stop_delivered", c.worker_id or "", message, now)

    @staticmethod
    def _attempt_tx(conn: Connection, c: Cancellation, error: str) -> None:
        cancellations.mark_attempt(conn, c.task_id, error)
        events.add(conn, c.task_id, "stop_not_delivered", "master", error[:500], time.time())

    async def retry_undelivered(self) -> None:
        """Auto-retry: re-send stop orders not acknowledged yet to workers that answer
        heartbeats (the heartbeat reply carries them too; this is the faster path)."""
        now = time.monotonic()
        open_ = await self.store.tx(cancellations.undelivered)
        for c in open_:
            if c.task_id in self._delivering or self._next_try.get(c.task_id, 0) > now:
                continue
            assert c.worker_id is not None
            worker = await self.store.tx(workers.get, c.worker_id)
            if worker is None:
                continue
            state = worker_state(
                worker["last_heartbeat"], time.time(), self.config.heartbeat_interval
            )
            if state == "healthy":
                self._deliver(c, worker["address"])

    # ---- what the worker confirms -------------------------------------------------------

    async def progress(
        self, task_id: str, worker_id: str, stage: str, at: float, detail: str
    ) -> None:
        if stage not in PROGRESS_STAGES:
            raise InvalidArgument(f"unknown stop stage {quote(stage)}")
        confirmed = await self.store.tx(self._progress_tx, task_id, worker_id, stage, at, detail)
        if confirmed is not None:
            self.webhook.notify("cancel_confirmed", confirmed)

    @staticmethod
    def _progress_tx(
        conn: Connection, task_id: str, worker_id: str, stage: str, at: float, detail: str
    ) -> Cancellation | None:
        c = cancellations.get(conn, task_id)
        if c is None:
            raise NotFound(f"task {task_id} has no cancellation")
        if c.worker_id != worker_id:
            raise Conflict(f"task {task_id} is on {c.worker_id!r}, not {worker_id!r}")
        if c.delivered_at is None:  # its progress proves the order reached it
            events.add(conn, task_id, "stop_delivered", worker_id, f"confirmed by {stage}", at)
        if stage in ("kill_failed", "remove_failed"):
            cancellations.record_error(conn, task_id, detail)
            events.add(conn, task_id, stage, worker_id, detail, at)
            return None
        if cancellations.mark_stage(conn, task_id, stage, at):
            events.add(conn, task_id, stage, worker_id, detail, at)
        after = cancellations.get(conn, task_id)
        return after if stage == "removed" and after is not None else None

    @staticmethod
    def record_stop_tx(conn: Connection, result: TaskResult) -> tuple[float, str] | None:
        """The worker's cancelled result: how the stop went (in the same transaction as the
        result). An audit event says graceful or forced, time to stop and exit code."""
        c = cancellations.get(conn, result.task_id)
        stop = result.stop
        if c is None or stop is None:
            return None
        # Stages the progress reports have not recorded yet get their events here (each stage
        # is filled once, by whichever comes first).
        for at, kind, detail in (
            (None if c.delivered_at else stop.received_at, "stop_delivered", "by the result"),
            (None if c.signal_at else stop.signal_at, "signal_sent", stop.signal),
            (None if c.killed_at else stop.killed_at, "killed", "SIGKILL after the grace"),
        ):
            if at is not None:
                events.add(conn, result.task_id, kind, result.worker_id, detail, at)
        cancellations.record_exit(
            conn,
            result.task_id,
            result.exit_code,
            stop.forced,
            stop.signal_at,
            stop.killed_at,
            stop.exited_at,
            stop.error,
            stop.received_at,
        )
        took = (stop.exited_at or result.completed_at) - c.requested_at
        how = "forced (SIGKILL)" if stop.forced else f"graceful ({stop.signal})"
        if stop.signal_at is None and stop.killed_at is None and not stop.error:
            how = "already stopped"
        detail = f"{how}; exit code {result.exit_code}; stopped {took:.2f}s after the request"
        if stop.error:
            detail += f"; {stop.error}"
        events.add(conn, result.task_id, "stopped", result.worker_id, detail, time.time())
        return max(took, 0.0), "forced" if stop.forced else "graceful"

    async def close(self) -> None:
        pending = list(self._delivering.values())
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.outage.stop()
        await self.webhook.close()
