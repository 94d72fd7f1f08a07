"""GPU devices: what a worker has, and which ones a placement may take. Pure: no I/O.

A worker's GPUs are a list of device IDs (an NVML index such as "0", or a UUID such as
"GPU-6f2c..."), found through NVML or declared with `cloudai worker --gpu-ids`. Its GPU
capacity is their number. A placement takes specific IDs: never one that an active task holds
(a cancelled task holds its devices until its container is gone, as it holds the rest of its
resources: core/stop.py), nor one its worker flags busy (memory in use with no task on it)."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = ["GpuDevice", "device_order", "parse_gpu_ids", "pick_gpus", "validate_gpu_ids"]

_GPU_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_GPUS = 1024


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One device of a worker. Telemetry is None where NVML does not answer."""

    gpu_id: str
    name: str = ""
    memory_total_mb: float | None = None
    memory_used_mb: float | None = None
    utilization_percent: float | None = None
    busy: bool = False  # memory in use with no task on it: not handed out until it is free
    task_id: str = ""  # the task that holds it (the master's view)

    @property
    def free(self) -> bool:
        return not self.task_id and not self.busy


def validate_gpu_ids(ids: Sequence[str]) -> str | None:
    """None when `ids` is a list of distinct, well-formed device IDs, else the problem."""
    if len(ids) > MAX_GPUS:
        return f"at most {MAX_GPUS} GPUs, got {len(ids)}"
    for gpu_id in ids:
        if not _GPU_ID_RE.fullmatch(gpu_id):
            return (
                f"invalid GPU id {gpu_id[:70]!r}: use an index (0, 1, ...) or a UUID "
                "(letters, digits, '.', '_', ':' or '-')"
            )
    if len(set(ids)) != len(ids):
        return f"GPU ids repeat: {','.join(ids)[:200]}"
    return None


def parse_gpu_ids(text: str) -> tuple[str, ...]:
    """`0,1,2` (or UUIDs) -> ("0", "1", "2"); an empty text is no GPU. ValueError when bad."""
    ids = tuple(part.strip() for part in text.split(",") if part.strip())
    if (problem := validate_gpu_ids(ids)) is not None:
        raise ValueError(problem)
    return ids


def device_order(gpu_id: str) -> tuple[int, int, str]:
    """Indices by number first (2 before 10), then UUIDs by name."""
    return (0, int(gpu_id), "") if gpu_id.isdigit() else (1, 0, gpu_id)


def pick_gpus(devices: Sequence[str], taken: Collection[str], n: int) -> tuple[str, ...] | None:
    """The `n` lowest devices not in `taken`; None when fewer are left. No GPU: ()."""
    if n <= 0:
        return ()
    free = sorted((d for d in devices if d not in taken), key=device_order)
    return tuple(free[:n]) if len(free) >= n else None
