"""The cluster's cancels: the caller's rights, then the canceller (decide, nudge), and
the workers' stop updates (master/stop_updates.py)."""

from __future__ import annotations

import time

from sqlalchemy import Connection

from cloudai.core.limits import STOP_UPDATES_MAX, ids_problems
from cloudai.core.requests import CancelRequest
from cloudai.core.stop_update import StopUpdate
from cloudai.errors import InvalidArgument, PermissionDenied, check
from cloudai.failpoints import failpoint
from cloudai.master.auth import Caller
from cloudai.master.canceller import Canceller, CancelOutcome
from cloudai.master.config import MasterConfig
from cloudai.master.dispatcher import Dispatcher
from cloudai.master.peers import WorkerPeers
from cloudai.master.stop_updates import Applied, apply_read_update_tx
from cloudai.master.task_desk import deny_tx
from cloudai.metrics import MasterMetrics
from cloudai.store import Store, assignments, cancellations, tasks

__all__ = ["CancelDesk"]


def _apply_own_update_tx(conn: Connection, update: StopUpdate, now: float) -> Applied:
    """A stop update from the worker the task is placed on (another's is refused). A stop's
    row names that worker (a run placed again forgets the row of the earlier run's stop)."""
    c = cancellations.get(conn, update.task_id)
    placed_on = c.worker_id if c is not None else assignments.worker_of(conn, update.task_id)
    if placed_on is not None and placed_on != update.worker_id:
        raise PermissionDenied(
            f"task {update.task_id} is not assigned to worker {update.worker_id[:64]!r}"
        )
    return apply_read_update_tx(conn, update, now, c)


def _apply_own_updates_tx(conn: Connection, updates: list[StopUpdate], now: float) -> list[Applied]:
    return [_apply_own_update_tx(conn, u, now) for u in updates]


class CancelDesk:
    """Cancels in, stop updates in (part of Cluster)."""

    # Set by Cluster.__init__.
    store: Store
    config: MasterConfig
    metrics: MasterMetrics
    dispatcher: Dispatcher
    peers: WorkerPeers
    canceller: Canceller

    async def cancel(
        self, task_ids: list[str], caller: Caller, req: CancelRequest
    ) -> list[CancelOutcome]:
        """Cancel what the caller may; other users' tasks get a PERMISSION_DENIED ack each.
        `req.actor` is the caller's name."""
        check(ids_problems("task_ids", task_ids), req.problems())
        with self.metrics.cancel_answer.time():
            denied = await self._not_permitted(task_ids, caller, "cancel")
            allowed = [t for t in task_ids if t not in denied]
            done = await self.canceller.cancel_many(allowed, req)
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
        return outcomes  # a stop frees room when its container exits (update_stop wakes)

    async def _not_permitted(self, task_ids: list[str], caller: Caller, action: str) -> set[str]:
        """The tasks among `task_ids` that are other users' (each refusal an audit event)."""
        if caller.admin:
            return set()
        owned = await self.store.tx(tasks.owners, task_ids)
        denied = [t for t, owner in owned.items() if owner != caller.name]
        if denied:
            await self.store.tx(deny_tx, caller, denied, action, time.time())
        return set(denied)

    async def cancel_one(self, task_id: str, caller: Caller) -> CancelOutcome:
        """The spec's CancelTask(TaskID): errors as gRPC status codes."""
        with self.metrics.cancel_answer.time():
            if await self._not_permitted([task_id], caller, "cancel"):
                raise PermissionDenied(
                    f"{caller.name} may not cancel task {task_id}: not the owner"
                )
            outcome = await self.canceller.cancel_one(task_id, CancelRequest(caller.name))
        return outcome

    async def update_stop(self, update: StopUpdate) -> bool:
        """A worker's stop update (the one channel for a stop's stages): applied once; True
        when it changed something."""
        return (await self.update_stops([update]))[0]

    async def update_stops(self, updates: list[StopUpdate]) -> list[bool]:
        """Stop updates of one worker, in order, in one transaction (all or none; a worker
        sends the stages that queued while its last call was out together): for each, True
        when it changed something."""
        if not 0 < len(updates) <= STOP_UPDATES_MAX:
            raise InvalidArgument(f"1 to {STOP_UPDATES_MAX} stop updates in one call")
        check(*(u.problems() for u in updates))
        updates = [u.bounded() for u in updates]
        await self.canceller.outage.replay()  # a stop journaled without the store goes first
        if any(u.result is not None for u in updates):  # a stop's exit carries the result
            failpoint("report.before_result_write")
        done = await self.store.tx(_apply_own_updates_tx, updates, time.time())
        for applied in done:
            if applied.stop_seconds is not None:
                self.metrics.cancel_stop.labels(applied.how).observe(applied.stop_seconds)
            if applied.confirmed is not None:
                self.canceller.webhook.notify("cancel_confirmed", applied.confirmed)
        if any(a.confirmed is not None or a.stop_seconds is not None for a in done):
            self.dispatcher.wake()  # an exit or a removal frees the task's resources
        return [a.advanced for a in done]
