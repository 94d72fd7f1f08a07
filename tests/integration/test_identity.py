"""The cluster identity, in-process over real gRPC (process runtime): a worker refuses a
master started on another store and keeps its tasks; a master that has no record of a task a
worker runs leaves it running."""

from __future__ import annotations

import logging
import pathlib

import pytest

from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.store import Store, identity, workers
from tests.cluster import LocalCluster
from tests.helpers import eventually
from tests.invariants import check_invariants

SPEC = TaskSpec(
    image="busybox",
    command=("sh", "-c", "echo ready; sleep 120"),
    resources=Resources(cpu=0.5, mem_gb=0.1),
)


def refused(cluster: LocalCluster, worker_id: str) -> float:
    return float(cluster.workers[worker_id].metrics.masters_refused._value.get())


def test_a_store_keeps_one_cluster_id(store_url: str, tmp_path: pathlib.Path) -> None:
    url = store_url
    first = Store(url)
    made = first.tx_sync(identity.ensure, 1.0)
    assert made.startswith("cluster-") and first.tx_sync(identity.ensure, 2.0) == made
    first.close()
    again = Store(url)  # a restart on the same store: the same cluster
    assert again.tx_sync(identity.ensure, 3.0) == made
    again.close()
    other = Store(f"sqlite:///{tmp_path / 'b.db'}")  # an empty store: another cluster
    assert other.tx_sync(identity.ensure, 1.0) != made
    other.close()


def test_worker_refuses_a_master_on_another_store_and_keeps_its_task(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    store_a, store_b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    c = LocalCluster(store_a, tmp_path)
    try:
        worker = c.add_worker("w1")
        cluster_a = c.master[0].cluster_id
        assert worker.link.cluster_id == cluster_a  # learnt at its first registration
        assert (tmp_path / "worker-w1" / "cluster_id").read_text().strip() == cluster_a
        task = c.client.submit(SPEC)
        (handle,) = eventually(lambda: c.loop.run(worker.runtime.list()), what="the task")

        c.stop_master()
        c.db_url = store_b  # a forgotten --db: an empty store, another cluster
        c.start_master()
        eventually(lambda: refused(c, "w1") >= 5, what="the worker to refuse the new master")
        assert c.loop.run(worker.runtime.is_running(handle)), "the worker killed its task"
        assert c.client.list_workers() == []  # refused before anything was written
        assert c.master[0].metrics.workers_refused._value.get() >= 5
        said = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert any(
            "REFUSED master" in (m := r.getMessage()) and cluster_a in m and "1 task(s)" in m
            for r in said
        ), [r.getMessage() for r in said]
        assert any("belongs to cluster" in r.getMessage() for r in said)  # the master's side

        c.stop_master()
        c.db_url = store_a  # the right master is back
        c.start_master()
        eventually(
            lambda: (
                c.client.get_task(task.task_id).worker_id == "w1"
                and any(w.state == "healthy" for w in c.client.list_workers())
            ),
            what="the worker to reconnect",
        )
        before = refused(c, "w1")
        beats = worker.metrics.heartbeats.labels("ok")._value.get()
        eventually(
            lambda: worker.metrics.heartbeats.labels("ok")._value.get() >= beats + 5,
            what="heartbeats accepted by the right master",
        )
        assert refused(c, "w1") == before
        assert c.client.get_task(task.task_id).status.value == "running"
        assert c.loop.run(worker.runtime.is_running(handle))
        check_invariants(c.master[0].store, None, ["w1"], acknowledged=[task.task_id])
        c.client.cancel(task.task_id)
        c.wait_status(task.task_id, "cancelled")
    finally:
        c.close()


def test_a_task_the_store_does_not_know_is_left_running(tmp_path: pathlib.Path) -> None:
    """Registration and heartbeats carrying a task the store has no row for get no stop order
    for it (one that is terminal or placed elsewhere still does: tests/integration/test_cancel)."""
    c = LocalCluster(f"sqlite:///{tmp_path / 'a.db'}", tmp_path)
    try:
        cluster = c.master[0]
        orders = c.loop.run(
            cluster.register_worker(
                "w9", "127.0.0.1:1", Resources(2, 4), "process", ["task-1-unknown"]
            )
        )
        assert orders == []
        known, orders = c.loop.run(cluster.heartbeat("w9", ["task-1-unknown"], []))
        assert known and orders == []
        assert cluster.metrics.unknown_tasks._value.get() == 1  # said once
        assert cluster.store.tx_sync(workers.get, "w9") is not None
    finally:
        c.close()
