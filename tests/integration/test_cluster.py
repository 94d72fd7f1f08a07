"""A master and two workers in-process over real gRPC, on the process runtime."""

from __future__ import annotations

import pathlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.errors import Conflict, InvalidArgument, NoCapacity, NotFound
from cloudai.store import Store, results
from tests.cluster import LocalCluster
from tests.helpers import eventually


def spec(*command: str, cpu: float = 0.5, mem: float = 0.1, worker: str = "") -> TaskSpec:
    return TaskSpec(
        image="busybox", command=command, resources=Resources(cpu=cpu, mem_gb=mem), worker_id=worker
    )


def gate(tmp: pathlib.Path, name: str) -> tuple[pathlib.Path, tuple[str, ...]]:
    """A command that runs until the file `name` appears: tasks end when the test says."""
    path = tmp / name
    return path, ("sh", "-c", f'while [ ! -e "{path}" ]; do sleep 0.02; done; echo released')


def test_task_completes_with_logs_and_exit_code(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec("sh", "-c", "echo hello from the task; echo oops >&2"))
    done = cluster.wait_status(task.task_id, "completed")
    assert done.exit_code == 0
    logs = b"".join(cluster.client.logs(task.task_id)).decode()
    assert "hello from the task" in logs and "oops" in logs
    kinds = [e.kind for e in done.events]
    assert kinds[:2] == ["submitted", "placed"] and kinds[-1] == "completed"
    assert done.result is not None and "hello from the task" in done.result.logs
    assert done.result.status.value == "completed" and done.result.exit_code == 0


def test_nonzero_exit_fails_with_its_code(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec("sh", "-c", "echo bad; exit 3"))
    done = cluster.wait_status(task.task_id, "failed")
    assert done.exit_code == 3
    assert "bad" in b"".join(cluster.client.logs(task.task_id)).decode()


def test_pending_until_room_frees(cluster: LocalCluster, tmp_path: pathlib.Path) -> None:
    go, cmd = gate(tmp_path, "go")
    big = [cluster.client.submit(spec(*cmd, cpu=2)) for _ in range(2)]  # fills w1 and w2
    for t in big:
        cluster.wait_status(t.task_id, "running")
    waiting = cluster.client.submit(spec("echo", "finally", cpu=2))
    assert waiting.status.value == "pending" and waiting.worker_id is None
    # Nothing frees: it stays pending across several dispatch rounds.
    workers = {w.worker_id: w for w in cluster.client.list_workers()}
    assert all(w.available.cpu == 0 for w in workers.values())
    assert cluster.client.get_task(waiting.task_id).status.value == "pending"
    go.touch()
    done = cluster.wait_status(waiting.task_id, "completed")
    assert done.worker_id in ("w1", "w2")


def test_allocation_is_the_sum_of_running_requests(
    cluster: LocalCluster, tmp_path: pathlib.Path
) -> None:
    go, cmd = gate(tmp_path, "go")
    t1 = cluster.client.submit(spec(*cmd, cpu=0.5, mem=1, worker="w1"))
    t2 = cluster.client.submit(spec(*cmd, cpu=1.0, mem=0.5, worker="w1"))
    w1 = next(w for w in cluster.client.list_workers() if w.worker_id == "w1")
    assert (w1.allocated.cpu, w1.allocated.mem_gb) == (1.5, 1.5)
    assert (w1.available.cpu, w1.available.mem_gb) == (0.5, 2.5)
    assert sorted(w1.running_tasks) == sorted([t1.task_id, t2.task_id])
    go.touch()
    for t in (t1, t2):
        cluster.wait_status(t.task_id, "completed")
    w1 = next(w for w in cluster.client.list_workers() if w.worker_id == "w1")
    assert w1.allocated == Resources() and w1.running_tasks == ()


def test_named_worker_without_room_is_refused(
    cluster: LocalCluster, tmp_path: pathlib.Path
) -> None:
    go, cmd = gate(tmp_path, "go")
    cluster.client.submit(spec(*cmd, cpu=1.5, worker="w1"))
    before = len(cluster.client.list_tasks())
    with pytest.raises(NoCapacity, match="no room"):
        cluster.client.submit(spec("true", cpu=1, worker="w1"))
    with pytest.raises(NoCapacity, match="more than worker"):
        cluster.client.submit(spec("true", cpu=3, worker="w2"))
    assert len(cluster.client.list_tasks()) == before  # nothing half-stored
    go.touch()


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (TaskSpec(image="Not A/Valid::Ref", command=("true",)), InvalidArgument, "invalid image"),
        (TaskSpec(image="", command=("true",)), InvalidArgument, "image is required"),
        (spec("true", cpu=-1), InvalidArgument, "cpu must be"),
        (spec("true", mem=float("nan")), InvalidArgument, "mem must be"),
        (spec("true", worker="nope"), NotFound, "unknown worker"),
        (spec("true", cpu=64), NoCapacity, "more than any worker"),
    ],
)
def test_bad_submissions_get_clear_errors(
    cluster: LocalCluster, bad: TaskSpec, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        cluster.client.submit(bad)
    assert cluster.client.list_tasks() == []


def test_bad_requests_get_the_right_status_codes(cluster: LocalCluster) -> None:
    with pytest.raises(NotFound, match="not found"):
        cluster.client.get_task("task-0-nope")
    with pytest.raises(InvalidArgument):
        cluster.client.get_task("")
    with pytest.raises(InvalidArgument):
        cluster.client.list_tasks(status="bogus")
    with pytest.raises(InvalidArgument):
        cluster.client.register("bad id!", "127.0.0.1:1")
    with pytest.raises(InvalidArgument):
        cluster.client.register("w9", "no-port")
    with pytest.raises(NotFound):
        cluster.client.cancel("task-0-nope")


def test_task_ids_unique_under_concurrent_submits(cluster: LocalCluster) -> None:
    with ThreadPoolExecutor(16) as pool:
        ids = list(
            pool.map(lambda _: cluster.client.submit(spec("true", cpu=0.01)).task_id, range(64))
        )
    assert len(set(ids)) == 64 and all(i.startswith("task-") for i in ids)
    for task_id in ids:
        cluster.wait_status(task_id, "completed")


def test_process_runtime_needs_a_command(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec())
    done = cluster.wait_status(task.task_id, "failed")
    assert "needs a command" in done.reason


def test_both_servers_serve_grpc_health(cluster: LocalCluster) -> None:
    channels = [cluster.channel_as_worker("w1")] + [
        cluster.channel_as_master(w) for w in cluster.workers
    ]
    for channel in channels:
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert cluster.client.health()  # the master's port for clients: TLS with the CA only


def test_manual_register_reaches_the_worker(cluster: LocalCluster) -> None:
    address = cluster.workers["w1"].link.address
    info = cluster.client.register("w1", address)
    assert info.capacity.cpu == 2 and info.state == "healthy"
    with pytest.raises(Conflict, match="not worker 'w7'"):
        cluster.client.register("w7", address)
    # An address nobody answers at is recorded, offline, with no capacity to place on.
    ghost = cluster.client.register("ghost", "127.0.0.1:9")
    assert ghost.state == "offline" and ghost.capacity.cpu == 0


def test_master_restart_while_a_task_runs(cluster: LocalCluster, tmp_path: pathlib.Path) -> None:
    go, cmd = gate(tmp_path, "go")
    task = cluster.wait_status(cluster.client.submit(spec(*cmd)).task_id, "running")
    eventually(
        lambda: task.task_id in cluster.workers[task.worker_id].supervisor.running_ids(),
        what="the worker to start the task",
    )
    cluster.stop_master()
    cluster.start_master()
    go.touch()
    done = cluster.wait_status(task.task_id, "completed")
    assert "released" in b"".join(cluster.client.logs(done.task_id)).decode()
    _assert_one_result(cluster, task.task_id)


def test_worker_retries_its_report_while_the_master_is_down(
    cluster: LocalCluster, tmp_path: pathlib.Path
) -> None:
    go, cmd = gate(tmp_path, "go")
    task = cluster.client.submit(spec(*cmd))
    worker = cluster.workers[cluster.wait_status(task.task_id, "running").worker_id]
    eventually(lambda: task.task_id in worker.supervisor.running_ids(), what="the task to start")
    cluster.stop_master()
    go.touch()
    # The task ends while the master is down; the worker keeps it (and its output) until the
    # master has acknowledged the result.
    eventually(
        lambda: worker.link.report_attempts.get(task.task_id, 0) >= 3,
        what="three failed report attempts",
    )
    assert task.task_id in worker.supervisor.running_ids()
    cluster.start_master()
    done = cluster.wait_status(task.task_id, "completed")
    assert done.exit_code == 0
    eventually(
        lambda: task.task_id not in worker.supervisor.running_ids(),
        what="the worker to forget the reported task",
    )
    _assert_one_result(cluster, task.task_id)


def _assert_one_result(cluster: LocalCluster, task_id: str) -> Any:
    store = Store(cluster.db_url)
    try:
        from sqlalchemy import func, select

        from cloudai.store.schema import results as results_table

        n = store.tx_sync(
            lambda c: c.execute(
                select(func.count()).where(results_table.c.task_id == task_id)
            ).scalar_one()
        )
        assert n == 1
        return store.tx_sync(results.get, task_id)
    finally:
        store.close()
