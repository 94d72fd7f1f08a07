"""One store suite, two databases: every test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, inspect, select

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskResult, TaskSpec
from cloudai.core.requests import TaskFilter
from cloudai.core.resources import Resources
from cloudai.errors import Conflict, NoCapacity, NotFound
from cloudai.master import planner
from cloudai.master.planner import ReportOutcome
from cloudai.store import events, holdings, results, tasks, workers
from cloudai.store.engine import Store
from cloudai.store.schema import results as results_table
from cloudai.store.schema import tasks as tasks_table

NOW = 1_000_000.0
INTERVAL = 5.0


def add_worker(store: Store, wid: str, cpu: float = 2.0, mem: float = 4.0) -> None:
    store.tx_sync(
        workers.register_self,
        wid,
        f"127.0.0.1:{50100 + len(wid)}",
        Resources(cpu, mem),
        "docker",
        NOW,
    )


def submit(store: Store, tid: str, cpu: float = 1.0, worker: str = "") -> None:
    spec = TaskSpec(image="busybox", resources=Resources(cpu, 0.5), worker_id=worker, owner="ann")
    store.tx_sync(planner.submit, tid, spec, NOW, INTERVAL)


def status_of(store: Store, tid: str) -> TaskStatus:
    task = store.tx_sync(tasks.get, tid)
    assert task is not None
    return task.status


def count_results(store: Store, tid: str) -> int:
    return store.tx_sync(
        lambda c: c.execute(
            select(func.count()).select_from(results_table).where(results_table.c.task_id == tid)
        ).scalar_one()
    )


def test_migrations_create_every_table_and_are_idempotent(store_url: str) -> None:
    first = Store(store_url)
    first.close()
    again = Store(store_url)  # a second upgrade to head changes nothing and does not fail
    try:
        names = set(inspect(again.engine).get_table_names())
        assert {"workers", "tasks", "assignments", "results", "task_events"} <= names
        uniques = inspect(again.engine).get_unique_constraints("results")
        indexes = inspect(again.engine).get_indexes("results")
        unique_cols = [u["column_names"] for u in uniques] + [
            i["column_names"] for i in indexes if i.get("unique")
        ]
        assert ["task_id"] in unique_cols
    finally:
        again.close()


def test_task_round_trips_with_its_spec(store: Store) -> None:
    spec = TaskSpec(
        image="cloudai-test/busybox:latest",
        command=("sh", "-c", "echo hi"),
        env={"A": "1"},
        resources=Resources(0.5, 0.25, 1.0, 0),
        name="hello",
        owner="ann",
        grace_seconds=3.0,
        stop_signal="SIGINT",
    )
    store.tx_sync(tasks.insert, "t1", spec, NOW)
    task = store.tx_sync(tasks.get, "t1")
    assert task is not None
    assert task.spec == spec
    assert task.status is TaskStatus.PENDING and task.worker_id is None
    assert store.tx_sync(tasks.get, "missing") is None


def test_transition_is_compare_and_set(store: Store) -> None:
    store.tx_sync(tasks.insert, "t1", TaskSpec(image="busybox"), NOW)
    assert store.tx_sync(tasks.transition, "t1", TaskStatus.RUNNING)
    assert not store.tx_sync(tasks.transition, "t1", TaskStatus.RUNNING)  # already there
    assert store.tx_sync(tasks.transition, "t1", TaskStatus.CANCELLED)
    for dst in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.RUNNING, TaskStatus.CANCELLED):
        assert not store.tx_sync(tasks.transition, "t1", dst), dst
    assert status_of(store, "t1") is TaskStatus.CANCELLED


def test_concurrent_transitions_have_exactly_one_winner(store: Store) -> None:
    store.tx_sync(tasks.insert, "t1", TaskSpec(image="busybox"), NOW)
    store.tx_sync(tasks.transition, "t1", TaskStatus.RUNNING)
    targets = [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED] * 4
    wins: list[TaskStatus] = []
    barrier = threading.Barrier(len(targets))

    def race(dst: TaskStatus) -> None:
        barrier.wait()
        if store.tx_sync(tasks.transition, "t1", dst):
            wins.append(dst)

    threads = [threading.Thread(target=race, args=(d,)) for d in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 1
    assert status_of(store, "t1") is wins[0]


def test_results_are_stored_once(store: Store) -> None:
    store.tx_sync(tasks.insert, "t1", TaskSpec(image="busybox"), NOW)
    first = TaskResult("t1", "w1", TaskStatus.COMPLETED, logs="first", exit_code=0)
    second = TaskResult("t1", "w1", TaskStatus.FAILED, logs="second", exit_code=1)
    assert store.tx_sync(results.insert_once, first, NOW)
    assert not store.tx_sync(results.insert_once, second, NOW + 1)
    row = store.tx_sync(results.get, "t1")
    assert row is not None and row["logs"] == "first" and row["exit_code"] == 0
    assert count_results(store, "t1") == 1


def test_concurrent_placements_never_overcommit_a_worker(store: Store) -> None:
    add_worker(store, "w1", cpu=2.0, mem=100.0)
    ids = [f"t{i}" for i in range(20)]
    for tid in ids:
        submit(store, tid, cpu=1.0)
    placed: list[str] = []
    barrier = threading.Barrier(len(ids))

    def place(tid: str) -> None:
        barrier.wait()
        if store.tx_sync(planner.commit_placement, tid, "w1", Resources(1.0, 0.5), NOW, "test"):
            placed.append(tid)

    threads = [threading.Thread(target=place, args=(t,)) for t in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(placed) == 2
    held = store.tx_sync(holdings.allocated_by_worker, "w1")["w1"]
    assert held.cpu == pytest.approx(2.0) and held.mem_gb == pytest.approx(1.0)
    running = store.tx_sync(tasks.list_tasks, TaskFilter("running"))
    assert sorted(t.task_id for t in running) == sorted(placed)
    assert all(t.worker_id == "w1" for t in running)


def test_allocation_is_derived_from_running_tasks(store: Store) -> None:
    add_worker(store, "w1", cpu=4.0)
    submit(store, "a", cpu=1.0, worker="w1")
    submit(store, "b", cpu=2.0, worker="w1")
    assert store.tx_sync(holdings.allocated_by_worker, "w1")["w1"].cpu == pytest.approx(3.0)
    store.tx_sync(tasks.transition, "a", TaskStatus.COMPLETED)
    assert store.tx_sync(holdings.allocated_by_worker, "w1")["w1"].cpu == pytest.approx(2.0)
    store.tx_sync(tasks.transition, "b", TaskStatus.CANCELLED)
    assert store.tx_sync(holdings.allocated_by_worker, "w1").get("w1", Resources()).cpu == 0.0
    (w,) = store.tx_sync(planner.load_workers, NOW, INTERVAL)
    assert w.available.cpu == pytest.approx(4.0) and w.running_tasks == ()


@pytest.mark.parametrize(
    ("worker", "cpu", "error", "message"),
    [
        ("ghost", 1.0, NotFound, "unknown worker"),
        ("w1", 64.0, NoCapacity, "more than worker"),
        ("", 64.0, NoCapacity, "more than any worker"),
    ],
)
def test_rejected_submissions_store_nothing(
    store: Store, worker: str, cpu: float, error: type[Exception], message: str
) -> None:
    add_worker(store, "w1", cpu=2.0)
    with pytest.raises(error, match=message):
        submit(store, "t1", cpu=cpu, worker=worker)
    assert store.tx_sync(tasks.get, "t1") is None
    assert store.tx_sync(events.for_task, "t1") == ()


def test_named_worker_without_room_now_rolls_back(store: Store) -> None:
    add_worker(store, "w1", cpu=2.0)
    submit(store, "a", cpu=2.0, worker="w1")
    with pytest.raises(NoCapacity, match="no room"):
        submit(store, "b", cpu=1.0, worker="w1")
    assert store.tx_sync(tasks.get, "b") is None


def test_unhealthy_worker_refuses_named_tasks(store: Store) -> None:
    add_worker(store, "w1")
    spec = TaskSpec(image="busybox", resources=Resources(1.0, 0.5), worker_id="w1")
    later = NOW + 10 * INTERVAL
    with pytest.raises(Conflict, match="unhealthy"):
        store.tx_sync(planner.submit, "t1", spec, later, INTERVAL)


def test_record_result_first_report_wins(store: Store) -> None:
    add_worker(store, "w1")
    submit(store, "t1", worker="w1")
    done = TaskResult("t1", "w1", TaskStatus.COMPLETED, logs="out", exit_code=0, completed_at=NOW)
    outcome, _ = store.tx_sync(planner.record_result, done, NOW)
    assert outcome == ReportOutcome.STORED
    late = TaskResult("t1", "w1", TaskStatus.FAILED, logs="late", exit_code=9, completed_at=NOW)
    outcome, _ = store.tx_sync(planner.record_result, late, NOW + 1)
    assert outcome == ReportOutcome.DUPLICATE
    task = store.tx_sync(tasks.get, "t1", True)
    assert task.status is TaskStatus.COMPLETED and task.exit_code == 0
    assert count_results(store, "t1") == 1
    kinds = [e.kind for e in task.events]
    assert kinds == ["submitted", "placed", "completed", "late_report"]


def test_report_after_cancel_keeps_cancelled_and_fills_exit_code(store: Store) -> None:
    add_worker(store, "w1")
    submit(store, "t1", worker="w1")
    assert store.tx_sync(tasks.transition, "t1", TaskStatus.CANCELLED)
    report = TaskResult("t1", "w1", TaskStatus.COMPLETED, logs="bye", exit_code=143)
    outcome, _ = store.tx_sync(planner.record_result, report, NOW)
    assert outcome == ReportOutcome.STORED
    task = store.tx_sync(tasks.get, "t1", True)
    assert task.status is TaskStatus.CANCELLED and task.exit_code == 143
    assert task.events[-1].kind == "report"
    assert store.tx_sync(results.get, "t1")["logs"] == "bye"


def test_report_from_the_wrong_worker_or_for_unknown_task_is_refused(store: Store) -> None:
    add_worker(store, "w1")
    add_worker(store, "w2")
    submit(store, "t1", worker="w1")
    with pytest.raises(Conflict, match="assigned to"):
        store.tx_sync(
            planner.record_result, TaskResult("t1", "w2", TaskStatus.COMPLETED, exit_code=0), NOW
        )
    with pytest.raises(NotFound):
        store.tx_sync(planner.record_result, TaskResult("nope", "w1", TaskStatus.COMPLETED), NOW)
    assert status_of(store, "t1") is TaskStatus.RUNNING and count_results(store, "t1") == 0


def test_concurrent_reports_store_one_result(store: Store) -> None:
    add_worker(store, "w1")
    submit(store, "t1", worker="w1")
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def report(i: int) -> None:
        barrier.wait()
        status = TaskStatus.COMPLETED if i % 2 else TaskStatus.FAILED
        r = TaskResult("t1", "w1", status, logs=f"r{i}", exit_code=i)
        outcomes.append(store.tx_sync(planner.record_result, r, time.time())[0])

    threads = [threading.Thread(target=report, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count(ReportOutcome.STORED) == 1
    assert count_results(store, "t1") == 1
    stored = store.tx_sync(results.get, "t1")
    task = store.tx_sync(tasks.get, "t1")
    assert task.status.value == stored["status"] and task.exit_code == stored["exit_code"]


def test_worker_registration_upserts_and_touch(store: Store) -> None:
    store.tx_sync(workers.register_manual, "w1", "10.0.0.1:50052", None, "", NOW)
    row = store.tx_sync(workers.get, "w1")
    assert row["source"] == "manual" and row["cpu"] == 0.0 and row["last_heartbeat"] is None
    store.tx_sync(
        workers.register_self, "w1", "10.0.0.1:50052", Resources(8, 16, 100, 1), "docker", NOW + 1
    )
    row = store.tx_sync(workers.get, "w1")
    assert workers.capacity_of(row) == Resources(8, 16, 100, 1)
    assert row["registered_at"] == NOW  # the first registration time is kept
    assert store.tx_sync(workers.touch, "w1", NOW + 2)
    assert not store.tx_sync(workers.touch, "ghost", NOW + 2)
    assert store.tx_sync(workers.get, "w1")["last_heartbeat"] == NOW + 2


def test_list_filters_by_status_and_worker(store: Store) -> None:
    add_worker(store, "w1", cpu=8)
    add_worker(store, "w2", cpu=8)
    submit(store, "a", worker="w1")
    submit(store, "b", worker="w2")
    submit(store, "c")  # pending: no worker
    store.tx_sync(tasks.transition, "b", TaskStatus.COMPLETED)

    def ids(status: str = "", worker: str = "") -> list[str]:
        return [t.task_id for t in store.tx_sync(tasks.list_tasks, TaskFilter(status, worker))]

    assert ids() == ["a", "b", "c"]
    assert ids(status="running") == ["a"]
    assert ids(status="pending") == ["c"]
    assert ids(worker="w2") == ["b"]
    assert ids(status="running", worker="w2") == []
    assert [t.task_id for t in store.tx_sync(tasks.pending)] == ["c"]
    assert store.tx_sync(holdings.active_ids_on, "w1") == ["a"]


def test_status_column_holds_only_known_states(store: Store) -> None:
    add_worker(store, "w1")
    submit(store, "a", worker="w1")
    values = store.tx_sync(lambda c: [r[0] for r in c.execute(select(tasks_table.c.status))])
    assert set(values) <= {s.value for s in TaskStatus}
