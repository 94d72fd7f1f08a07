"""Where cloudai keeps its data: CLOUDAI_HOME (default ~/.cloudai)."""

from __future__ import annotations

import os
import pathlib

__all__ = [
    "DEFAULT_MASTER_METRICS",
    "DEFAULT_MASTER_PORT",
    "DEFAULT_WORKER_METRICS",
    "DEFAULT_WORKER_PORT",
    "LOCAL_HTTP",
    "LOCAL_MASTER_METRICS",
    "LOCAL_WORKER_METRICS",
    "home",
    "metrics_address",
]

DEFAULT_MASTER_PORT = 50051
DEFAULT_WORKER_PORT = 50052


def home() -> pathlib.Path:
    """The data directory: the SQLite file, logs, worker state (and later certificates)."""
    path = pathlib.Path(os.environ.get("CLOUDAI_HOME") or pathlib.Path.home() / ".cloudai")
    path.mkdir(parents=True, exist_ok=True)
    return path


DEFAULT_MASTER_METRICS = "0.0.0.0:9105"
DEFAULT_WORKER_METRICS = "0.0.0.0:9106"
# `cloudai up` keeps everything on this machine, /metrics too.
LOCAL_MASTER_METRICS = "127.0.0.1:9105"
LOCAL_HTTP = "127.0.0.1:8080"  # `cloudai up`'s web console
LOCAL_WORKER_METRICS = "127.0.0.1:9106"


def metrics_address(given: str | None, default: str) -> tuple[str, bool]:
    """(address, required): a given address must work; the default may be busy (a warning)."""
    if given is None:
        return default, False
    if given in ("off", "none", ""):
        return "", False
    return given, True
