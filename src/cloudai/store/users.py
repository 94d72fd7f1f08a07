"""users and join_tokens: who may use the cluster, and who may join it. Only this module
writes them. Tokens are stored as sha256 hashes; the plain token is shown once, at creation."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select, update

from cloudai.store.schema import join_tokens, users

__all__ = [
    "User",
    "add",
    "admins",
    "by_token_hash",
    "consume_join_token",
    "count",
    "get",
    "join_token_hash",
    "list_all",
    "remove",
    "save_join_token",
]


@dataclass(frozen=True, slots=True)
class User:
    name: str
    admin: bool
    created_at: float = 0.0
    created_by: str = ""


def _user(row: object) -> User:
    r = row._mapping  # type: ignore[attr-defined]
    return User(r["name"], bool(r["admin"]), r["created_at"], r["created_by"])


def add(
    conn: Connection, name: str, token_hash: str, admin: bool, now: float, by: str = ""
) -> bool:
    """False when the name is taken."""
    if get(conn, name) is not None:
        return False
    conn.execute(
        insert(users).values(
            name=name, token_hash=token_hash, admin=admin, created_at=now, created_by=by
        )
    )
    return True


def get(conn: Connection, name: str) -> User | None:
    row = conn.execute(select(users).where(users.c.name == name)).first()
    return _user(row) if row is not None else None


def by_token_hash(conn: Connection, token_hash: str) -> User | None:
    row = conn.execute(select(users).where(users.c.token_hash == token_hash)).first()
    return _user(row) if row is not None else None


def list_all(conn: Connection) -> list[User]:
    return [_user(r) for r in conn.execute(select(users).order_by(users.c.name))]


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def admins(conn: Connection) -> int:
    return int(
        conn.execute(select(func.count()).select_from(users).where(users.c.admin)).scalar_one()
    )


def remove(conn: Connection, name: str) -> bool:
    return bool(conn.execute(delete(users).where(users.c.name == name)).rowcount)


def save_join_token(
    conn: Connection, token_id: str, secret_hash: str, by: str, now: float, expires_at: float
) -> None:
    conn.execute(
        insert(join_tokens).values(
            token_id=token_id,
            secret_hash=secret_hash,
            created_by=by,
            created_at=now,
            expires_at=expires_at,
        )
    )


def join_token_hash(conn: Connection, token_id: str) -> tuple[str, float, float | None] | None:
    """(secret_hash, expires_at, used_at) of a join token."""
    row = conn.execute(
        select(join_tokens.c.secret_hash, join_tokens.c.expires_at, join_tokens.c.used_at).where(
            join_tokens.c.token_id == token_id
        )
    ).first()
    return (row[0], row[1], row[2]) if row is not None else None


def consume_join_token(conn: Connection, token_id: str, worker_id: str, now: float) -> bool:
    """Mark a join token used, once: the guarded UPDATE decides between two racing joins."""
    done = conn.execute(
        update(join_tokens)
        .where(
            join_tokens.c.token_id == token_id,
            join_tokens.c.used_at.is_(None),
            join_tokens.c.expires_at > now,
        )
        .values(used_at=now, used_by=worker_id)
    )
    return bool(done.rowcount)
