"""Where a run ran: the machine, the engine, the libraries."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pathlib
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

import psutil

__all__ = ["describe", "load"]

LIBRARIES = (
    "cloudai",
    "grpcio",
    "protobuf",
    "docker",
    "SQLAlchemy",
    "alembic",
    "psycopg",
    "rich",
    "psutil",
)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.platform()


def source_state() -> dict[str, str]:
    """The commit, and a digest of src/ as it is on disk (others may edit it during a run)."""
    root = pathlib.Path(__file__).resolve().parent.parent
    digest = hashlib.sha1()
    for path in sorted((root / "src").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return {"commit": _git(), "src_digest": digest.hexdigest()[:10]}


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' (src/ modified)' if dirty else ''}" if head else "unknown"


def _engine() -> dict[str, Any]:
    try:
        from bench.engine import api_client

        api = api_client()
        try:
            v = api.version()
            info = api.info()
        finally:
            api.close()
    except Exception as exc:  # no engine: say so in the report
        return {"error": str(exc).splitlines()[0]}
    return {
        "version": v.get("Version"),
        "api_version": v.get("ApiVersion"),
        "containerd": next(
            (c.get("Version") for c in v.get("Components", []) if c.get("Name") == "containerd"),
            None,
        ),
        "storage_driver": info.get("Driver"),
        "cgroup": f"{info.get('CgroupDriver')} v{info.get('CgroupVersion')}",
    }


def _pg_version(url: str | None) -> str | None:
    if not url:
        return None
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else None
    except Exception as exc:  # unreachable: the M3 section says so too
        return f"unreachable ({str(exc).splitlines()[0]})"


def describe(pg_url: str | None) -> dict[str, Any]:
    mem = psutil.virtual_memory().total
    libs = {}
    for name in LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = "not installed"
    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu": _cpu_model(),
        "memory_gb": round(mem / 1024**3, 1),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "engine": _engine(),
        "postgresql": _pg_version(pg_url),
        "libraries": libs,
        "source": source_state(),
        "load_at_start": load(),
    }
