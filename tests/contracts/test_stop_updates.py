"""The worker's stop updates applied to each store (master/stop_updates.py): one guarded
UPDATE per stage, so a repeated or late update changes nothing."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Cancellation, TaskResult, TaskSpec
from cloudai.core.resources import Resources
from cloudai.core.stop import StopStage, can_advance, stage_of
from cloudai.core.stop_update import WORKER_STAGES, StopUpdate
from cloudai.errors import NotFound
from cloudai.master import planner
from cloudai.master.stop_updates import apply_update_tx
from cloudai.store import cancellations, events, results, tasks, workers
from cloudai.store.engine import Store
from cloudai.store.schema import cancellations as cancellations_table

NOW = 1_000_000.0
_ids = itertools.count()
# The stop's stages in their order (stop_failed beside them: it is no step forward).
_RANK = {
    StopStage.REQUESTED: 0,
    StopStage.DELIVERED: 1,
    StopStage.SIGNALLED: 2,
    StopStage.KILLED: 3,
    StopStage.STOP_FAILED: 3,
    StopStage.EXITED: 4,
    StopStage.REMOVED: 5,
}


def cancelled_task(store: Store, signal: str = "SIGTERM") -> str:
    """A task placed on w1 and cancelled: its stop is `requested`."""
    tid = f"t{next(_ids)}"
    store.tx_sync(
        workers.register_self, "w1", "127.0.0.1:1", Resources(64, 64), "process", NOW, None
    )
    spec = TaskSpec(image="busybox", resources=Resources(0.1, 0.1), owner="ann")
    store.tx_sync(planner.submit, tid, spec, NOW, 5.0)
    assert store.tx_sync(planner.commit_placement, tid, "w1", Resources(0.1, 0.1), NOW, "t")
    assert store.tx_sync(tasks.transition, tid, TaskStatus.CANCELLED)
    force = signal == "SIGKILL"
    store.tx_sync(cancellations.create, tid, "w1", "ann", "", force, 10.0, signal, NOW)
    return tid


def row(store: Store, tid: str) -> Cancellation:
    c = store.tx_sync(cancellations.get, tid)
    assert c is not None
    return c


def stage(c: Cancellation) -> StopStage:
    return stage_of(
        delivered_at=c.delivered_at,
        signal_at=c.signal_at,
        killed_at=c.killed_at,
        exited_at=c.exited_at,
        removed_at=c.removed_at,
        stop_error=c.stop_error,
    )


def apply(store: Store, u: StopUpdate) -> bool:
    return bool(store.tx_sync(apply_update_tx, u, NOW + 100).advanced)


def n_events(store: Store, tid: str) -> int:
    return len(store.tx_sync(events.for_task, tid))


updates = st.lists(
    st.tuples(st.sampled_from(sorted(WORKER_STAGES)), st.floats(NOW, NOW + 50, allow_nan=False)),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seq=updates, again=st.data())
def test_a_repeated_or_late_update_changes_nothing(store: Store, seq: Any, again: Any) -> None:
    tid = cancelled_task(store)
    sent = [StopUpdate(tid, "w1", s, at, f"{s.value} detail") for s, at in seq]
    for u in sent:
        before = row(store, tid)
        advanced = apply(store, u)
        after = row(store, tid)
        # Forward only: the stage the row shows never goes back.
        assert _RANK[stage(after)] >= _RANK[stage(before)]
        if advanced:  # only a move the stop's table allows is written
            assert can_advance(stage(before), u.stage), (stage(before), u.stage)
        else:
            assert after == before
    settled, seen = row(store, tid), n_events(store, tid)
    # Each one again, in any order: nothing changes, no event is added.
    for u in again.draw(st.permutations(sent)):
        assert not apply(store, u)
    assert row(store, tid) == settled and n_events(store, tid) == seen


def test_the_exit_stores_the_result_once_and_the_stop_once(store: Store) -> None:
    tid = cancelled_task(store)
    result = TaskResult(tid, "w1", TaskStatus.CANCELLED, "bye", exit_code=143, completed_at=NOW)
    for s, at in ((StopStage.DELIVERED, NOW + 1), (StopStage.SIGNALLED, NOW + 2)):
        assert apply(store, StopUpdate(tid, "w1", s, at, "SIGTERM"))
    exit_ = StopUpdate(tid, "w1", StopStage.EXITED, NOW + 3, result=result)
    assert apply(store, exit_)
    assert not apply(store, exit_)  # sent again (its answer was lost): nothing new
    c = row(store, tid)
    assert c.exited_at == NOW + 3 and c.exit_code == 143 and not c.forced
    kinds = [e.kind for e in store.tx_sync(events.for_task, tid)]
    assert kinds.count("stopped") == 1 and kinds.count("signal_sent") == 1
    stored = store.tx_sync(results.get, tid)
    assert stored is not None and stored["exit_code"] == 143
    late = StopUpdate(tid, "w1", StopStage.SIGNALLED, NOW + 4, "SIGTERM")
    assert not apply(store, late) and row(store, tid) == c  # behind the exit: too late
    assert apply(store, StopUpdate(tid, "w1", StopStage.REMOVED, NOW + 5))
    assert row(store, tid).removed_at == NOW + 5


def test_a_forced_stop_is_marked_forced_by_its_signal(store: Store) -> None:
    tid = cancelled_task(store, signal="SIGKILL")
    assert apply(store, StopUpdate(tid, "w1", StopStage.SIGNALLED, NOW + 1, "SIGKILL"))
    assert row(store, tid).forced


def test_removed_without_a_result_ends_a_task_that_never_started(store: Store) -> None:
    tid = cancelled_task(store)
    assert apply(store, StopUpdate(tid, "w1", StopStage.REMOVED, NOW + 1, "not on w1"))
    stored = store.tx_sync(results.get, tid)
    assert stored is not None and "before it started" in stored["error"]


def test_the_result_of_a_stop_without_a_cancel_is_kept_as_a_report(store: Store) -> None:
    """A task the master ordered stopped as "not yours" (it has it as ended): no cancellation,
    but the worker's result is still a report, kept once; an update without one is refused."""
    tid = cancelled_task(store)
    store.tx_sync(lambda conn: conn.execute(cancellations_table.delete()))
    result = TaskResult(tid, "w1", TaskStatus.CANCELLED, "late", exit_code=137, completed_at=NOW)
    assert not apply(store, StopUpdate(tid, "w1", StopStage.EXITED, NOW + 1, result=result))
    stored = store.tx_sync(results.get, tid)
    assert stored is not None and stored["exit_code"] == 137
    with pytest.raises(NotFound):
        apply(store, StopUpdate(tid, "w1", StopStage.REMOVED, NOW + 2))


def test_a_stop_order_names_the_run_it_stops(store: Store) -> None:
    """The order a worker gets (heartbeat reply or nudge) names the task's run, so a stop that
    reaches the worker before the run itself refuses that run and no later one."""
    from cloudai.master.stop_orders import order_pb, stop_orders_tx
    from cloudai.store.schema import tasks as tasks_table

    tid = cancelled_task(store)
    assert row(store, tid).run == 1
    (order,) = [o for o in store.tx_sync(stop_orders_tx, "w1", []) if o.task_id == tid]
    assert order.attempt == 1 == order_pb(row(store, tid)).attempt

    def third_run(conn: Any) -> None:  # as a task placed again after two failed runs
        conn.execute(tasks_table.update().where(tasks_table.c.task_id == tid).values(attempt=3))

    store.tx_sync(third_run)
    (order,) = [o for o in store.tx_sync(stop_orders_tx, "w1", []) if o.task_id == tid]
    assert order.attempt == 3
