"""Issue 12 on a real master and workers (process runtime): time limits, retries, priorities,
fair share and preemption, through the client API the CLI uses."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from cloudai.cli.render import task_json
from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from tests.cluster import HEARTBEAT, LocalCluster
from tests.helpers import eventually
from tests.invariants import SAFETY, find_violations, read_store

ONE_CPU = Resources(cpu=1, mem_gb=0.1)


def spec(*command: str, **kw: Any) -> TaskSpec:
    return TaskSpec(image="busybox", command=command, resources=ONE_CPU, **kw)


def gated(gate: pathlib.Path, **kw: Any) -> TaskSpec:
    """Runs until `gate` exists; a stop signal ends it at once (exit 0 on TERM)."""
    return spec(
        "sh",
        "-c",
        f"trap 'echo got TERM; exit 0' TERM; echo ready; "
        f"while [ ! -e {gate} ]; do sleep 0.05; done",
        **kw,
    )


def handles(c: LocalCluster, worker_id: str) -> set[str]:
    """The task IDs the worker's runtime still holds (its containers / process groups)."""
    return {h.task_id for h in c.loop.run(c.workers[worker_id].runtime.list())}


def results_of(c: LocalCluster, task_id: str) -> int:
    """How many results the task has, once the store's safety rules hold for every task."""
    found, held = read_store(c.db_url)
    broken = [v for v in find_violations(found, None, held, []) if v.rule in SAFETY]
    assert broken == []
    return found[task_id].results


def queue(c: LocalCluster) -> list[Any]:
    return c.client.list_tasks(status="pending")


# ---- time limits ---------------------------------------------------------------------------


def test_a_task_past_its_time_limit_ends_failed_deadline_exceeded(one_slot: LocalCluster) -> None:
    c = one_slot
    task = c.client.submit(spec("sleep", "60", timeout_seconds=2, grace_seconds=1))
    c.wait_status(task.task_id, "running")
    done = c.wait_status(task.task_id, "failed", timeout=30)
    assert done.reason == "deadline exceeded"
    kinds = [(e.kind, e.actor, e.message) for e in done.events]
    assert any(k == "cancel_requested" and "deadline exceeded" in m for k, _, m in kinds), kinds
    # Stopped the way a cancel stops it: the order, the signal, the exit, the removal.
    eventually(lambda: task.task_id not in handles(c, "w1"), what="its process group gone")
    t = eventually(
        lambda: (t := c.client.get_task(task.task_id)).result is not None and t,
        what="its result",
    )
    assert t.status.value == "failed" and t.result.status.value == "failed"
    assert t.result.error == "deadline exceeded"
    assert t.cancellation is not None and t.cancellation.requested_by == "master"
    assert results_of(c, task.task_id) == 1
    # Its room is free again.
    after = c.client.submit(spec("true"))
    c.wait_status(after.task_id, "completed")


def test_a_timeout_longer_than_the_masters_cap_is_refused_and_none_defaults_to_it(
    sqlite_url: str, tmp_path: pathlib.Path
) -> None:
    c = LocalCluster(sqlite_url, tmp_path, max_task_time=60.0)
    try:
        c.add_worker("w1", cpu=1, mem=1)
        with pytest.raises(Exception, match="longer than this master's --max-task-time 1m"):
            c.client.submit(spec("true", timeout_seconds=61))
        t = c.client.submit(spec("true"))
        assert c.client.get_task(t.task_id).spec.timeout_seconds == 60.0
    finally:
        c.close()


# ---- retries -------------------------------------------------------------------------------


def test_retries_two_on_exit_3_runs_three_times_then_fails(one_slot: LocalCluster) -> None:
    c = one_slot
    task = c.client.submit(spec("sh", "-c", "exit 3", retries=2))
    done = c.wait_status(task.task_id, "failed", timeout=40)
    assert done.attempt == 3
    assert [(a.number, a.worker_id, a.status, a.exit_code) for a in done.attempts] == [
        (1, "w1", "failed", 3),
        (2, "w1", "failed", 3),
    ]
    assert done.exit_code == 3
    runs = task_json(done)["attempts"]
    assert [(r["attempt"], r["status"], r["exit_code"]) for r in runs] == [
        (1, "failed", 3),
        (2, "failed", 3),
        (3, "failed", 3),
    ]
    assert all(r["started_at"] and r["ended_at"] for r in runs)
    # Backoff: the second retry waited at least twice as long as the first.
    a1, a2 = done.attempts
    assert (a1.ended_at or 0) < (a2.started_at or 0)
    assert sum(e.kind == "retry" for e in done.events) == 2
    # One result, the last run's; the earlier runs are attempts, never the task's status.
    assert results_of(c, task.task_id) == 1


def test_a_cancelled_task_is_never_retried(one_slot: LocalCluster, tmp_path: pathlib.Path) -> None:
    c = one_slot
    task = c.client.submit(gated(tmp_path / "never", retries=3))
    c.wait_status(task.task_id, "running")
    eventually(
        lambda: "ready" in b"".join(c.client.logs(task.task_id)).decode(),
        what="the task to start",
    )
    c.client.cancel(task.task_id)
    eventually(lambda: task.task_id not in handles(c, "w1"), what="its process group gone")
    beat = c.client.list_workers()[0].last_heartbeat or 0.0
    eventually(
        lambda: (c.client.list_workers()[0].last_heartbeat or 0) > beat + 3 * HEARTBEAT,
        what="three more heartbeats",
    )
    t = c.client.get_task(task.task_id)
    assert t.status.value == "cancelled" and t.attempt == 1 and t.attempts == ()
    assert not any(e.kind == "retry" for e in t.events)


def test_a_task_whose_worker_is_lost_runs_again_on_the_other_worker(
    sqlite_url: str, tmp_path: pathlib.Path
) -> None:
    c = LocalCluster(sqlite_url, tmp_path, worker_lost_after=1.5)
    lost = None
    try:
        c.add_worker("w1", cpu=1, mem=1)
        c.add_worker("w2", cpu=1, mem=1)
        c.client.drain("w2", True)  # so that the first run lands on w1
        task = c.client.submit(gated(tmp_path / "never", retries=1))
        assert c.wait_status(task.task_id, "running").worker_id == "w1"
        c.client.drain("w2", False)
        lost = c.workers["w1"]
        c.stop_worker("w1")  # no more heartbeats: its lease lapses
        t = eventually(
            lambda: (
                (t := c.client.get_task(task.task_id)).worker_id == "w2"
                and t.status.value == "running"
                and t
            ),
            timeout=30,
            what="the task to run again on w2",
        )
        assert t.attempt == 2
        (first,) = t.attempts
        assert first.worker_id == "w1" and first.status == "failed"
        assert "worker lost" in first.reason
    finally:
        if lost is not None:  # its process kept running, as a container would
            for h in c.loop.run(lost.runtime.list()):
                c.loop.run(lost.runtime.destroy(h))
        (tmp_path / "never").touch()  # and any run the list missed ends by itself
        c.close()


# ---- priorities and fair share ---------------------------------------------------------------


def test_a_higher_priority_task_submitted_later_runs_first(
    one_slot: LocalCluster, tmp_path: pathlib.Path
) -> None:
    c = one_slot
    gate = tmp_path / "free-the-slot"
    busy = c.client.submit(gated(gate))
    c.wait_status(busy.task_id, "running")
    low = c.client.submit(gated(tmp_path / "low-gate", priority=100))
    high = c.client.submit(gated(tmp_path / "high-gate", priority=900))
    q = queue(c)
    assert [(t.task_id, t.position) for t in q] == [(high.task_id, 1), (low.task_id, 2)]
    assert all(t.waiting_reason == "no worker with 1 free CPU core" for t in q), q
    gate.touch()
    c.wait_status(high.task_id, "running")
    assert c.client.get_task(low.task_id).status.value == "pending"
    (only,) = queue(c)
    assert only.task_id == low.task_id and only.position == 1
    (tmp_path / "high-gate").touch()
    c.wait_status(low.task_id, "running", "completed")
    (tmp_path / "low-gate").touch()


def test_among_equals_the_user_with_fewer_running_tasks_goes_first(
    sqlite_url: str, tmp_path: pathlib.Path
) -> None:
    c = LocalCluster(sqlite_url, tmp_path)
    try:
        c.add_worker("w1", cpu=2, mem=2)
        alice, bob, carol = c.user("alice"), c.user("bob"), c.user("carol")
        keep, free = tmp_path / "keep", tmp_path / "free"
        busy = alice.submit(gated(keep))  # alice has one running
        filler = carol.submit(gated(free))  # the other slot
        c.wait_status(busy.task_id, "running")
        c.wait_status(filler.task_id, "running")
        a1 = alice.submit(gated(keep))
        a2 = alice.submit(gated(keep))
        b1 = bob.submit(gated(keep))
        b2 = bob.submit(gated(keep))
        q = c.client.list_tasks(status="pending")
        # bob (none running) first, then turn by turn, oldest first among equals.
        assert [t.task_id for t in q] == [b1.task_id, a1.task_id, b2.task_id, a2.task_id]
        assert [t.position for t in q] == [1, 2, 3, 4]
        # A user sees only their own tasks, with their places in the whole queue.
        mine = bob.list_tasks(status="pending")
        assert [(t.task_id, t.position) for t in mine] == [(b1.task_id, 1), (b2.task_id, 3)]
        free.touch()  # one slot frees: bob's oldest gets it, not alice's older one
        c.wait_status(b1.task_id, "running")
        assert {t.task_id for t in c.client.list_tasks(status="pending")} == {
            a1.task_id,
            a2.task_id,
            b2.task_id,
        }
        keep.touch()
        for t in (a1, a2, b2):
            c.wait_status(t.task_id, "completed")
    finally:
        c.close()


def test_priority_is_validated(one_slot: LocalCluster) -> None:
    with pytest.raises(Exception, match="priority must be between 0 and 1000, got 1001"):
        one_slot.client.submit(spec("true", priority=1001))


# ---- preemption ----------------------------------------------------------------------------


def test_a_high_priority_task_preempts_a_preemptible_low_one(
    one_slot: LocalCluster, tmp_path: pathlib.Path
) -> None:
    c = one_slot
    # On TERM it takes a second to leave: its grace (5 s) lets it.
    low = c.client.submit(
        spec(
            "sh",
            "-c",
            "trap 'echo got TERM; sleep 1; exit 0' TERM; echo ready; "
            "while true; do sleep 0.05; done",
            priority=100,
            preemptible=True,
            grace_seconds=5,
        )
    )
    c.wait_status(low.task_id, "running")
    eventually(
        lambda: "ready" in b"".join(c.client.logs(low.task_id)).decode(),
        what="the low task to start",
    )
    high = c.client.submit(spec("echo", "high ran", priority=900))
    done = c.wait_status(high.task_id, "completed", timeout=30)
    victim = c.wait_status(low.task_id, "cancelled")
    assert victim.reason == f"preempted by {high.task_id}"
    cancel = eventually(
        lambda: (
            (t := c.client.get_task(low.task_id)).cancellation is not None
            and t.cancellation.exited_at is not None
            and t.cancellation
        ),
        what="the victim's stop to be recorded",
    )
    assert cancel.requested_by == "scheduler" and not cancel.forced  # its grace was honoured
    assert "got TERM" in (victim.result.logs if victim.result else "")
    # Handed over only once the victim's process had exited.
    assert done.started_at is not None and done.started_at >= cancel.exited_at


def test_a_preempted_task_with_retries_left_goes_back_to_the_queue(
    one_slot: LocalCluster, tmp_path: pathlib.Path
) -> None:
    c = one_slot
    low = c.client.submit(gated(tmp_path / "low", priority=100, preemptible=True, retries=1))
    c.wait_status(low.task_id, "running")
    high = c.client.submit(gated(tmp_path / "high", priority=900))
    c.wait_status(high.task_id, "running", timeout=30)
    t = c.wait_status(low.task_id, "pending")
    assert t.attempt == 2
    (first,) = t.attempts
    assert first.status == "cancelled" and first.reason == f"preempted by {high.task_id}"
    (tmp_path / "high").touch()
    c.wait_status(high.task_id, "completed")
    c.wait_status(low.task_id, "running", timeout=30)
    (tmp_path / "low").touch()
    assert c.wait_status(low.task_id, "completed").attempt == 2
    assert results_of(c, low.task_id) == 1


def test_a_non_preemptible_task_is_never_preempted(
    one_slot: LocalCluster, tmp_path: pathlib.Path
) -> None:
    c = one_slot
    gate = tmp_path / "gate"
    low = c.client.submit(gated(gate, priority=100))
    c.wait_status(low.task_id, "running")
    high = c.client.submit(gated(gate, priority=900))
    beat = c.client.list_workers()[0].last_heartbeat or 0.0
    eventually(
        lambda: (c.client.list_workers()[0].last_heartbeat or 0) > beat + 3 * HEARTBEAT,
        what="three more heartbeats",
    )
    assert c.client.get_task(low.task_id).status.value == "running"
    assert c.client.get_task(low.task_id).cancellation is None
    (waiting,) = queue(c)
    assert waiting.task_id == high.task_id and waiting.position == 1
    gate.touch()
    c.wait_status(high.task_id, "running", "completed")


def test_a_users_cancel_takes_over_a_preemption_under_way(
    one_slot: LocalCluster, tmp_path: pathlib.Path
) -> None:
    c = one_slot
    gate = tmp_path / "let-it-exit"
    # It ignores the stop signal until the gate opens: a preemption in its grace period.
    stubborn = spec(
        "sh",
        "-c",
        f"trap 'echo got TERM' TERM; echo ready; while [ ! -e {gate} ]; do sleep 0.05; done",
        priority=100,
        preemptible=True,
        retries=3,
        grace_seconds=600,
    )
    low = c.client.submit(stubborn)
    c.wait_status(low.task_id, "running")
    eventually(
        lambda: "ready" in b"".join(c.client.logs(low.task_id)).decode(),
        what="the low task to start",
    )
    high = c.client.submit(spec("true", priority=900))
    eventually(
        lambda: (
            (t := c.client.get_task(low.task_id)).cancellation is not None
            and t.cancellation.reason == f"preempted by {high.task_id}"
        ),
        what="the preemption to be decided",
    )
    assert c.client.get_task(low.task_id).status.value == "running"  # until its stop is done
    c.client.cancel(low.task_id)
    t = c.wait_status(low.task_id, "cancelled")
    assert t.cancellation is not None and t.cancellation.requested_by != "scheduler"
    gate.touch()
    c.wait_status(high.task_id, "completed", timeout=30)
    done = eventually(
        lambda: (t := c.client.get_task(low.task_id)).result is not None and t,
        what="the cancelled task's result",
    )
    assert done.status.value == "cancelled" and done.attempt == 1 and done.attempts == ()
    assert results_of(c, low.task_id) == 1
