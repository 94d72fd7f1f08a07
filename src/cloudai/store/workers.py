"""workers: the machines that run tasks. Only this module writes the table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

from sqlalchemy import Connection, RowMapping, select

from cloudai.core.resources import Resources
from cloudai.store._dialect import upsert
from cloudai.store.schema import workers

__all__ = [
    "WorkerRow",
    "all_rows",
    "get",
    "mark_removed",
    "register_manual",
    "register_self",
    "set_drained",
    "touch",
]

WorkerRow: TypeAlias = RowMapping


def register_self(
    conn: Connection, worker_id: str, address: str, capacity: Resources, runtime: str, now: float
) -> None:
    """A worker announced itself with its capacity: insert or refresh it, and count as alive."""
    fields = {
        "address": address,
        "cpu": capacity.cpu,
        "mem_gb": capacity.mem_gb,
        "storage_gb": capacity.storage_gb,
        "gpu": capacity.gpu,
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
) -> None:
    """An operator registered a worker by address (the spec's ManualRegisterWorker).

    `capacity` is what the worker said when the master reached it; None when unreachable (the
    worker fills it in when it registers itself)."""
    fields: dict[str, Any] = {"address": address, "source": "manual", "removed_at": None}
    if capacity is not None:
        fields |= {
            "cpu": capacity.cpu,
            "mem_gb": capacity.mem_gb,
            "storage_gb": capacity.storage_gb,
            "gpu": capacity.gpu,
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


def touch(
    conn: Connection, worker_id: str, now: float, telemetry: Mapping[str, float] | None = None
) -> bool:
    """Record a heartbeat (and the node telemetry it carried); False for an unknown (or
    removed) worker: it registers again."""
    values: dict[str, Any] = {"last_heartbeat": now}
    for key in ("cpu_percent", "mem_used_gb", "disk_free_gb"):
        if telemetry and key in telemetry:
            values[key] = telemetry[key]
    res = conn.execute(
        workers.update()
        .where(workers.c.worker_id == worker_id, workers.c.removed_at.is_(None))
        .values(**values)
    )
    return res.rowcount == 1


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


def get(conn: Connection, worker_id: str) -> WorkerRow | None:
    """A worker's row, also a removed one's (its tasks' history refers to it)."""
    return conn.execute(select(workers).where(workers.c.worker_id == worker_id)).mappings().first()


def all_rows(conn: Connection) -> list[WorkerRow]:
    """Every worker that is not removed."""
    return list(
        conn.execute(
            select(workers).where(workers.c.removed_at.is_(None)).order_by(workers.c.worker_id)
        ).mappings()
    )


def capacity_of(row: WorkerRow) -> Resources:
    return Resources(row["cpu"], row["mem_gb"], row["storage_gb"], row["gpu"])
