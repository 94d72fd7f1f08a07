"""Dialect-specific statement builders shared by the table modules."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite


@functools.cache
def _insert_ignore_stmt(dialect: str, table: Table, key: str) -> Any:
    mod = postgresql if dialect == "postgresql" else sqlite
    return mod.insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])


def insert_ignore(conn: Connection, table: Table, key: str, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT (key) DO NOTHING; True when the row was inserted."""
    stmt = _insert_ignore_stmt(conn.dialect.name, table, key)
    # RETURNING, not rowcount: with an implicit RETURNING of the primary key, PostgreSQL
    # drivers do not report a reliable rowcount for INSERT ... ON CONFLICT.
    return conn.execute(stmt, values).first() is not None


def upsert(
    conn: Connection, table: Table, key: str, values: dict[str, Any], update: dict[str, Any]
) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE SET update."""
    mod = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        mod.insert(table).values(**values).on_conflict_do_update(index_elements=[key], set_=update)
    )
    conn.execute(stmt)


@functools.cache
def _lock_row_stmt(dialect: str, table: Table, key: str) -> Any:
    stmt = table.select().where(table.c[key] == bindparam("key_value"))
    return stmt.with_for_update() if dialect == "postgresql" else stmt


def lock_row(conn: Connection, table: Table, key: str, value: str) -> Any:
    """SELECT the row FOR UPDATE (PostgreSQL); SQLite's BEGIN IMMEDIATE already holds the lock."""
    stmt = _lock_row_stmt(conn.dialect.name, table, key)
    return conn.execute(stmt, {"key_value": value}).mappings().first()


def one_snapshot(conn: Connection) -> None:
    """Make the rest of this (reading) transaction see one snapshot: PostgreSQL's REPEATABLE
    READ, before the transaction's first query. Its default, READ COMMITTED, gives each
    statement the newest commits, so a view read in several statements could show a commit's
    later rows without its earlier ones. SQLite's transactions already read one snapshot."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
