"""The soak's judge (bench/chaos_check.py) on hand-made snapshots: a convergence violation
counts only when it outlives its interval and no fault holds its worker; a safety violation
counts at once, whatever the faults."""

from __future__ import annotations

import time

from bench.chaos_check import MASTER, Disturbances, Judge
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.resources import Resources
from tests.invariants import Container, StoreTask

REQ = Resources(0.5, 0.25)
Snapshot = tuple[dict[str, StoreTask], list[Container]]


def running(task_id: str, worker: str = "w1") -> StoreTask:
    return StoreTask(task_id, TaskStatus.RUNNING, worker, REQ, 0)


def done(task_id: str, worker: str = "w1") -> StoreTask:
    return StoreTask(task_id, TaskStatus.COMPLETED, worker, REQ, 1)


def judge(snapshots: list[Snapshot], faults: Disturbances, acked: tuple[str, ...] = ()) -> Judge:
    """A judge that sees each snapshot in turn, then the last one for ever; the master
    answers what the store derives (the held rule always agrees)."""
    calls = {"n": 0}

    def current() -> Snapshot:
        return snapshots[min(calls["n"], len(snapshots) - 1)]

    def store() -> tuple[dict[str, StoreTask], dict[str, Resources]]:
        calls["n"] += 1
        tasks = current()[0]
        held = {"w1": Resources(), "w2": Resources()}
        for t in tasks.values():
            if t.status is TaskStatus.RUNNING and t.worker_id:
                held[t.worker_id] = held[t.worker_id] + t.request
        return tasks, held

    def engine() -> list[Container]:
        return current()[1]

    return Judge(
        store=store,
        engine=engine,
        worker_ids=("w1", "w2"),
        allocated=lambda: store()[1],
        faults=faults,
        acknowledged=lambda: list(acked),
        grace=0.5,
        poll=0.05,
    )


def orphaned(worker: str) -> Snapshot:
    """t1 completed, its container still there."""
    return {"t1": done("t1", worker)}, [Container("t1", worker, False, "c1")]


def test_an_orphan_that_outlives_its_interval_counts_once() -> None:
    j = judge([orphaned("w1")], Disturbances(grace=0.5))
    (found,) = j.check(time.monotonic())
    assert (found.rule, found.subject) == ("orphan", "t1")
    assert j.check(time.monotonic()) == []  # known already: recorded once
    assert list(j.found) == [("orphan", "t1")]


def test_a_violation_that_clears_within_its_interval_does_not_count() -> None:
    healthy: Snapshot = ({"t1": done("t1")}, [])
    j = judge([orphaned("w1"), orphaned("w1"), healthy], Disturbances(grace=0.5))
    assert j.check(time.monotonic()) == []
    assert j.found == {}


def test_an_orphan_on_a_worker_a_fault_holds_is_excused_until_it_heals() -> None:
    faults = Disturbances(grace=0.3)
    faults.begin("w2")
    j = judge([orphaned("w2")], faults)
    assert j.check(time.monotonic()) == []
    faults.end("w2")  # back: one interval to clean up, then it counts
    time.sleep(0.4)
    (found,) = j.check(time.monotonic())
    assert (found.rule, found.subject) == ("orphan", "t1")


def test_while_the_master_is_down_convergence_is_excused_but_a_lost_task_is_not() -> None:
    faults = Disturbances(grace=5)
    faults.begin(MASTER)
    no_container: Snapshot = ({"t1": running("t1")}, [])
    j = judge([no_container], faults, acked=("t1", "t9"))
    (found,) = j.check(time.monotonic())
    assert (found.rule, found.subject) == ("lost", "t9")
    assert j.excused > 0  # t1's missing container, while the master was away
