"""GPU assignment end to end, in one process: a master, and a process-runtime worker whose
devices are declared (`--gpu-ids`) or found by a stand-in NVML. Each task prints the devices
it was told of (CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES) and waits for a gate file."""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from cloudai.core.models import Task, TaskSpec, Worker
from cloudai.core.resources import Resources
from tests.cluster import HEARTBEAT, LocalCluster
from tests.fake_nvml import FakeNvml
from tests.helpers import eventually


@pytest.fixture
def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on every machine: devices only as declared."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


@pytest.fixture
def cluster(sqlite_url: str, tmp_path: pathlib.Path) -> Iterator[LocalCluster]:
    c = LocalCluster(sqlite_url, tmp_path)
    try:
        yield c
    finally:
        c.close()


def gpu_task(gate: pathlib.Path, gpus: int = 1, grace: float = 0.0) -> TaskSpec:
    script = (
        "trap 'echo got TERM' TERM; "
        'echo "cuda=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES"; '
        f"while [ ! -e {gate} ]; do sleep 0.05; done"
    )
    return TaskSpec(
        image="busybox",
        command=("sh", "-c", script),
        resources=Resources(cpu=0.1, mem_gb=0.1, gpu=gpus),
        grace_seconds=grace,
    )


def saw(c: LocalCluster, task_id: str) -> str:
    """What the task printed of its devices, once it has."""
    return eventually(
        lambda: next(
            (
                line
                for line in b"".join(c.client.logs(task_id)).decode().splitlines()
                if line.startswith("cuda=")
            ),
            "",
        ),
        what=f"task {task_id} to print its devices",
    )


def worker(c: LocalCluster, worker_id: str = "g1") -> Worker:
    return next(w for w in c.client.list_workers() if w.worker_id == worker_id)


def heartbeats(c: LocalCluster, n: int = 3) -> None:
    beat = worker(c).last_heartbeat or 0.0
    eventually(
        lambda: (worker(c).last_heartbeat or 0) > beat + n * HEARTBEAT,
        what=f"{n} more heartbeats",
    )


def test_two_tasks_get_different_devices_and_a_third_waits_for_one(
    cluster: LocalCluster, tmp_path: pathlib.Path, no_nvml: None
) -> None:
    c = cluster
    c.add_worker("g1", gpu_ids=("0", "1"))
    assert worker(c).capacity.gpu == 2
    gates = [tmp_path / f"gate-{i}" for i in range(3)]
    first, second = (c.client.submit(gpu_task(g)) for g in gates[:2])
    a, b = (c.wait_status(t.task_id, "running") for t in (first, second))
    assert {a.gpu_ids, b.gpu_ids} == {("0",), ("1",)}  # each its own device
    for task in (a, b):
        (dev,) = task.gpu_ids
        assert saw(c, task.task_id) == f"cuda={dev} nvidia={dev}"  # what it saw inside

    third = c.client.submit(gpu_task(gates[2]))
    heartbeats(c)
    assert c.client.get_task(third.task_id).status.value == "pending"  # no device is free
    w = worker(c)
    assert w.available.gpu == 0 and {g.task_id for g in w.gpus} == {a.task_id, b.task_id}

    gates[0].touch()  # the first ends: its device is freed, and handed to the third
    c.wait_status(a.task_id, "completed")
    t3: Task = c.wait_status(third.task_id, "running")
    assert t3.gpu_ids == a.gpu_ids
    assert saw(c, t3.task_id) == f"cuda={a.gpu_ids[0]} nvidia={a.gpu_ids[0]}"
    assert "GPU" in next(
        e.message for e in c.client.get_task(t3.task_id).events if e.kind == "placed"
    )
    for g in gates:
        g.touch()


def test_a_cancelled_task_holds_its_device_until_it_is_gone(
    cluster: LocalCluster, tmp_path: pathlib.Path, no_nvml: None
) -> None:
    c = cluster
    c.add_worker("g1", gpu_ids=("0",))
    gate = tmp_path / "gate"
    first = c.client.submit(gpu_task(gate, grace=600))  # ignores SIGTERM until the gate opens
    c.wait_status(first.task_id, "running")
    saw(c, first.task_id)
    c.client.cancel(first.task_id)
    second = c.client.submit(gpu_task(tmp_path / "gate-2"))
    heartbeats(c)
    assert c.client.get_task(second.task_id).status.value == "pending"
    assert worker(c).gpus[0].task_id == first.task_id  # still held: its process still runs
    gate.touch()
    t2 = c.wait_status(second.task_id, "running")
    assert t2.gpu_ids == ("0",)
    (tmp_path / "gate-2").touch()


def test_a_restarted_worker_keeps_its_tasks_devices(
    cluster: LocalCluster, tmp_path: pathlib.Path, no_nvml: None
) -> None:
    c = cluster
    c.add_worker("g1", gpu_ids=("0", "1"))
    gate = tmp_path / "gate"
    task = c.wait_status(c.client.submit(gpu_task(gate)).task_id, "running")
    saw(c, task.task_id)
    c.stop_worker("g1")  # its tasks keep running
    again = c.add_worker("g1", gpu_ids=("0", "1"))
    assert again.supervisor.gpus_in_use() == set(task.gpu_ids)  # re-adopted with its devices
    assert c.client.get_task(task.task_id).gpu_ids == task.gpu_ids
    other = c.wait_status(c.client.submit(gpu_task(gate)).task_id, "running")
    assert set(other.gpu_ids).isdisjoint(task.gpu_ids)
    gate.touch()
    c.wait_status(task.task_id, "completed")


def test_nvml_telemetry_and_a_busy_device_is_skipped(
    cluster: LocalCluster, tmp_path: pathlib.Path, nvml: FakeNvml
) -> None:
    c = cluster
    c.add_worker("g1")  # no --gpu-ids: NVML finds two
    w = worker(c)
    assert w.capacity.gpu == 2 and [g.gpu_id for g in w.gpus] == ["0", "1"]
    assert w.gpus[0].name == "NVIDIA Stand-in 80GB" and w.gpus[0].memory_total_mb == 81920
    nvml.use(0, 20_000, pid=999)  # something that is no task of ours holds device 0
    eventually(lambda: worker(c).gpus[0].busy, what="device 0 to be flagged busy")
    gate = tmp_path / "gate"
    one = c.wait_status(c.client.submit(gpu_task(gate)).task_id, "running")
    assert one.gpu_ids == ("1",)  # not the busy one
    two = c.client.submit(gpu_task(gate))
    heartbeats(c)
    assert c.client.get_task(two.task_id).status.value == "pending"
    nvml.use(0, 2)  # it let go
    assert c.wait_status(two.task_id, "running").gpu_ids == ("0",)
    assert not worker(c).gpus[0].busy
    gate.touch()


def test_a_freed_device_whose_memory_is_not_free_is_held(
    cluster: LocalCluster, tmp_path: pathlib.Path, nvml: FakeNvml
) -> None:
    c = cluster
    c.add_worker("g1", gpu_ids=("0",))  # declared, and NVML answers for it
    gate = tmp_path / "gate"
    first = c.wait_status(c.client.submit(gpu_task(gate)).task_id, "running")
    saw(c, first.task_id)
    nvml.use(0, 30_000, pid=4321)  # the task's memory...
    heartbeats(c, 2)
    assert not worker(c).gpus[0].busy  # ...is its own while it runs
    second = c.client.submit(gpu_task(tmp_path / "gate-2"))
    gate.touch()  # it exits, but its memory is not given back
    c.wait_status(first.task_id, "completed")
    # Checked before the end was reported: the device was never handed on.
    assert worker(c).gpus[0].busy
    heartbeats(c)
    assert c.client.get_task(second.task_id).status.value == "pending"
    nvml.use(0, 2)  # the driver frees it at last
    assert c.wait_status(second.task_id, "running").gpu_ids == ("0",)
    (tmp_path / "gate-2").touch()


def test_workers_lists_devices_through_the_client(
    cluster: LocalCluster, no_nvml: None, tmp_path: Any
) -> None:
    c = cluster
    c.add_worker("g1", gpu_ids=("GPU-aaaa", "GPU-bbbb"))
    c.add_worker("plain")
    by_id = {w.worker_id: w for w in c.client.list_workers()}
    assert [g.gpu_id for g in by_id["g1"].gpus] == ["GPU-aaaa", "GPU-bbbb"]
    assert by_id["g1"].gpus[0].memory_total_mb is None  # no NVML: no telemetry
    assert by_id["plain"].gpus == () and by_id["plain"].capacity.gpu == 0
    task = c.client.submit(gpu_task(tmp_path / "gate"))
    assert c.wait_status(task.task_id, "running").worker_id == "g1"  # only g1 has GPUs
    (tmp_path / "gate").touch()
