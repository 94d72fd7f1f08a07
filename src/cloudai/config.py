"""Where cloudai keeps its data: CLOUDAI_HOME (default ~/.cloudai)."""

from __future__ import annotations

import os
import pathlib

__all__ = ["DEFAULT_MASTER_PORT", "DEFAULT_WORKER_PORT", "home"]

DEFAULT_MASTER_PORT = 50051
DEFAULT_WORKER_PORT = 50052


def home() -> pathlib.Path:
    """The data directory: the SQLite file, logs, worker state (and later certificates)."""
    path = pathlib.Path(os.environ.get("CLOUDAI_HOME") or pathlib.Path.home() / ".cloudai")
    path.mkdir(parents=True, exist_ok=True)
    return path
