"""The machine's own capacity and usage, from psutil."""

from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import Callable, Collection

import psutil

from cloudai.core.resources import Resources
from cloudai.runtime.base import Handle, Runtime
from cloudai.worker.gpus import Gpus

__all__ = ["Sampler", "machine_capacity"]

GB = 1024**3


def machine_capacity(data_dir: str | os.PathLike[str]) -> Resources:
    """This machine's cores, memory GB and free disk GB (where the data directory lives)."""
    path = pathlib.Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return Resources(
        cpu=float(psutil.cpu_count(logical=True) or 1),
        mem_gb=round(psutil.virtual_memory().total / GB, 2),
        storage_gb=round(psutil.disk_usage(str(path)).free / GB, 2),
        gpu=0,
    )


class Sampler:
    """telemetry-loop: samples the node (psutil) and each running task (the engine's stats)
    every interval, apart from the heartbeat, so a slow stats call never delays a heartbeat.
    The heartbeat sends the latest sample. Where NVML answers, each sample also checks the
    GPUs (worker/gpus.py): telemetry, and the busy ones among those no live task holds."""

    def __init__(
        self,
        runtime: Runtime,
        handles: Callable[[], list[Handle]],
        data_dir: str,
        gpus: Gpus | None = None,
        gpus_held: Callable[[], Collection[str]] = set,
    ) -> None:
        self.runtime = runtime
        self.handles = handles
        self.data_dir = data_dir
        self.gpus = gpus
        self.gpus_held = gpus_held
        self.node: dict[str, float] = {}
        self.tasks: dict[str, tuple[float, float]] = {}
        psutil.cpu_percent(None)  # the first call starts the measurement

    async def sample(self) -> None:
        vm = psutil.virtual_memory()
        self.node = {
            "cpu_percent": float(psutil.cpu_percent(None)),
            "mem_used_gb": round((vm.total - vm.available) / GB, 3),
            "disk_free_gb": round(psutil.disk_usage(self.data_dir).free / GB, 2),
        }
        handles = self.handles()
        found = await asyncio.gather(*(self.runtime.usage(h) for h in handles))
        self.tasks = {h.task_id: u for h, u in zip(handles, found, strict=True) if u is not None}
        if self.gpus is not None:
            await self.gpus.sample(self.gpus_held())

    async def loop(self, interval: float) -> None:
        """A sample every interval. A sample that fails fails the loop, which the worker's
        Loops logs and restarts."""
        while True:
            await self.sample()
            await asyncio.sleep(interval)

    def snapshot(self) -> tuple[dict[str, float], list[tuple[str, float, float]]]:
        return dict(self.node), [(t, c, m) for t, (c, m) in self.tasks.items()]
