"""Cancellation end to end: real master and worker processes, real Docker, the CLI as a user
types it. Each test ends with the cluster's books checked against reality: every worker's
allocation is the sum of its running tasks' requests, and no container outlives its task."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.master.peers import CANCEL_DEADLINE
from tests.cluster import ProcCluster
from tests.helpers import TEST_IMAGE, eventually

SMALL = ("--cpu", "0.1", "--mem", "0.05")
# PID 1 with a TERM handler: it says so and exits 0.
# Slack for a loaded machine: a bound that tells a stop after its grace from no stop at all.
SLACK = 7.0
GRACEFUL = 'trap "echo got TERM; exit 0" TERM; echo ready; while true; do sleep 0.1; done'
# PID 1 that ignores SIGTERM: only SIGKILL ends it.
STUBBORN = 'trap "" TERM; echo ready; while true; do sleep 0.1; done'
# Like GRACEFUL but idle (no polling loop): 50 of these on 2 cores stay cheap.
IDLE = 'trap "exit 0" TERM; echo ready; sleep 3600 & wait'
# Events that record a status decision: the cancel itself, or a report that ended the task.
DECISION_KINDS = ("cancel_requested", "completed", "failed", "cancelled")


# ---- helpers ------------------------------------------------------------------------------


def _containers(docker: Any, task_id: str) -> list[dict[str, Any]]:
    """The containers of one task (low-level API: no inspect race with a removal)."""
    return list(docker.api.containers(all=True, filters={"label": f"cloudai.task={task_id}"}))


def _container_state(docker: Any, task_id: str) -> str | None:
    found = _containers(docker, task_id)
    return found[0]["State"] if found else None


def _ts(iso: str | None) -> float:
    assert iso, "timestamp missing"
    return dt.datetime.fromisoformat(iso).timestamp()


def _run(c: ProcCluster, script: str, *extra: str) -> str:
    out = c.cli_json("task", "run", TEST_IMAGE, "sh", "-c", script, *SMALL, *extra)
    return str(out["task_id"])


def _show(c: ProcCluster, task_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = c.cli_json("task", "show", task_id)
    return shown


def _kinds(task: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in task["events"]]


def _wait_ready(c: ProcCluster, docker: Any, task_id: str) -> None:
    """The task's container runs and its script got past installing the trap."""
    eventually(
        lambda: "ready" in c.cli("logs", task_id).stdout,
        timeout=30,
        interval=0.2,
        what=f"task {task_id} to print ready",
    )
    assert _container_state(docker, task_id) == "running"


def _wait_stopped(c: ProcCluster, docker: Any, task_id: str, timeout: float = 20) -> dict[str, Any]:
    """The stop is carried out and confirmed: result stored, container removed."""

    def done() -> dict[str, Any] | bool:
        t = _show(c, task_id)
        ok = (
            t["result"] is not None
            and t["cancellation"] is not None
            and t["cancellation"]["state"] == "removed"
            and not _containers(docker, task_id)
        )
        return t if ok else False

    task = eventually(done, timeout=timeout, interval=0.2, what=f"{task_id} stopped and removed")
    assert isinstance(task, dict)
    return task


def _cancel(c: ProcCluster, *args: str) -> tuple[Any, float]:
    """`cloudai cancel ARGS -o json`: (parsed output, wall seconds of the call)."""
    t0 = time.monotonic()
    res = c.cli("cancel", *args, "-o", "json")
    took = time.monotonic() - t0
    assert res.returncode == 0, f"cancel {args} exited {res.returncode}: {res.stderr}"
    return json.loads(res.stdout), took


def _assert_books_balance(c: ProcCluster, docker: Any) -> None:
    """Allocations equal the running tasks' requests; no container of an inactive task."""

    def balanced() -> bool:
        everything = c.cli_json("task", "ls")
        running = [t for t in everything if t["status"] == "running"]
        active = {t["task_id"] for t in everything if t["status"] in ("pending", "running")}
        want: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for t in running:
            want[t["worker_id"]][0] += t["resources"]["cpu"]
            want[t["worker_id"]][1] += t["resources"]["mem_gb"]
        for w in c.cli_json("workers"):
            cpu, mem = want[w["worker_id"]]
            got = w["allocated"]
            assert got["cpu"] == pytest.approx(cpu) and got["mem_gb"] == pytest.approx(mem), (
                f"{w['worker_id']} allocated {got}, running tasks hold cpu={cpu} mem={mem}"
            )
            assert w["available"]["cpu"] == pytest.approx(w["capacity"]["cpu"] - cpu)
        ours = {t["task_id"] for t in everything}  # other clusters may share this engine
        stray = [
            (x["Labels"]["cloudai.task"], x["State"])
            for x in docker.api.containers(all=True, filters={"label": "cloudai.task"})
            if x["Labels"]["cloudai.task"] in ours and x["Labels"]["cloudai.task"] not in active
        ]
        assert not stray, f"containers of ended tasks left: {stray}"
        return True

    eventually(balanced, timeout=30, interval=0.3, what="allocations and containers to balance")


@pytest.fixture
def cluster(
    isolated_docker_cluster: ProcCluster, docker: Any, request: pytest.FixtureRequest
) -> Iterator[ProcCluster]:
    """A master and two Docker workers (IDs unique to the test, so a parallel run on the same
    engine cannot touch its containers), with the books checked after a passing test and the
    process logs printed after a failing one."""
    docker_cluster = isolated_docker_cluster
    yield docker_cluster
    rep = getattr(request.node, "rep_call", None)
    passed = rep is not None and rep.passed
    try:
        if passed:
            _assert_books_balance(docker_cluster, docker)
    except BaseException:
        passed = False
        raise
    finally:
        if not passed:
            print(docker_cluster.logs())


# ---- the tests ----------------------------------------------------------------------------


def test_graceful_cancel_runs_the_trap_and_removes_the_container(
    cluster: ProcCluster, docker: Any
) -> None:
    tid = _run(cluster, GRACEFUL)
    _wait_ready(cluster, docker, tid)
    ack, _ = _cancel(cluster, tid, "--reason", "e2e graceful")
    assert ack["task_id"] == tid and ack["success"] is True and ack["status"] == "cancelled"
    assert ack["already"] is False
    assert _show(cluster, tid)["status"] == "cancelled"
    task = _wait_stopped(cluster, docker, tid)
    assert task["status"] == "cancelled"
    assert task["result"]["status"] == "cancelled"
    assert "got TERM" in task["result"]["logs"]
    assert task["result"]["exit_code"] == 0 and task["exit_code"] == 0
    c = task["cancellation"]
    assert c["forced"] is False and c["force"] is False and c["killed_at"] is None
    assert c["stop_signal"] == "SIGTERM" and c["reason"] == "e2e graceful"
    assert c["confirmed"] is True and c["exit_code"] == 0
    # Ended by its own exit on TERM, not by the kill that its 10 s grace would bring.
    assert c["stop_seconds"] is not None and c["stop_seconds"] < c["grace_seconds"]
    kinds = _kinds(task)
    assert kinds.count("cancel_requested") == 1 and "killed" not in kinds
    assert "signal_sent" in kinds and "stopped" in kinds and "removed" in kinds


def test_stubborn_task_is_killed_after_its_grace(cluster: ProcCluster, docker: Any) -> None:
    tid = _run(cluster, STUBBORN, "--grace", "2")
    _wait_ready(cluster, docker, tid)
    t0 = time.time()
    ack, _ = _cancel(cluster, tid)
    assert ack["success"] is True and ack["status"] == "cancelled"
    task = _wait_stopped(cluster, docker, tid)
    c = task["cancellation"]
    assert c["grace_seconds"] == 2 and c["forced"] is True
    signalled, killed, exited = _ts(c["signal_at"]), _ts(c["killed_at"]), _ts(c["exited_at"])
    # The grace is honoured (never cut short). How late the kill may come after it depends on
    # the machine's load, so the upper bound only tells "after the grace" from "never" or
    # "after the 10 s default".
    assert 2.0 <= killed - signalled < 2.0 + SLACK, (signalled, killed)
    assert 2.0 <= exited - t0 < 2.0 + SLACK, f"cancel call to exit took {exited - t0:.2f}s"
    assert 2.0 <= exited - _ts(c["requested_at"]) < 2.0 + SLACK
    assert task["result"]["status"] == "cancelled" and task["result"]["exit_code"] == 137
    kinds = eventually(
        lambda: (k := _kinds(_show(cluster, tid))) and "killed" in k and k,
        what="the killed event",
    )
    assert "signal_sent" in kinds and kinds.count("killed") == 1


def test_force_cancel_kills_at_once(cluster: ProcCluster, docker: Any) -> None:
    tid = _run(cluster, STUBBORN, "--grace", "10")
    _wait_ready(cluster, docker, tid)
    t0 = time.time()
    ack, _ = _cancel(cluster, tid, "--force")
    assert ack["success"] is True
    task = _wait_stopped(cluster, docker, tid)
    c = task["cancellation"]
    assert c["force"] is True and c["forced"] is True
    assert c["stop_signal"] == "SIGKILL" and c["grace_seconds"] == 0
    # Killed at once: well before the 10 s grace a forced stop skips.
    assert _ts(c["exited_at"]) - t0 < 10.0, f"force stop took {_ts(c['exited_at']) - t0:.2f}s"
    assert task["result"]["exit_code"] == 137


def test_cancel_on_a_frozen_worker_is_queued_and_carried_out_on_thaw(
    cluster: ProcCluster, docker: Any, docker_worker_ids: tuple[str, str]
) -> None:
    w1 = docker_worker_ids[0]
    tid = _run(cluster, GRACEFUL, "--worker", w1)
    _wait_ready(cluster, docker, tid)
    pid = cluster.workers[w1].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        ack, took = _cancel(cluster, tid)
        # Answered without waiting out the master's call to the frozen worker.
        assert took < CANCEL_DEADLINE / 2, f"cancel took {took:.2f}s with the worker frozen"
        assert ack["success"] is True and ack["queued"] is True, ack
        now = _show(cluster, tid)
        assert now["status"] == "cancelled"
        assert now["cancellation"]["state"] in ("requested", "delivered"), now["cancellation"]
        assert now["result"] is None
        assert _container_state(docker, tid) == "running"  # nobody has stopped it yet
    finally:
        os.kill(pid, signal.SIGCONT)
    task = _wait_stopped(cluster, docker, tid, timeout=20)
    assert task["status"] == "cancelled" and task["result"]["status"] == "cancelled"
    assert "got TERM" in task["result"]["logs"]
    assert task["cancellation"]["forced"] is False


def test_worker_killed_and_restarted_readopts_then_cancel_works(
    cluster: ProcCluster, docker: Any, docker_worker_ids: tuple[str, str]
) -> None:
    w1 = docker_worker_ids[0]
    tid = _run(cluster, GRACEFUL, "--worker", w1)
    _wait_ready(cluster, docker, tid)
    cid = _containers(docker, tid)[0]["Id"]
    old = cluster.workers[w1]
    old.kill()
    old.wait(10)
    assert _container_state(docker, tid) == "running"  # the task outlives its worker
    eventually(
        lambda: (
            next(w for w in cluster.cli_json("workers") if w["worker_id"] == w1)["state"]
            != "healthy"
        ),
        what="the master to notice w1 is gone",
    )
    assert _container_state(docker, tid) == "running"
    cluster.add_worker(w1)  # same ID, same port: re-adopts its container
    assert [x["Id"] for x in _containers(docker, tid)] == [cid]
    assert _container_state(docker, tid) == "running"
    assert _show(cluster, tid)["status"] == "running"
    ack, _ = _cancel(cluster, tid)
    assert ack["success"] is True
    task = _wait_stopped(cluster, docker, tid)
    assert task["status"] == "cancelled" and task["result"]["status"] == "cancelled"
    assert task["result"]["worker_id"] == w1
    assert "got TERM" in task["result"]["logs"]


def test_master_killed_mid_cancel_the_stop_still_happens_once(
    cluster: ProcCluster, docker: Any, docker_worker_ids: tuple[str, str]
) -> None:
    w1 = docker_worker_ids[0]
    tid = _run(cluster, GRACEFUL, "--worker", w1)
    _wait_ready(cluster, docker, tid)
    pid = cluster.workers[w1].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        ack, _ = _cancel(cluster, tid)
        assert ack["success"] is True and ack["queued"] is True, ack
        cluster.kill_master()
    finally:
        os.kill(pid, signal.SIGCONT)
    cluster.start_master()
    task = _wait_stopped(cluster, docker, tid, timeout=30)
    assert task["status"] == "cancelled"
    assert task["result"]["status"] == "cancelled" and "got TERM" in task["result"]["logs"]
    kinds = _kinds(task)
    # One decision, the cancel: no completed/failed/cancelled status change before or after.
    assert [k for k in kinds if k in DECISION_KINDS] == ["cancel_requested"], kinds
    assert kinds.count("report") == 1 and "late_report" not in kinds, kinds  # one result
    assert kinds.count("stopped") == 1 and kinds.count("removed") == 1, kinds


def test_bulk_cancel_all_fifty_running_tasks(
    cluster: ProcCluster, docker: Any, docker_worker_ids: tuple[str, str]
) -> None:
    spec = TaskSpec(
        image=TEST_IMAGE,
        command=("sh", "-c", IDLE),
        resources=Resources(cpu=0.05, mem_gb=0.02),
        name="bulk",
    )
    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = {t.task_id for t in pool.map(lambda _: cluster.client.submit(spec), range(50))}
    assert len(ids) == 50
    running = cluster.cli_json("task", "ls", "--status", "running")
    assert {t["task_id"] for t in running} == ids
    assert {t["worker_id"] for t in running} == set(docker_worker_ids)  # spread over both workers

    def containers_up() -> bool:
        up = {
            x["Labels"]["cloudai.task"]
            for x in docker.api.containers(filters={"label": "cloudai.task", "status": "running"})
        }
        missing = ids - up
        assert not missing, f"{len(missing)} containers not running yet"
        return True

    eventually(containers_up, timeout=90, interval=0.5, what="50 containers running")
    workers = cluster.cli_json("workers")
    assert sum(w["allocated"]["cpu"] for w in workers) == pytest.approx(50 * 0.05)

    acks, _ = _cancel(cluster, "--all", "--yes")
    assert isinstance(acks, list) and len(acks) == 50
    assert {a["task_id"] for a in acks} == ids
    assert all(a["success"] and a["status"] == "cancelled" and not a["already"] for a in acks)
    assert cluster.cli_json("task", "ls", "--status", "running") == []
    for w in cluster.cli_json("workers"):
        assert w["running_tasks"] == []  # desired: cancelled, at once
        # Actual: each task holds its share until its container is gone (core/stop.py).
        assert set(w["releasing_tasks"]) <= ids
        assert w["allocated"]["cpu"] == pytest.approx(w["releasing"]["cpu"])

    def all_gone() -> bool:
        left = {
            x["Labels"]["cloudai.task"]
            for x in docker.api.containers(all=True, filters={"label": "cloudai.task"})
        } & ids
        assert not left, f"{len(left)} containers left"
        return True

    eventually(all_gone, timeout=60, interval=0.5, what="all 50 containers removed")

    def all_released() -> bool:
        for w in cluster.cli_json("workers"):
            assert w["allocated"]["cpu"] == pytest.approx(0), w
            assert w["releasing_tasks"] == [], w
        return True

    eventually(all_released, timeout=30, interval=0.5, what="every share released")

    def all_recorded() -> bool:
        tasks = [cluster.client.get_task(t) for t in ids]  # 50 CLI calls would be slow
        assert all(t.status.value == "cancelled" for t in tasks)
        unfinished = [
            t.task_id
            for t in tasks
            if t.result is None or t.cancellation is None or t.cancellation.state != "removed"
        ]
        assert not unfinished, f"{len(unfinished)} without result/removal: {unfinished[:3]}"
        return True

    eventually(all_recorded, timeout=60, interval=0.5, what="50 cancelled results")


def test_cancel_usage_errors_and_repeats(cluster: ProcCluster, docker: Any) -> None:
    done = cluster.cli_json("task", "run", TEST_IMAGE, "sh", "-c", "echo hi", *SMALL)["task_id"]
    cluster.wait_status(done, "completed")
    res = cluster.cli("cancel", done)
    assert res.returncode == 5, (res.returncode, res.stderr)
    assert "already completed" in res.stderr and "Traceback" not in res.stderr
    assert cluster.wait_status(done, "completed")["cancellation"] is None

    res = cluster.cli("cancel", "task-0-nosuchtask")
    assert res.returncode == 3 and "not found" in res.stderr, (res.returncode, res.stderr)

    tid = _run(cluster, IDLE)
    _wait_ready(cluster, docker, tid)
    first = cluster.cli("cancel", tid)
    assert first.returncode == 0, first.stderr
    assert "already" not in first.stdout
    second = cluster.cli("cancel", tid)
    assert second.returncode == 0, second.stderr
    assert "already cancelled" in second.stdout
    again, _ = _cancel(cluster, tid)
    assert again["success"] is True and again["already"] is True
    task = _wait_stopped(cluster, docker, tid)
    assert _kinds(task).count("cancel_requested") == 1
