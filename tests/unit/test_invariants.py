"""The invariant checker's rules (tests/invariants.py), on hand-made snapshots: each rule
catches what it names, and a healthy snapshot passes."""

from __future__ import annotations

from cloudai.core.lifecycle import TaskStatus
from cloudai.core.resources import Resources
from tests.invariants import Container, StoreTask, Violation, find_violations

REQ = Resources(0.5, 0.25)
RUNNING, DONE, CANCELLED = TaskStatus.RUNNING, TaskStatus.COMPLETED, TaskStatus.CANCELLED


def task(
    task_id: str, status: TaskStatus, worker: str | None = "w1", results: int = 0
) -> StoreTask:
    return StoreTask(task_id, status, worker, REQ, results)


def by_id(*ts: StoreTask) -> dict[str, StoreTask]:
    return {t.task_id: t for t in ts}


def rules(found: list[Violation]) -> list[tuple[str, str]]:
    return sorted((v.rule, v.subject) for v in found)


def healthy() -> tuple[dict[str, StoreTask], list[Container], dict[str, Resources]]:
    store = by_id(
        task("t1", RUNNING), task("t2", DONE, results=1), task("t3", TaskStatus.PENDING, None)
    )
    return store, [Container("t1", "w1", True, "c1")], {"w1": REQ}


def test_a_healthy_snapshot_breaks_nothing() -> None:
    store, containers, held = healthy()
    seen: dict[str, str] = {}
    assert (
        find_violations(
            store, containers, held, ["w1"], acknowledged=["t1", "t3"], terminal_seen=seen
        )
        == []
    )
    assert seen == {"t2": "completed"}  # remembered for the next check


def test_an_acknowledged_submit_missing_from_the_store_is_lost() -> None:
    store, containers, held = healthy()
    found = find_violations(store, containers, held, ["w1"], acknowledged=["t1", "t9"])
    assert rules(found) == [("lost", "t9")]


def test_a_terminal_status_changed_since_an_earlier_check_is_overwritten() -> None:
    store, containers, held = healthy()
    seen = {"t2": "cancelled"}
    found = find_violations(store, containers, held, ["w1"], terminal_seen=seen)
    assert rules(found) == [("overwritten", "t2")]
    assert "was cancelled, now completed" in found[0].detail


def test_results_beyond_one_and_a_terminal_task_without_one() -> None:
    store = by_id(task("t1", DONE, results=2), task("t2", CANCELLED, results=0))
    found = find_violations(store, [], {}, ["w1"])
    assert rules(found) == [("no_result", "t2"), ("results", "t1")]


def test_a_running_task_needs_a_running_container_on_its_own_worker() -> None:
    store = by_id(task("t1", RUNNING), task("t2", RUNNING), task("t3", RUNNING))
    containers = [
        Container("t2", "w1", False, "c2"),  # exited, not reported yet
        Container("t3", "w2", True, "c3"),  # on another worker
    ]
    found = find_violations(store, containers, {"w1": REQ + REQ + REQ}, ["w1", "w2"])
    assert rules(found) == [
        ("no_container", "t1"),
        ("no_container", "t2"),
        ("no_container", "t3"),
        ("orphan", "t3"),
    ]


def test_a_container_of_a_finished_or_unknown_task_is_an_orphan_unless_its_worker_is_down() -> None:
    store = by_id(task("t1", DONE, results=1))
    containers = [Container("t1", "w1", False, "c1"), Container("tx", "w1", True, "c2")]
    assert rules(find_violations(store, containers, {}, ["w1"])) == [
        ("orphan", "t1"),
        ("orphan", "tx"),
    ]
    assert find_violations(store, containers, {}, ["w1"], live_workers=[]) == []


def test_containers_of_workers_not_checked_are_not_this_clusters() -> None:
    store, containers, held = healthy()
    others = [*containers, Container("t9", "elsewhere", True, "c9")]
    assert find_violations(store, others, held, ["w1"]) == []


def test_two_containers_for_one_task() -> None:
    store, _, held = healthy()
    containers = [Container("t1", "w1", True, "c1"), Container("t1", "w1", True, "c1b")]
    assert rules(find_violations(store, containers, held, ["w1"])) == [("orphan", "t1")]


def test_held_resources_must_equal_the_running_tasks_requests() -> None:
    store, containers, _ = healthy()
    found = find_violations(store, containers, {"w1": Resources(1, 0.25)}, ["w1"])
    assert rules(found) == [("held", "w1")]
    assert find_violations(store, containers, {}, ["w1"])[0].rule == "held"  # none said held


def test_a_cancelled_task_whose_stop_is_not_done_holds_its_container_and_resources() -> None:
    """A stop in its grace period, or one that failed (stop_failed): its container is not an
    orphan and its resources are held; once the stop is done, both rules apply again."""
    stopping = StoreTask("t1", CANCELLED, "w1", REQ, 0, releasing=True)
    containers = [Container("t1", "w1", True, "c1")]
    assert find_violations(by_id(stopping), containers, {"w1": REQ}, ["w1"]) == []
    found = find_violations(by_id(stopping), containers, {}, ["w1"])
    assert rules(found) == [("held", "w1")]
    done = StoreTask("t1", CANCELLED, "w1", REQ, 1)
    assert rules(find_violations(by_id(done), containers, {"w1": REQ}, ["w1"])) == [
        ("held", "w1"),
        ("orphan", "t1"),
    ]


def test_without_a_view_of_the_engine_the_container_rules_are_skipped() -> None:
    store, _, held = healthy()
    assert find_violations(store, None, held, ["w1"]) == []


def test_a_retried_task_keeps_each_earlier_run_as_an_attempt() -> None:
    store, containers, held = healthy()
    retried = StoreTask("t4", TaskStatus.PENDING, None, REQ, 0, attempt=3, attempts=(1, 2))
    assert find_violations({**store, "t4": retried}, containers, held, ["w1"]) == []
    for kept in ((1,), (1, 2, 3), ()):
        broken = StoreTask("t4", TaskStatus.PENDING, None, REQ, 0, attempt=3, attempts=kept)
        found = find_violations({**store, "t4": broken}, containers, held, ["w1"])
        assert rules(found) == [("attempts", "t4")]
