"""A view read in several statements sees one snapshot (`_dialect.one_snapshot`): on
PostgreSQL's default READ COMMITTED each statement would see the newest commits, so `task show`
could show a stop's removal (committed with its exit, in one UpdateStops) without the exit's
event. SQLite takes its write lock at BEGIN (store/engine.py): no commit lands during a
transaction there, so the test runs on PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Connection, func, select

from cloudai.store import Store
from cloudai.store._dialect import one_snapshot
from cloudai.store.schema import users


def _count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def _add(conn: Connection, name: str) -> None:
    row = {"name": name, "token_hash": name * 4, "admin": False, "created_at": time.time()}
    conn.execute(users.insert().values(**row))


@pytest.mark.parametrize("snapshot", [True, False])
def test_a_snapshot_read_does_not_see_a_commit_that_lands_between_its_statements(
    pg_url: str, snapshot: bool
) -> None:
    store = Store(pg_url)
    read_once, committed = threading.Event(), threading.Event()

    def read(conn: Connection) -> tuple[int, int]:
        if snapshot:
            one_snapshot(conn)
        first = _count(conn)
        read_once.set()
        assert committed.wait(20), "the writer did not commit"
        return first, _count(conn)

    def write() -> None:
        assert read_once.wait(20), "the reader did not read"
        store.tx_sync(_add, "late")
        committed.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        first, second = store.tx_sync(read)
    finally:
        writer.join(30)
        store.close()
    assert (first, second) == ((0, 0) if snapshot else (0, 1))  # READ COMMITTED sees it
