"""The machine's own capacity and usage, from psutil."""

from __future__ import annotations

import os
import pathlib

import psutil

from cloudai.core.resources import Resources

__all__ = ["machine_capacity"]

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
