"""Loose ends of "the stop as one state machine", against a real master and store: a grace of
0, a stop signal per cancel and by any name, `task ls` pages with a count of the rest,
`worker rm`, old rows' grace, and a client pointed at a worker's port."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from cloudai.client import Client
from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.errors import Conflict, InvalidArgument, NotFound, PermissionDenied, Unavailable
from cloudai.store import Store, tasks
from tests.cluster import LocalCluster
from tests.helpers import eventually

STUBBORN = ("sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.05; done")
ON_INT = ("sh", "-c", "trap 'echo got INT; exit 0' INT; echo ready; while :; do sleep 0.05; done")


def spec(*command: str, grace: float | None = None, stop_signal: str = "") -> TaskSpec:
    return TaskSpec(
        image="busybox",
        command=command,
        resources=Resources(cpu=0.1, mem_gb=0.05),
        grace_seconds=grace,
        stop_signal=stop_signal,
    )


def _ready(cluster: LocalCluster, task_id: str) -> None:
    cluster.wait_status(task_id, "running")
    eventually(
        lambda: b"ready" in b"".join(cluster.client.logs(task_id)),
        what=f"task {task_id} to print ready",
    )


def test_a_grace_of_zero_is_zero_and_not_given_is_the_default(cluster: LocalCluster) -> None:
    zero = cluster.client.submit(spec(*STUBBORN, grace=0.0))
    default = cluster.client.submit(spec(*STUBBORN))
    assert cluster.client.get_task(zero.task_id).spec.grace_seconds == 0.0
    assert cluster.client.get_task(default.task_id).spec.grace_seconds is None
    _ready(cluster, zero.task_id)
    cluster.client.cancel_many([zero.task_id, default.task_id], grace=None)
    c = cluster.client.get_task(zero.task_id).cancellation
    assert c is not None and c.grace_seconds == 0.0
    assert cluster.client.get_task(default.task_id).cancellation.grace_seconds == 10.0  # type: ignore[union-attr]
    # TERM is ignored and the grace is 0: SIGKILL follows at once.
    done = eventually(
        lambda: (t := cluster.client.get_task(zero.task_id)).cancellation.exited_at and t,  # type: ignore[union-attr]
        what="the task with grace 0 to be killed",
    )
    assert done.cancellation.forced is True and done.cancellation.killed_at is not None
    cluster.client.cancel_many([default.task_id], force=True)  # already cancelled: no-op


def test_a_stop_signal_per_cancel_by_any_name(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec(*ON_INT))
    _ready(cluster, task.task_id)
    (ack,) = cluster.client.cancel_many([task.task_id], stop_signal="int")  # the master's edge
    assert ack.success, ack.message
    c = cluster.client.get_task(task.task_id).cancellation
    assert c is not None and c.stop_signal == "SIGINT"
    done = eventually(
        lambda: (t := cluster.client.get_task(task.task_id)).result and t,
        what="the task's result after SIGINT",
    )
    assert "got INT" in done.result.logs  # type: ignore[union-attr]
    assert done.cancellation.forced is False  # type: ignore[union-attr]
    with pytest.raises(InvalidArgument, match="use one of TERM \\(15\\)"):
        cluster.client.cancel_many([task.task_id], stop_signal="SIGFOO")


def test_a_submitted_stop_signal_is_stored_by_its_one_name(cluster: LocalCluster) -> None:
    task = cluster.client.submit(spec("true", stop_signal="15"))
    assert cluster.client.get_task(task.task_id).spec.stop_signal == "SIGTERM"
    with pytest.raises(InvalidArgument, match="unknown stop signal 'TERMINATE': use one of"):
        cluster.client.submit(spec("true", stop_signal="TERMINATE"))


def test_task_pages_are_the_newest_with_a_count_of_the_rest(cluster: LocalCluster) -> None:
    ids = [cluster.client.submit(spec("true")).task_id for _ in range(5)]
    page = cluster.client.list_tasks_page(limit=2)
    assert [t.task_id for t in page.tasks] == ids[-2:]  # the newest, oldest first
    assert (page.total, page.more) == (5, 3)
    whole = cluster.client.list_tasks_page()
    assert [t.task_id for t in whole.tasks] == ids and whole.more == 0
    # A user's page counts only what the user may see; others' tasks are hidden.
    bob = cluster.user("bob")
    mine = [bob.submit(spec("true")).task_id for _ in range(3)]
    page = bob.list_tasks_page(limit=1)
    assert [t.task_id for t in page.tasks] == mine[-1:]
    assert (page.total, page.more, page.hidden) == (3, 2, 5)
    bob.close()


def test_worker_rm_forgets_an_idle_worker_and_refuses_a_busy_one(
    cluster: LocalCluster,
) -> None:
    client = cluster.client
    client.register("w9", "127.0.0.1:1")
    assert "w9" in {w.worker_id for w in client.list_workers()}
    assert client.remove_worker("w9").worker_id == "w9"
    assert "w9" not in {w.worker_id for w in client.list_workers()}
    with pytest.raises(NotFound):
        client.remove_worker("w9")
    with pytest.raises(NotFound, match="unknown worker 'w9'"):
        client.submit(TaskSpec("busybox", ("true",), worker_id="w9"))

    busy = client.submit(TaskSpec("busybox", STUBBORN, worker_id="w1"))
    cluster.wait_status(busy.task_id, "running")
    with pytest.raises(Conflict, match=f"w1 has 1 active task\\(s\\) \\({busy.task_id}\\)"):
        client.remove_worker("w1")
    bob = cluster.user("bob")
    with pytest.raises(PermissionDenied, match="worker rm is for admins only"):
        bob.remove_worker("w2")
    bob.close()

    # Once its tasks ended: removed; its finished tasks keep their history.
    client.cancel_many([busy.task_id], force=True)
    eventually(
        lambda: client.get_task(busy.task_id).cancellation.removed_at,  # type: ignore[union-attr]
        what="the cancelled task to be removed from w1",
    )
    cluster.stop_worker("w1")
    client.remove_worker("w1")
    assert "w1" not in {w.worker_id for w in client.list_workers()}
    assert client.get_task(busy.task_id).worker_id == "w1"


def test_a_removed_worker_that_still_runs_registers_again(cluster: LocalCluster) -> None:
    cluster.client.remove_worker("w2")
    eventually(
        lambda: "w2" in {w.worker_id for w in cluster.client.list_workers()},
        what="w2 to register again at its next heartbeat",
    )


def test_old_rows_grace_of_zero_still_means_the_default(store_url: str) -> None:
    """Before migration 0007, a grace of 0 meant "not given" (the default): it still does."""
    cfg = Config()
    cfg.set_main_option("script_location", str(pathlib.Path(tasks.__file__).parent / "alembic"))
    url = Store(store_url, migrate=False).url
    engine = create_engine(url)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
        conn.execute(
            text(
                "INSERT INTO tasks (task_id, name, image, command, env, req_cpu, req_mem_gb, "
                "req_storage_gb, req_gpu, owner, grace_seconds, stop_signal, pids_limit, "
                "status, reason, oom_killed, created_at) VALUES ('task-old', '', 'busybox', "
                "'[]', '{}', 1, 0.5, 0, 0, 'ann', 0, '', 0, 'completed', '', false, 1)"
            )
        )
        conn.commit()
    engine.dispose()
    store = Store(store_url)  # migrates to the newest revision
    try:
        old = store.tx_sync(tasks.get, "task-old")
        assert old is not None and old.spec.grace_seconds is None and old.spec.grace == 10.0
        store.tx_sync(tasks.insert, "task-new", TaskSpec("busybox", grace_seconds=0.0), 2.0)
        new = store.tx_sync(tasks.get, "task-new")
        assert new is not None and new.spec.grace_seconds == 0.0
    finally:
        store.close()


def test_a_client_at_a_workers_port_is_told_so(store_url: str, tmp_path: Any) -> None:
    c = LocalCluster(store_url, tmp_path, secure=False)
    try:
        c.add_worker("w1")
        not_a_master = "is not a cloudai master \\(a worker's port\\?\\)"
        with (
            Client(c.workers["w1"].link.address) as wrong,
            pytest.raises(Unavailable, match=not_a_master),
        ):
            wrong.list_workers()
    finally:
        c.close()
