"""cluster: the identity of the cluster this store belongs to. Only this module writes it.

A store holds one cluster: its ID is made once, the first time a master opens the store, and
never changes. A master started on another (or an empty) store is another cluster, and its
workers can tell (worker/identity.py)."""

from __future__ import annotations

import secrets

from sqlalchemy import Connection, select

from cloudai.store._dialect import insert_ignore
from cloudai.store.schema import cluster

__all__ = ["ensure", "get", "new_cluster_id"]

_ROW = 1


def new_cluster_id() -> str:
    return f"cluster-{secrets.token_hex(8)}"


def get(conn: Connection) -> str | None:
    return conn.execute(select(cluster.c.cluster_id).where(cluster.c.row == _ROW)).scalar()


def ensure(conn: Connection, now: float) -> str:
    """This store's cluster ID, made now if it has none (two masters racing on a new store
    agree: the first insert wins, the other reads it)."""
    insert_ignore(
        conn, cluster, "row", {"row": _ROW, "cluster_id": new_cluster_id(), "created_at": now}
    )
    return str(conn.execute(select(cluster.c.cluster_id).where(cluster.c.row == _ROW)).scalar_one())
