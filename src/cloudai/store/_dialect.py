"""Dialect-specific statement builders shared by the table modules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(conn: Connection, table: Table, key: str, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT (key) DO NOTHING; True when the row was inserted."""
    mod = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        mod.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[key])
        .returning(table.c[key])
    )
    # RETURNING, not rowcount: with an implicit RETURNING of the primary key, PostgreSQL
    # drivers do not report a reliable rowcount for INSERT ... ON CONFLICT.
    return conn.execute(stmt).first() is not None


def upsert(
    conn: Connection, table: Table, key: str, values: dict[str, Any], update: dict[str, Any]
) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE SET update."""
    mod = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        mod.insert(table).values(**values).on_conflict_do_update(index_elements=[key], set_=update)
    )
    conn.execute(stmt)


def lock_row(conn: Connection, table: Table, key: str, value: str) -> Any:
    """SELECT the row FOR UPDATE (PostgreSQL); SQLite's BEGIN IMMEDIATE already holds the lock."""
    stmt = table.select().where(table.c[key] == value)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return conn.execute(stmt).mappings().first()
