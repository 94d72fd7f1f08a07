"""The reaper on a real store (SQLite, then PostgreSQL): a worker's running tasks end failed
"worker lost" only when its lease has lapsed, counted from the later of its last heartbeat and
this master's start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloudai.core.lease import Lease
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.master import planner
from cloudai.master.liveness import reap_lost_workers_tx
from cloudai.store import tasks, workers
from cloudai.store.engine import Store

T0 = 1_000_000.0  # the worker's last heartbeat to the old master
LOST_AFTER = 300.0


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    s.tx_sync(workers.register_self, "w1", "127.0.0.1:50101", Resources(2, 4), "docker", T0)
    spec = TaskSpec(image="busybox", command=("sleep", "300"), worker_id="w1")
    s.tx_sync(planner.submit, "task-1", spec, T0, 5.0)
    yield s
    s.close()


def status(store: Store) -> TaskStatus:
    task = store.tx_sync(tasks.get, "task-1")
    assert task is not None
    return task.status


def test_restarted_master_reaps_only_a_full_deadline_after_its_start(store: Store) -> None:
    started = T0 + 3600  # the master was down for an hour, far longer than LOST_AFTER
    lease = Lease(LOST_AFTER, started)
    for now in (started, started + 1, started + LOST_AFTER):
        assert store.tx_sync(reap_lost_workers_tx, now, lease) == []
        assert status(store) is TaskStatus.RUNNING
    assert store.tx_sync(reap_lost_workers_tx, started + LOST_AFTER + 1, lease) == ["task-1"]
    task = store.tx_sync(tasks.get, "task-1")
    assert task is not None and task.status is TaskStatus.FAILED
    assert task.reason.startswith("worker lost")


def test_a_heartbeat_to_the_new_master_keeps_its_tasks(store: Store) -> None:
    started = T0 + 3600
    lease = Lease(LOST_AFTER, started)
    store.tx_sync(workers.touch, "w1", started + 2, None)
    assert store.tx_sync(reap_lost_workers_tx, started + LOST_AFTER + 1, lease) == []
    assert status(store) is TaskStatus.RUNNING
    assert store.tx_sync(reap_lost_workers_tx, started + LOST_AFTER + 3, lease) == ["task-1"]


def test_a_master_that_stayed_up_reaps_on_the_heartbeat_alone(store: Store) -> None:
    lease = Lease(LOST_AFTER, master_started=T0 - 10_000)
    assert store.tx_sync(reap_lost_workers_tx, T0 + LOST_AFTER, lease) == []
    assert store.tx_sync(reap_lost_workers_tx, T0 + LOST_AFTER + 1, lease) == ["task-1"]
