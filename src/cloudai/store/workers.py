"""workers: the machines that run tasks. Only this module writes the table."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from sqlalchemy import Connection, RowMapping, bindparam, select

from cloudai.core.gpus import MAX_GPUS, GpuDevice
from cloudai.core.resources import Resources
from cloudai.store._dialect import upsert
from cloudai.store.schema import workers

__all__ = [
    "WorkerRow",
    "all_rows",
    "busy_gpus_of",
    "get",
    "mark_removed",
    "gpu_ids_of",
    "gpu_stats_of",
    "register_manual",
    "register_self",
    "set_drained",
    "touch",
    "touch_many",
]

WorkerRow: TypeAlias = RowMapping


def register_self(
    conn: Connection,
    worker_id: str,
    address: str,
    capacity: Resources,
    runtime: str,
    now: float,
    gpu_ids: Sequence[str] | None = None,
) -> None:
    """A worker announced itself with its capacity (and its GPUs' IDs; None: 0..gpu-1):
    insert or refresh it, and count as alive."""
    fields = {
        "address": address,
        "cpu": capacity.cpu,
        "mem_gb": capacity.mem_gb,
        "storage_gb": capacity.storage_gb,
        "gpu": capacity.gpu,
        "gpu_ids": None if gpu_ids is None else list(gpu_ids),
        "runtime": runtime,
        "source": "self",
        "last_heartbeat": now,
        "removed_at": None,  # a removed worker that registers again is back
    }
    upsert(
        conn, workers, "worker_id", {"worker_id": worker_id, "registered_at": now, **fields}, fields
    )


def register_manual(
    conn: Connection,
    worker_id: str,
    address: str,
    capacity: Resources | None,
    runtime: str,
    now: float,
    gpu_ids: Sequence[str] | None = None,
) -> None:
    """An operator registered a worker by address (the spec's ManualRegisterWorker).

    `capacity` (and `gpu_ids`) is what the worker said when the master reached it; None when
    unreachable (the worker fills it in when it registers itself)."""
    fields: dict[str, Any] = {"address": address, "source": "manual", "removed_at": None}
    if capacity is not None:
        fields |= {
            "cpu": capacity.cpu,
            "mem_gb": capacity.mem_gb,
            "storage_gb": capacity.storage_gb,
            "gpu": capacity.gpu,
            "gpu_ids": None if gpu_ids is None else list(gpu_ids),
            "runtime": runtime,
            "last_heartbeat": now,
        }
    zero = {"cpu": 0.0, "mem_gb": 0.0, "storage_gb": 0.0, "gpu": 0, "runtime": runtime}
    upsert(
        conn,
        workers,
        "worker_id",
        {"worker_id": worker_id, "registered_at": now, **zero, **fields},
        fields,
    )


def _touch_values(
    now: float,
    telemetry: Mapping[str, float | None] | None,
    gpus: Sequence[GpuDevice] | None,
) -> dict[str, Any]:
    values: dict[str, Any] = {"last_heartbeat": now}
    for key in ("cpu_percent", "mem_used_gb", "disk_free_gb"):
        if telemetry and key in telemetry:
            values[key] = telemetry[key]
    if gpus is not None:
        values["gpu_stats"] = {
            d.gpu_id: {
                "name": d.name,
                "memory_total_mb": d.memory_total_mb,
                "memory_used_mb": d.memory_used_mb,
                "utilization_percent": d.utilization_percent,
            }
            for d in gpus[:MAX_GPUS]
        } or None
        values["busy_gpu_ids"] = sorted(d.gpu_id for d in gpus[:MAX_GPUS] if d.busy) or None
    return values


def touch(
    conn: Connection,
    worker_id: str,
    now: float,
    telemetry: Mapping[str, float | None] | None = None,
    gpus: Sequence[GpuDevice] | None = None,
) -> bool:
    """Record a heartbeat (and the node telemetry it carried: with `gpus`, each GPU's and its
    busy flag; an empty list: NVML does not answer there); False for an unknown (or removed)
    worker: it registers again. Only the worker's own devices count (`gpu_ids_of`,
    `busy_gpus_of`)."""
    values = _touch_values(now, telemetry, gpus)
    row = {"w": worker_id} | {f"v_{k}": v for k, v in values.items()}
    return conn.execute(_touch_stmt(tuple(sorted(values))), row).rowcount == 1


@functools.cache
def _touch_stmt(keys: tuple[str, ...]) -> Any:
    return (
        workers.update()
        .where(workers.c.worker_id == bindparam("w"), workers.c.removed_at.is_(None))
        .values({k: bindparam(f"v_{k}") for k in keys})
    )


def touch_many(
    conn: Connection,
    beats: Iterable[
        tuple[str, float, Mapping[str, float | None] | None, Sequence[GpuDevice] | None]
    ],
) -> None:
    """Record many heartbeats (worker_id, at, telemetry, gpus) as `touch` does, in one
    statement per shape of row (executemany); a removed worker's is skipped."""
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for worker_id, now, telemetry, gpus in beats:
        values = _touch_values(now, telemetry, gpus)
        row = {"w": worker_id} | {f"v_{k}": v for k, v in values.items()}
        shapes.setdefault(tuple(sorted(values)), []).append(row)
    for keys, rows in shapes.items():
        conn.execute(_touch_stmt(keys), rows)


def set_drained(conn: Connection, worker_id: str, drained: bool) -> bool:
    """Drain (or undrain) a worker; False for an unknown worker."""
    res = conn.execute(
        workers.update().where(workers.c.worker_id == worker_id).values(drained=drained)
    )
    return res.rowcount == 1


def mark_removed(conn: Connection, worker_id: str, now: float) -> bool:
    """Forget a worker (`cloudai worker rm`): it is no longer listed or placed on; the row
    stays for its tasks' history. False for an unknown or already removed worker."""
    res = conn.execute(
        workers.update()
        .where(workers.c.worker_id == worker_id, workers.c.removed_at.is_(None))
        .values(removed_at=now)
    )
    return res.rowcount == 1


_GET = select(workers).where(workers.c.worker_id == bindparam("w"))  # built once: hot


def get(conn: Connection, worker_id: str) -> WorkerRow | None:
    """A worker's row, also a removed one's (its tasks' history refers to it)."""
    return conn.execute(_GET, {"w": worker_id}).mappings().first()


def all_rows(conn: Connection) -> list[WorkerRow]:
    """Every worker that is not removed."""
    return list(
        conn.execute(
            select(workers).where(workers.c.removed_at.is_(None)).order_by(workers.c.worker_id)
        ).mappings()
    )


def capacity_of(row: WorkerRow) -> Resources:
    return Resources(row["cpu"], row["mem_gb"], row["storage_gb"], row["gpu"])


def gpu_ids_of(row: WorkerRow) -> list[str]:
    """The worker's device IDs: as registered, else (a row from before device IDs, or a
    worker that sent only a count) 0..gpu-1."""
    ids = row["gpu_ids"]
    return [str(i) for i in ids] if ids is not None else [str(i) for i in range(row["gpu"])]


def busy_gpus_of(row: WorkerRow) -> set[str]:
    """Its devices that its last heartbeat flagged busy."""
    return set(row["busy_gpu_ids"] or ()) & set(gpu_ids_of(row))


def gpu_stats_of(row: WorkerRow) -> dict[str, dict[str, Any]]:
    return dict(row["gpu_stats"] or {})
