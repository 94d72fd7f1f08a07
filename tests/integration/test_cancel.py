"""Cancellation over real gRPC, in-process servers, process runtime: the spec's five test cases
and ten edge cases, each by name, the cancel/complete race, bulk cancel and the audit trail.
(The same behaviour on real Docker containers: tests/e2e/test_cancel_docker.py.)"""

from __future__ import annotations

import contextlib
import http.server
import json
import pathlib
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select

from cloudai.api.v1 import master_pb2_grpc
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskResult, TaskSpec
from cloudai.core.resources import Resources
from cloudai.errors import Conflict, NotFound, Unavailable
from cloudai.master.peers import CANCEL_DEADLINE
from cloudai.rpc.convert import result_to_pb
from cloudai.store import Store
from cloudai.store.schema import results as results_table
from tests.cluster import LocalCluster
from tests.helpers import eventually

LONG = (
    "sh",
    "-c",
    "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.05; done",
)


DECIDED = "cancel_requested"


def spec(*command: str, cpu: float = 0.5, worker: str = "", grace: float | None = None) -> TaskSpec:
    return TaskSpec(
        image="busybox",
        command=command or LONG,
        resources=Resources(cpu=cpu, mem_gb=0.1),
        worker_id=worker,
        grace_seconds=grace,
        owner="ann",
    )


def started(cluster: LocalCluster, task_id: str) -> str:
    """Wait until the task runs on its worker and printed 'ready'; its worker ID."""
    task = cluster.wait_status(task_id, "running")
    eventually(
        lambda: "ready" in b"".join(cluster.client.logs(task_id)).decode(),
        what=f"task {task_id} to print ready",
    )
    return str(task.worker_id)


def confirmed(cluster: LocalCluster, task_id: str) -> Any:
    """Wait until the worker confirmed the stop (removed); the task."""
    return eventually(
        lambda: (
            (t := cluster.client.get_task(task_id)).cancellation is not None
            and t.cancellation.state in ("removed", "not_started")
            and t.result is not None
            and t
        ),
        timeout=20,
        what=f"the stop of {task_id} to be confirmed",
    )


def count_results(cluster: LocalCluster, task_id: str) -> int:
    store = Store(cluster.db_url)
    try:
        return store.tx_sync(
            lambda c: c.execute(
                select(func.count()).where(results_table.c.task_id == task_id)
            ).scalar_one()
        )
    finally:
        store.close()


def held(cluster: LocalCluster, worker_id: str) -> float:
    return next(w.allocated.cpu for w in cluster.client.list_workers() if w.worker_id == worker_id)


def report_as_worker(cluster: LocalCluster, result: TaskResult) -> str:
    """Send a TaskResult the way a worker does (a late or duplicate report)."""
    with cluster.channel_as_worker(result.worker_id) as channel:
        stub = master_pb2_grpc.MasterStub(channel)
        return str(stub.ReportTaskCompletion(result_to_pb(result), timeout=10).message)


# ---- the spec's test cases -------------------------------------------------------------------


def test_spec_case1_cancel_running_task(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec())
    worker = started(cluster, task.task_id)
    message = cluster.client.cancel(task.task_id)
    assert "cancelled" in message
    assert cluster.client.get_task(task.task_id).status.value == "cancelled"
    done = confirmed(cluster, task.task_id)
    assert "got TERM" in done.result.logs  # the real logs, up to the stop
    assert done.cancellation.forced is False and done.cancellation.signal_at is not None
    eventually(
        lambda: task.task_id not in cluster.workers[worker].supervisor.running_ids(),
        what="the worker to drop the task",
    )


def test_spec_case2_cancel_completed_task(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec("sh", "-c", "echo quick"))
    cluster.wait_status(task.task_id, "completed")
    with pytest.raises(Conflict, match="already completed"):
        cluster.client.cancel(task.task_id)
    assert cluster.client.get_task(task.task_id).status.value == "completed"


def test_spec_case3_cancel_nonexistent_task(cluster: LocalCluster) -> None:
    with pytest.raises(NotFound, match="task task-999999 not found"):
        cluster.client.cancel("task-999999")


def test_spec_case4_database_updates(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec())
    started(cluster, task.task_id)
    before = time.time()
    cluster.client.cancel(task.task_id)
    done = confirmed(cluster, task.task_id)
    assert done.status.value == "cancelled" and done.completed_at >= before
    assert done.result.status.value == "cancelled"
    assert "got TERM" in done.result.logs  # not a placeholder such as "Task was cancelled"
    assert count_results(cluster, task.task_id) == 1


def test_spec_case5_worker_restart(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec(worker="w1"))
    started(cluster, task.task_id)
    cluster.stop_worker("w1")  # the process keeps running, as a container would
    restarted = cluster.add_worker("w1")
    eventually(
        lambda: task.task_id in restarted.supervisor.running_ids(), what="the task re-adopted"
    )
    cluster.client.cancel(task.task_id)  # the store says where it runs
    done = confirmed(cluster, task.task_id)
    assert done.status.value == "cancelled" and done.result.worker_id == "w1"
    eventually(lambda: not restarted.supervisor.running_ids(), what="the task to be removed")


# ---- the spec's edge cases -------------------------------------------------------------------


def test_edge1_task_not_found(cluster: LocalCluster) -> None:
    (ack,) = cluster.client.cancel_many(["task-0-nothing"])
    assert not ack.success and ack.error_code == "NOT_FOUND" and ack.exit_code == 3
    assert "not found" in ack.message


def test_edge2_worker_unreachable_queues_the_stop(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec(worker="w1"))
    started(cluster, task.task_id)
    cluster.stop_worker("w1")  # nobody listens at its address now
    t0 = time.monotonic()
    (ack,) = cluster.client.cancel_many([task.task_id])
    # Answered without waiting out the master's call to the worker: the stop is queued.
    assert time.monotonic() - t0 < CANCEL_DEADLINE / 2
    assert ack.success and ack.queued and "queued" in ack.message
    assert cluster.client.get_task(task.task_id).cancellation.state == "requested"
    restarted = cluster.add_worker("w1")  # its registration carries the stop order
    done = confirmed(cluster, task.task_id)
    assert done.status.value == "cancelled" and "got TERM" in done.result.logs
    eventually(lambda: not restarted.supervisor.running_ids(), what="the stop to finish")
    kinds = [e.kind for e in done.events]
    assert "stop_not_delivered" in kinds or "stop_delivered" in kinds


def test_edge3_container_already_stopped(cluster: LocalCluster, tmp_path: pathlib.Path) -> None:
    from cloudai.worker.orders import CancelOrder

    gate = tmp_path / "go"
    task = cluster.client.submit(
        spec("sh", "-c", f'while [ ! -e "{gate}" ]; do sleep 0.02; done; echo done', worker="w1")
    )
    worker = cluster.workers["w1"]
    eventually(lambda: task.task_id in worker.supervisor.running_ids(), what="the task to start")
    cluster.stop_master()  # the worker holds the finished task until the master acks it
    gate.touch()
    eventually(lambda: worker.link.report_attempts.get(task.task_id, 0) >= 1, what="a report")
    first = cluster.loop.run(_cancel_on_worker(worker, task.task_id, CancelOrder()))
    again = cluster.loop.run(_cancel_on_worker(worker, task.task_id, CancelOrder()))
    assert "stopping" in first and "already stopping" in again  # safe to call twice
    cluster.start_master()
    done = cluster.wait_status(task.task_id, "completed")
    assert done.exit_code == 0 and count_results(cluster, task.task_id) == 1


async def _cancel_on_worker(worker: Any, task_id: str, order: Any) -> str:
    return str(worker.supervisor.cancel(task_id, order))


def test_edge4_database_errors(pg_url: str, tmp_path: pathlib.Path) -> None:
    """The store is the decision: with the database down, a cancel fails clearly and changes
    nothing (the worker is not told); once it is back, the cancel works."""
    cluster = LocalCluster(pg_url, tmp_path)
    try:
        cluster.add_worker("w1")
        task = cluster.client.submit(spec())
        started(cluster, task.task_id)
        name = pg_url.rsplit("/", 1)[1]
        admin = pg_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        try:
            with pytest.raises(Unavailable, match="database unavailable"):
                cluster.client.cancel(task.task_id)
            assert task.task_id in cluster.workers["w1"].supervisor.running_ids()
            assert cluster.workers["w1"].supervisor.stopping_ids() == []
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        eventually(lambda: cluster.client.cancel(task.task_id), what="the cancel to work")
        assert confirmed(cluster, task.task_id).status.value == "cancelled"
    finally:
        cluster.close()


def test_edge5_worker_timeout_answers_at_once(tmp_path: pathlib.Path) -> None:
    """A worker that accepts connections but never answers (frozen): the cancel does not
    wait for the CancelTask deadline; the failed delivery is recorded, the status stays."""
    import socket

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # accepts TCP, never speaks HTTP/2: every call runs into its deadline
    cluster = LocalCluster(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, cancel_deadline=1.0)
    try:
        address = f"127.0.0.1:{hole.getsockname()[1]}"
        cluster.loop.run(
            cluster.master[0].register_worker("frozen", address, Resources(2, 4), "process")
        )
        beat = threading.Event()
        running: list[str] = []  # what the frozen worker says it runs in its heartbeats
        threading.Thread(
            target=_heartbeats, args=(cluster, "frozen", running, beat), daemon=True
        ).start()
        task = cluster.client.submit(spec(worker="frozen"))
        running.append(task.task_id)
        t0 = time.monotonic()
        (ack,) = cluster.client.cancel_many([task.task_id])
        assert time.monotonic() - t0 < CANCEL_DEADLINE / 2, "the cancel waited for the worker"
        assert ack.success and ack.queued
        shown = eventually(
            lambda: (
                (t := cluster.client.get_task(task.task_id)).cancellation.delivery_attempts >= 1
                and t
            ),
            what="the delivery to time out",
        )
        assert shown.status.value == "cancelled"
        assert "did not answer in time" in shown.cancellation.last_error
        assert any(e.kind == "stop_not_delivered" for e in shown.events)
        beat.set()
    finally:
        cluster.close()
        hole.close()


def _heartbeats(
    cluster: LocalCluster, worker_id: str, running: list[str], stop: threading.Event
) -> None:
    while not stop.is_set():
        try:
            cluster.loop.run(cluster.master[0].heartbeat(worker_id, list(running), []))
        except Exception:  # the cluster is closing
            return
        stop.wait(0.1)


def test_edge6_task_completes_during_cancellation_race_200(cluster: LocalCluster) -> None:
    """Cancel and completion race 200 times: the store decides, nothing is overwritten,
    exactly one result per task."""
    rng = random.Random(6)

    def one(i: int) -> str:
        # The task runs 0-60 ms and the cancel comes 0-80 ms after the submit: either may win.
        run_for, cancel_after = rng.random() * 0.06, rng.random() * 0.08
        task = cluster.client.submit(spec("sh", "-c", f"echo {i}; sleep {run_for:.3f}", cpu=0.05))
        time.sleep(cancel_after)
        with contextlib.suppress(Conflict):  # it completed first: one of the two outcomes
            cluster.client.cancel(task.task_id)
        return task.task_id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(200)))
    eventually(
        lambda: all(
            (t := cluster.client.get_task(i)).result is not None
            and t.status.value in ("completed", "cancelled")
            for i in ids
        ),
        timeout=60,
        what="every task to end with its result",
    )
    outcomes = {"completed": 0, "cancelled": 0}
    for task_id in ids:
        t = cluster.client.get_task(task_id)
        decided = [e.kind for e in t.events if e.kind in ("completed", "failed", DECIDED)]
        assert len(decided) == 1, (task_id, [e.kind for e in t.events])
        assert t.status.value == {"cancel_requested": "cancelled"}.get(decided[0], decided[0])
        assert count_results(cluster, task_id) == 1
        outcomes[t.status.value] += 1
    assert sum(outcomes.values()) == 200
    assert outcomes["completed"] and outcomes["cancelled"], outcomes  # both sides won some


def test_edge7_cancel_after_master_restart_uses_the_store(cluster: LocalCluster) -> None:
    """The spec's nil-map panic came from in-memory maps; the master keeps none."""
    task = cluster.client.submit(spec())
    started(cluster, task.task_id)
    cluster.stop_master()
    cluster.start_master()
    cluster.client.cancel(task.task_id)
    assert confirmed(cluster, task.task_id).status.value == "cancelled"


def test_edge8_duplicate_result_is_not_stored(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec())
    worker = started(cluster, task.task_id)
    cluster.client.cancel(task.task_id)
    done = confirmed(cluster, task.task_id)
    message = report_as_worker(
        cluster, TaskResult(task.task_id, worker, TaskStatus.CANCELLED, logs="confirmation")
    )
    assert "already stored" in message
    assert count_results(cluster, task.task_id) == 1
    after = cluster.client.get_task(task.task_id)
    assert after.result.logs == done.result.logs and "got TERM" in after.result.logs
    assert after.events[-1].kind == "late_report"


def test_edge9_cancelled_status_is_never_overwritten(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec(worker="w1"))
    started(cluster, task.task_id)
    cluster.stop_worker("w1")  # the stop stays queued
    cluster.client.cancel_many([task.task_id])
    for status in (TaskStatus.FAILED, TaskStatus.COMPLETED):
        report_as_worker(cluster, TaskResult(task.task_id, "w1", status, exit_code=1))
    t = cluster.client.get_task(task.task_id)
    assert t.status.value == "cancelled" and t.result is not None
    assert t.result.status.value == "failed"  # the first report is kept, as an account
    assert [e.kind for e in t.events][-1] == "late_report"
    assert count_results(cluster, task.task_id) == 1
    cluster.add_worker("w1")
    eventually(lambda: not cluster.workers["w1"].supervisor.running_ids(), what="the queued stop")
    assert cluster.client.get_task(task.task_id).status.value == "cancelled"


def test_edge10_resources_released_when_the_container_is_gone(cluster: LocalCluster) -> None:
    """The seed freed a cancelled task's resources at the request; its container could then run
    through its whole grace period on room given to another task. Now (core/stop.py) they are
    held until the container is gone: the task is `cancelled` at once, its room is not."""
    big = cluster.client.submit(spec(cpu=2.0, worker="w1"))
    other = cluster.client.submit(spec(cpu=2.0, worker="w2"))
    started(cluster, big.task_id)
    assert held(cluster, "w1") == pytest.approx(2.0)
    cluster.stop_worker("w1")  # its task runs on: nobody can stop it yet
    cluster.client.cancel_many([big.task_id])
    assert cluster.client.get_task(big.task_id).status.value == "cancelled"  # desired, at once
    assert held(cluster, "w1") == pytest.approx(2.0)  # still held: its process still runs
    waiting = cluster.client.submit(spec(cpu=2.0))  # fits only in the room the stop frees
    assert waiting.status.value == "pending"
    cluster.add_worker("w1")  # back: it carries out the stop, then the room is free
    placed = cluster.wait_status(waiting.task_id, "running")
    assert placed.worker_id == "w1" and held(cluster, "w1") == pytest.approx(2.0)
    assert confirmed(cluster, big.task_id).cancellation.state == "removed"
    cluster.client.cancel_many([waiting.task_id, other.task_id], force=True)
    eventually(lambda: held(cluster, "w1") == 0.0 == held(cluster, "w2"), what="all free")


# ---- beyond the spec -------------------------------------------------------------------------


def test_pending_task_is_cancelled_at_once_and_never_starts(cluster: LocalCluster) -> None:
    blocker = cluster.client.submit(spec(cpu=2.0, worker="w1"))
    blocker2 = cluster.client.submit(spec(cpu=2.0, worker="w2"))
    queued = cluster.client.submit(spec(cpu=2.0))
    assert queued.status.value == "pending"
    message = cluster.client.cancel(queued.task_id)
    assert "had not started" in message
    shown = cluster.client.get_task(queued.task_id)
    assert shown.cancellation.state == "not_started" and shown.worker_id is None
    cluster.client.cancel_many([blocker.task_id, blocker2.task_id], force=True)
    cluster.wait_status(blocker.task_id, "cancelled")
    for w in ("w1", "w2"):
        eventually(lambda w=w: not cluster.workers[w].supervisor.running_ids(), what="idle")
    assert cluster.client.get_task(queued.task_id).status.value == "cancelled"
    assert all(queued.task_id not in w.supervisor.running_ids() for w in cluster.workers.values())


def test_cancel_twice_says_already_cancelled(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec())
    started(cluster, task.task_id)
    cluster.client.cancel(task.task_id)
    before = cluster.client.get_task(task.task_id)
    (ack,) = cluster.client.cancel_many([task.task_id], reason="again")
    assert ack.success and ack.already and "already cancelled" in ack.message
    after = cluster.client.get_task(task.task_id)
    assert after.cancellation.requested_at == before.cancellation.requested_at
    assert after.cancellation.reason == before.cancellation.reason == ""


def test_force_grace_reason_and_audit_trail(cluster: LocalCluster, monkeypatch: Any) -> None:
    stubborn = ("sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.05; done")
    a = cluster.client.submit(spec(*stubborn, grace=30))
    b = cluster.client.submit(spec(*stubborn, grace=30))
    started(cluster, a.task_id)
    started(cluster, b.task_id)
    t0 = time.time()
    cluster.client.cancel_many([a.task_id], force=True, reason="runaway")
    cluster.client.cancel_many([b.task_id], grace=0.5, reason="short grace")
    fa, fb = confirmed(cluster, a.task_id), confirmed(cluster, b.task_id)
    assert fa.cancellation.force and fa.cancellation.forced and fa.cancellation.reason == "runaway"
    assert fa.cancellation.exited_at - t0 < 15  # killed at once, not after its 30 s grace
    assert fb.cancellation.grace_seconds == 0.5 and fb.cancellation.forced
    assert fb.cancellation.killed_at is not None and fb.cancellation.signal_at is not None
    assert fb.cancellation.killed_at - fb.cancellation.signal_at >= 0.5
    stopped = [e for e in fb.events if e.kind == "stopped"]
    assert len(stopped) == 1 and "forced" in stopped[0].message
    requested = next(e for e in fb.events if e.kind == "cancel_requested")
    assert "short grace" in requested.message and requested.actor == fb.cancellation.requested_by
    mine = cluster.client.list_tasks(cancelled_by=fb.cancellation.requested_by)
    assert {t.task_id for t in mine} >= {a.task_id, b.task_id}
    assert cluster.client.list_tasks(cancelled_by="nobody-else") == []


def test_bulk_cancel_is_parallel_and_answers_each(cluster: LocalCluster) -> None:
    ids = [cluster.client.submit(spec(cpu=0.1)).task_id for _ in range(12)]
    for i in ids:
        cluster.wait_status(i, "running")
    acks = cluster.client.cancel_many([*ids, "task-0-missing"], reason="bulk")
    assert [a.task_id for a in acks] == [*ids, "task-0-missing"]
    assert all(a.success for a in acks[:-1]) and acks[-1].error_code == "NOT_FOUND"
    for i in ids:
        confirmed(cluster, i)
    for w in cluster.workers.values():
        eventually(lambda w=w: not w.supervisor.running_ids(), what="every task stopped")


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def test_cancellation_webhook(tmp_path: pathlib.Path, webhook: Any) -> None:
    url, received = webhook
    cluster = LocalCluster(f"sqlite:///{tmp_path / 'm.db'}", tmp_path, cancel_webhook=url)
    try:
        cluster.add_worker("w1")
        task = cluster.client.submit(spec())
        started(cluster, task.task_id)
        cluster.client.cancel_many([task.task_id], reason="hooked")
        got = eventually(
            lambda: (
                [e["event"] for e in received if e["task_id"] == task.task_id]
                == ["cancel_requested", "cancel_confirmed"]
                and received
            ),
            what="both webhook calls",
        )
        assert got[0]["reason"] == "hooked" and got[1]["state"] == "removed"
    finally:
        cluster.close()
