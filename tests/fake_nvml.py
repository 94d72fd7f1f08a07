"""A stand-in for `pynvml` (nvidia-ml-py): the calls cloudai makes, over devices a test
controls. Install it with `monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(...))`; set
`monkeypatch.setitem(sys.modules, "pynvml", None)` for a machine without the library."""

from __future__ import annotations

import threading
import types
from dataclasses import dataclass, field
from typing import Any

MB = 1024**2


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - pynvml's own name
    pass


class NVMLError_NotFound(NVMLError):  # noqa: N801
    pass


@dataclass
class FakeDevice:
    name: str = "NVIDIA Stand-in 80GB"
    uuid: str = ""
    total_mb: float = 81_920
    used_mb: float = 4  # an idle device's driver reservation
    utilization: int = 0
    processes: list[int] = field(default_factory=list)


class FakeNvml(types.ModuleType):
    """`driver=False`: the library is there, the driver is not (nvmlInit raises)."""

    NVMLError = NVMLError
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_NotFound = NVMLError_NotFound

    def __init__(self, devices: list[FakeDevice] | None = None, driver: bool = True) -> None:
        super().__init__("pynvml")
        self.devices = devices if devices is not None else [FakeDevice(), FakeDevice()]
        for i, d in enumerate(self.devices):
            d.uuid = d.uuid or f"GPU-fake-{i:04d}"
        self.driver = driver
        self.initialised = 0
        self.lock = threading.Lock()  # tests change devices while the worker's thread reads

    def use(self, index: int, used_mb: float, pid: int | None = None) -> None:
        """Memory (and a process) in use on a device, as a task or a stray process leaves it."""
        with self.lock:
            d = self.devices[index]
            d.used_mb = used_mb
            d.processes = [pid] if pid is not None else []

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if not self.driver:
            raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")
        self.initialised += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.initialised -= 1

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:  # noqa: N802
        if not 0 <= index < len(self.devices):
            raise NVMLError_NotFound("Not Found")
        return self.devices[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeDevice:  # noqa: N802
        for d in self.devices:
            if d.uuid == uuid:
                return d
        raise NVMLError_NotFound("Not Found")

    def nvmlDeviceGetName(self, handle: FakeDevice) -> str:  # noqa: N802
        return handle.name

    def nvmlDeviceGetMemoryInfo(self, handle: FakeDevice) -> Any:  # noqa: N802
        with self.lock:
            used = handle.used_mb * MB
            total = handle.total_mb * MB
        return types.SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeDevice) -> Any:  # noqa: N802
        return types.SimpleNamespace(gpu=handle.utilization, memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeDevice) -> list[Any]:  # noqa: N802
        with self.lock:
            return [types.SimpleNamespace(pid=p, usedGpuMemory=None) for p in handle.processes]
