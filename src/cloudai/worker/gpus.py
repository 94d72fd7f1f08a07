"""The worker's GPUs: which it has, how they are doing, and which are busy.

Devices are found through NVML (nvidia-ml-py, imported as `pynvml`) where the library and an
NVIDIA driver answer: indices "0".."N-1". `cloudai worker --gpu-ids 0,1` declares them by
hand instead (it overrides detection; NVML still reports on the declared IDs it knows).
Without NVML there is no telemetry and no check: the devices are what was declared.

Where NVML answers, a device that none of this worker's live tasks holds is *busy* while its
memory is in use (more than IDLE_MEMORY_MB, or a compute process on it): a task that exited
may leave memory behind (a stuck process, a leaked context), and the next task would fail on
it or share it. The worker re-checks every telemetry interval and reports the busy ones in its
heartbeat; the master hands out no busy device. When a GPU task's process has exited, the
worker checks its devices (`settle`) and reports them before it reports the task's end, so a
device is never handed on before its check."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from cloudai.core.gpus import GpuDevice

__all__ = ["IDLE_MEMORY_MB", "Gpus", "load_nvml"]

log = logging.getLogger("cloudai.worker.gpus")
IDLE_MEMORY_MB = 256.0  # an idle device's driver reservation stays below this
NVML_DEADLINE = 5.0  # a hung driver call is given up on (the last state stays)
SETTLE_POLL = 0.2
MB = 1024**2


def load_nvml() -> Any | None:
    """The initialised `pynvml` module, or None when the library or a driver is missing."""
    try:
        import pynvml
    except ImportError:
        log.info("no GPUs detected: nvidia-ml-py (pynvml) is not installed")
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.info("no GPUs detected: NVML does not answer (%s)", exc)
        return None
    return pynvml


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _query(nvml: Any, gpu_id: str) -> tuple[GpuDevice, bool] | None:
    """(the device with its telemetry, whether it is in use); None when NVML does not know
    the ID."""
    try:
        if gpu_id.isdigit():
            handle = nvml.nvmlDeviceGetHandleByIndex(int(gpu_id))
        else:
            handle = nvml.nvmlDeviceGetHandleByUUID(gpu_id)
        name = _text(nvml.nvmlDeviceGetName(handle))
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    except nvml.NVMLError:
        return None
    try:
        utilization: float | None = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except nvml.NVMLError:
        utilization = None
    try:
        processes = len(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
    except nvml.NVMLError:
        processes = 0
    used = round(memory.used / MB, 1)
    device = GpuDevice(
        gpu_id=gpu_id,
        name=name,
        memory_total_mb=round(memory.total / MB, 1),
        memory_used_mb=used,
        utilization_percent=utilization,
    )
    return device, used > IDLE_MEMORY_MB or processes > 0


class Gpus:
    """This worker's devices and their last check. `ids` never changes after start."""

    def __init__(self, ids: Sequence[str], nvml: Any | None = None) -> None:
        self.ids = tuple(ids)
        self.nvml = nvml
        self.devices: dict[str, GpuDevice] = {}  # the last check, where NVML answered
        self.checked_at: float | None = None

    @classmethod
    def open(cls, declared: Sequence[str] | None = None) -> Gpus:
        """`declared` (from --gpu-ids) or, when None, the devices NVML finds."""
        nvml = load_nvml()
        if declared is not None:
            ids: tuple[str, ...] = tuple(declared)
        elif nvml is not None:
            try:
                ids = tuple(str(i) for i in range(nvml.nvmlDeviceGetCount()))
            except nvml.NVMLError as exc:
                log.warning("⚠ NVML could not count the GPUs (%s): none used", exc)
                ids = ()
        else:
            ids = ()
        gpus = cls(ids, nvml)
        if ids:
            gpus.devices = gpus.check(ids)  # names and memory; busy is judged once running
            unknown = [i for i in ids if i not in gpus.devices]
            how = "declared" if declared is not None else "found by NVML"
            log.info("GPUs %s (%s)", ",".join(ids), how)
            if nvml is not None and unknown:
                log.warning("⚠ NVML does not know GPU %s: no telemetry or check", ",".join(unknown))
        return gpus

    @property
    def measured(self) -> bool:
        """Whether NVML answers here (telemetry, and the busy check)."""
        return self.nvml is not None

    @property
    def busy(self) -> set[str]:
        return {i for i, d in self.devices.items() if d.busy}

    def check(self, held: Collection[str]) -> dict[str, GpuDevice]:
        """Ask NVML about every device (blocking). A device that `held` does not list is busy
        while its memory is in use."""
        if self.nvml is None:
            return {}
        out = {}
        for gpu_id in self.ids:
            found = _query(self.nvml, gpu_id)
            if found is not None:
                device, in_use = found
                out[gpu_id] = GpuDevice(
                    gpu_id=device.gpu_id,
                    name=device.name,
                    memory_total_mb=device.memory_total_mb,
                    memory_used_mb=device.memory_used_mb,
                    utilization_percent=device.utilization_percent,
                    busy=in_use and gpu_id not in held,
                )
        return out

    async def sample(self, held: Collection[str]) -> None:
        """One check off the event loop; a driver that does not answer keeps the last state."""
        if self.nvml is None or not self.ids:
            return
        before = self.busy
        try:
            async with asyncio.timeout(NVML_DEADLINE):
                self.devices = await asyncio.to_thread(self.check, set(held))
        except TimeoutError:
            log.warning("⚠ NVML did not answer within %gs: GPU state kept", NVML_DEADLINE)
            return
        self.checked_at = time.time()
        for gpu_id in sorted(self.busy - before):
            d = self.devices[gpu_id]
            log.warning(
                "⚠ GPU %s busy: %g MB in use with no task on it; not handed out until free",
                gpu_id,
                d.memory_used_mb or 0,
            )
        for gpu_id in sorted(before - self.busy):
            log.info("✓ GPU %s free again", gpu_id)

    async def settle(
        self, released: Collection[str], held: Callable[[], Collection[str]], wait: float = 2.0
    ) -> set[str]:
        """Check devices a task has just let go, for up to `wait` seconds while the driver
        frees their memory. Returns those still busy (they stay flagged until free)."""
        deadline = time.monotonic() + wait
        while True:
            await self.sample(held())
            still = self.busy & set(released)
            if not still or time.monotonic() >= deadline:
                return still
            await asyncio.sleep(SETTLE_POLL)

    def snapshot(self) -> list[GpuDevice]:
        """For the heartbeat: each device NVML answered for, with its busy flag."""
        return [self.devices[i] for i in self.ids if i in self.devices]

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except self.nvml.NVMLError as exc:
                log.debug("nvmlShutdown: %s", exc)
            self.nvml = None
