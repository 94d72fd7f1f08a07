"""GPUs by device ID: choosing devices, what the runtimes ask the engine and tell the task,
the worker's inventory with NVML absent and present (a stand-in module), and its busy check."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from docker.types import HostConfig

from cloudai.cli.main import build_parser
from cloudai.cli.render import task_json, worker_json
from cloudai.core.gpus import GpuDevice, parse_gpu_ids, pick_gpus, validate_gpu_ids
from cloudai.core.hardening import ContainerPolicy
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Task, TaskSpec, Worker
from cloudai.core.resources import Resources
from cloudai.errors import RuntimeFailure
from cloudai.rpc.convert import gpu_from_pb, gpu_to_pb, worker_from_pb, worker_to_pb
from cloudai.runtime.docker import container_environment, hardened_host_config
from cloudai.runtime.process import gpu_environment
from cloudai.worker.gpus import IDLE_MEMORY_MB, Gpus
from cloudai.worker.service import WorkerService
from tests.fake_nvml import FakeDevice, FakeNvml


def gpu_spec(n: int) -> TaskSpec:
    return TaskSpec(image="busybox", resources=Resources(cpu=1, mem_gb=0.5, gpu=n))


# --- choosing devices -------------------------------------------------------------------------


def test_pick_takes_the_lowest_free_devices() -> None:
    assert pick_gpus(["0", "1", "2", "3"], {"0", "2"}, 1) == ("1",)
    assert pick_gpus(["0", "1", "2", "3"], {"0"}, 2) == ("1", "2")
    assert pick_gpus(["10", "2", "1"], set(), 2) == ("1", "2")  # by number, not by text
    assert pick_gpus(["0", "1"], {"0", "1"}, 1) is None  # none left: no placement
    assert pick_gpus(["0", "1"], {"1"}, 2) is None  # never fewer than asked
    assert pick_gpus([], set(), 0) == ()  # no GPU asked: nothing to pick


def test_gpu_ids_parse_and_validate() -> None:
    assert parse_gpu_ids("0,1, 2") == ("0", "1", "2")
    assert parse_gpu_ids("GPU-6f2c1a3e-0000-1111") == ("GPU-6f2c1a3e-0000-1111",)
    assert parse_gpu_ids("") == ()
    for bad in ("0,0", "0;1", "-1", "a b", "../x"):
        with pytest.raises(ValueError):
            parse_gpu_ids(bad)
    assert validate_gpu_ids(["0", "MIG-1"]) is None


def test_available_gpus_are_the_free_devices() -> None:
    worker = Worker(
        worker_id="w",
        address="h:1",
        capacity=Resources(cpu=4, mem_gb=4, gpu=3),
        allocated=Resources(cpu=1, gpu=1),
        gpus=(
            GpuDevice("0", task_id="t1"),
            GpuDevice("1", busy=True),  # memory in use with no task on it
            GpuDevice("2"),
        ),
    )
    assert worker.available.gpu == 1  # 3 - 1 by count, but only "2" is free
    assert not Resources(cpu=1, gpu=2).fits_in(worker.available)


# --- what the runtimes ask for ----------------------------------------------------------------


def test_docker_requests_gpus_by_device_id_never_by_count() -> None:
    hc = dict(
        HostConfig(
            version="1.41",
            **hardened_host_config(gpu_spec(2), ContainerPolicy(), ("0", "GPU-abc")),
        )
    )
    (request,) = hc["DeviceRequests"]
    assert request["Driver"] == "nvidia"
    assert request["DeviceIDs"] == ["0", "GPU-abc"]
    assert request["Capabilities"] == [["gpu"]]
    assert not request.get("Count")  # the engine never chooses: it could pick a held device
    no_gpu = dict(
        HostConfig(version="1.41", **hardened_host_config(gpu_spec(0), ContainerPolicy()))
    )
    assert "DeviceRequests" not in no_gpu


def test_docker_refuses_gpus_without_device_ids() -> None:
    with pytest.raises(RuntimeFailure, match="asks for 1 GPU"):
        hardened_host_config(gpu_spec(1), ContainerPolicy())
    with pytest.raises(RuntimeFailure):
        hardened_host_config(gpu_spec(1), ContainerPolicy(), ("0", "1"))


def test_the_task_is_told_its_devices_and_cannot_claim_others() -> None:
    spec = TaskSpec(
        image="busybox",
        env={"NVIDIA_VISIBLE_DEVICES": "all", "A": "1"},  # as CUDA images set it
        resources=Resources(cpu=1, gpu=1),
    )
    env = container_environment(spec, ("1",))
    assert env["NVIDIA_VISIBLE_DEVICES"] == "1" and env["A"] == "1"
    none = container_environment(TaskSpec(image="busybox", env={"NVIDIA_VISIBLE_DEVICES": "all"}))
    assert none["NVIDIA_VISIBLE_DEVICES"] == "void"  # no GPU, even on an nvidia default runtime
    assert gpu_environment(("0", "2")) == {
        "CUDA_VISIBLE_DEVICES": "0,2",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "NVIDIA_VISIBLE_DEVICES": "0,2",
    }
    assert gpu_environment(())["CUDA_VISIBLE_DEVICES"] == ""  # CUDA sees no GPU


def test_the_worker_refuses_an_assignment_without_its_devices() -> None:
    service = WorkerService(None, None, secure=False, gpus=Gpus(("0", "1")))  # type: ignore[arg-type]
    refusal = service._gpu_refusal
    assert refusal(1, ("1",)) is None
    assert refusal(0, ()) is None
    assert "asks for 1 GPU(s) but was assigned none" in (refusal(1, ()) or "")  # an old master
    assert "asks for 1" in (refusal(1, ("0", "1")) or "")
    assert "asks for 2" in (refusal(2, ("0", "0")) or "")
    assert "GPU 7 is not on this worker" in (refusal(1, ("7",)) or "")


# --- the worker's inventory: NVML absent, present, overridden ---------------------------------


def test_no_nvml_library_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    gpus = Gpus.open()
    assert gpus.ids == () and not gpus.measured
    declared = Gpus.open(("0", "1"))  # --gpu-ids stands in for devices: no telemetry, no check
    assert declared.ids == ("0", "1") and declared.snapshot() == []


def test_nvml_without_a_driver_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(driver=False))  # nvmlInit: NVMLError
    gpus = Gpus.open()
    assert gpus.ids == () and not gpus.measured
    assert Gpus.open(("3",)).ids == ("3",)


def test_the_real_library_without_a_driver_is_the_absent_path() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        assert Gpus.open().ids == ()
    else:  # a machine with a driver: whatever it has, each device is an index
        pynvml.nvmlShutdown()
        assert all(i.isdigit() for i in Gpus.open().ids)


def test_nvml_finds_the_devices_with_their_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml([FakeDevice(name="A100", utilization=37), FakeDevice(used_mb=1024)])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    gpus = Gpus.open()
    assert gpus.ids == ("0", "1") and gpus.measured
    first = gpus.snapshot()[0]
    assert (first.name, first.memory_total_mb, first.memory_used_mb) == ("A100", 81920, 4)
    assert first.utilization_percent == 37
    assert not gpus.busy  # judged once the worker knows what its tasks hold
    gpus.close()
    assert nvml.initialised == 0


def test_gpu_ids_override_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml([FakeDevice(), FakeDevice(), FakeDevice()])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    gpus = Gpus.open(("2", "GPU-fake-0000", "9"))  # an index, a UUID, one NVML does not know
    assert gpus.ids == ("2", "GPU-fake-0000", "9")
    assert [d.gpu_id for d in gpus.snapshot()] == ["2", "GPU-fake-0000"]


async def test_a_device_in_use_with_no_task_on_it_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    gpus = Gpus.open()
    nvml.use(0, IDLE_MEMORY_MB + 1)  # a task's leftover, or a process not of this worker
    nvml.use(1, 2, pid=4242)  # little memory, but a compute process on it
    await gpus.sample(held=set())
    assert gpus.busy == {"0", "1"}
    assert all(d.busy for d in gpus.snapshot())
    await gpus.sample(held={"0", "1"})  # a live task of ours holds them: in use, not busy
    assert gpus.busy == set()
    nvml.use(0, 2)
    nvml.use(1, 2)
    await gpus.sample(held=set())
    assert gpus.busy == set()


async def test_a_freed_device_is_checked_before_it_is_handed_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    gpus = Gpus.open()
    nvml.use(1, 30_000)  # the task exited; its memory did not come back
    assert await gpus.settle(("1",), held=set, wait=0.3) == {"1"}
    assert gpus.busy == {"1"}

    async def driver_frees_it_later() -> None:
        await asyncio.sleep(0.2)
        nvml.use(1, 2)

    freeing = asyncio.create_task(driver_frees_it_later())
    assert await gpus.settle(("1",), held=set, wait=3) == set()  # it waited for the driver
    await freeing
    assert gpus.busy == set()


# --- the wire and the CLI ---------------------------------------------------------------------


def test_devices_cross_the_wire() -> None:
    g = GpuDevice("GPU-1", "H100", 81920.0, 512.5, 12.0, busy=True, task_id="t1")
    assert gpu_from_pb(gpu_to_pb(g)) == g
    assert gpu_from_pb(gpu_to_pb(GpuDevice("0"))) == GpuDevice("0")  # no telemetry: None
    w = Worker("w", "h:1", Resources(cpu=1, gpu=2), gpus=(g, GpuDevice("0")))
    assert worker_from_pb(worker_to_pb(w)).gpus == w.gpus
    bad = gpu_to_pb(g)
    bad.memory_used_mb = float("nan")
    with pytest.raises(Exception, match="invalid GPU memory_used_mb"):
        gpu_from_pb(bad)


def test_json_shows_the_devices() -> None:
    task = Task("t1", gpu_spec(2), TaskStatus.RUNNING, worker_id="w", gpu_ids=("0", "1"))
    assert task_json(task)["gpus"] == ["0", "1"]
    w = Worker(
        "w",
        "h:1",
        Resources(cpu=1, gpu=2),
        gpus=(GpuDevice("0", "A100", 80.0, 1.0, 3.0, task_id="t1"), GpuDevice("1", busy=True)),
    )
    assert worker_json(w)["gpus"] == [
        {
            "id": "0",
            "name": "A100",
            "memory_total_mb": 80.0,
            "memory_used_mb": 1.0,
            "utilization_percent": 3.0,
            "busy": False,
            "task_id": "t1",
        },
        {
            "id": "1",
            "name": None,
            "memory_total_mb": None,
            "memory_used_mb": None,
            "utilization_percent": None,
            "busy": True,
            "task_id": None,
        },
    ]


def _worker_args(*extra: str) -> Any:
    return build_parser().parse_args(["worker", "--id", "w", *extra])


def test_worker_gpu_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert _worker_args("--gpu-ids", "0,1").gpu_ids == ("0", "1")
    assert _worker_args("--gpu", "2").gpu == 2
    assert _worker_args().gpu_ids is None  # detection
    for argv in (["--gpu-ids", "0,0"], ["--gpu", "2", "--gpu-ids", "0,1"]):
        with pytest.raises(SystemExit) as exc:
            _worker_args(*argv)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--gpu-ids: GPU ids repeat" in err
    assert "not allowed with argument" in err
