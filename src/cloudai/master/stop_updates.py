"""Worker -> master: how far a stop has got, applied to the store. The one writer of the
stop's stage columns (delivered, signalled, killed, exited, removed, stop_failed).

Each update is applied in one transaction: the task's result when it carries one (stored
once, `planner.record_result`), then one guarded UPDATE for its stage
(`store/cancellations.advance`), then the stage's audit event. An update the store has
already seen, or one for a stage the stop has passed, changes nothing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from cloudai.core.models import Cancellation
from cloudai.core.stop import STAGE_COLUMNS, StopStage
from cloudai.core.stop_update import StopUpdate
from cloudai.errors import Conflict, NotFound
from cloudai.master import planner
from cloudai.master.retries import requeue_unstarted_tx
from cloudai.master.stop_orders import store_unrun_result
from cloudai.store import cancellations, events, results

__all__ = ["EVENT_KINDS", "Applied", "apply_read_update_tx", "apply_update_tx"]

# The audit event each stage leaves (the exit's says how the stop went).
EVENT_KINDS: dict[StopStage, str] = {
    StopStage.DELIVERED: "stop_delivered",
    StopStage.SIGNALLED: "signal_sent",
    StopStage.KILLED: "killed",
    StopStage.STOP_FAILED: "stop_failed",
    StopStage.EXITED: "stopped",
    StopStage.REMOVED: "removed",
}


@dataclass(frozen=True, slots=True)
class Applied:
    """What an update changed: nothing (`advanced` False), a stage, and with it perhaps the
    end of the stop (`confirmed`: the container is gone) or its exit (`stop_seconds`, `how`)."""

    advanced: bool
    confirmed: Cancellation | None = None
    stop_seconds: float | None = None
    how: str = ""


def _advanced(c: Cancellation, u: StopUpdate, forced: bool, exit_code: int | None) -> Cancellation:
    """The row as `cancellations.advance` left it, without reading it again."""
    changes: dict[str, Any] = {}
    if u.stage is StopStage.STOP_FAILED:
        changes["stop_error"] = (u.detail or "stop failed")[:2000]
    else:
        changes[STAGE_COLUMNS[u.stage]] = u.at
        if exit_code is not None and u.stage is StopStage.EXITED:
            changes["exit_code"] = exit_code
    if forced:
        changes["forced"] = True
    return dataclasses.replace(c, **changes)


def _how(c: Cancellation) -> str:
    if c.signal_at is None and c.killed_at is None and not c.stop_error:
        return "already stopped"
    return "forced (SIGKILL)" if c.forced else f"graceful ({c.stop_signal})"


def apply_update_tx(conn: Connection, u: StopUpdate, now: float) -> Applied:
    """Apply one worker's update (validated and bounded by the caller)."""
    return apply_read_update_tx(conn, u, now, cancellations.get(conn, u.task_id))


def apply_read_update_tx(
    conn: Connection, u: StopUpdate, now: float, c: Cancellation | None
) -> Applied:
    """`apply_update_tx`, with the task's cancellation as this transaction read it."""
    if c is None and u.result is not None:
        # A stop the master ordered without a cancel (a task it has as ended, or as placed
        # elsewhere: "not yours"): the result is a report like any other, kept as an event.
        planner.record_result(conn, u.result, now)
        return Applied(False)
    if c is None:
        raise NotFound(f"task {u.task_id} has no cancellation")
    if c.worker_id != u.worker_id:
        raise Conflict(f"task {u.task_id} is on {c.worker_id!r}, not {u.worker_id[:64]!r}")
    if u.result is not None:
        planner.record_result(conn, u.result, now)  # once per task, whatever the stage says
    forced = u.stage is StopStage.KILLED or (
        u.stage is StopStage.SIGNALLED and c.stop_signal == "SIGKILL"
    )
    exit_code = u.result.exit_code if u.result is not None else None
    if not cancellations.advance(
        conn, u.task_id, u.stage, u.at, error=u.detail, forced=forced, exit_code=exit_code
    ):
        return Applied(False)
    after = _advanced(c, u, forced, exit_code)
    detail = u.detail
    if u.stage is StopStage.EXITED:
        took = max(u.at - c.requested_at, 0.0)
        code = "none" if after.exit_code is None else str(after.exit_code)
        how = _how(after)
        detail = f"{how}; exit code {code}; stopped {took:.2f}s after the request"
        if after.stop_error:
            detail += f"; {after.stop_error}"
        events.add(conn, u.task_id, EVENT_KINDS[u.stage], u.worker_id, detail, u.at)
        return Applied(True, stop_seconds=took, how="forced" if after.forced else "graceful")
    events.add(conn, u.task_id, EVENT_KINDS[u.stage], u.worker_id, detail, u.at)
    if u.stage is not StopStage.REMOVED:
        return Applied(True)
    # A worker reports a result before it removes a task; with none, the task never started
    # there (the order reached it first). A run the scheduler stopped to run again goes back
    # to the queue instead (master/retries.py).
    unrun = results.get(conn, u.task_id) is None
    if unrun and not requeue_unstarted_tx(conn, u.task_id, u.worker_id, now):
        why = f"cancelled before it started on {u.worker_id}"
        store_unrun_result(conn, u.task_id, u.worker_id, why, now)
    return Applied(True, confirmed=after)
