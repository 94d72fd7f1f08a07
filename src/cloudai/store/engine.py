"""Opening the store: URL handling, migrations, and running blocking SQL off the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import InterfaceError, OperationalError

from cloudai.errors import InvalidArgument, StoreUnavailable, Unavailable

__all__ = ["Store", "default_sqlite_url", "masked_url", "normalize_url"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_HERE = pathlib.Path(__file__).resolve().parent


def default_sqlite_url(home: pathlib.Path) -> str:
    return f"sqlite:///{home / 'cloudai.db'}"


def masked_url(url: str) -> str:
    """A database URL fit to print: its password replaced by ***."""
    return re.sub(r"^([a-z0-9+]+://[^:/@]*):[^@/]*@", r"\1:***@", url, flags=re.I)


def normalize_url(url: str) -> str:
    """Accept `postgresql://`, `postgres://` and `sqlite:///path`; pick the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    raise InvalidArgument(
        f"unsupported database URL {masked_url(url)[:120]!r}: use sqlite:///PATH or "
        "postgresql://..."
    )


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Take the write lock at BEGIN, so a read-then-write never meets a lock upgrade failure.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Store:
    """The database, migrated to the newest schema, with an executor for blocking calls.

    `await store.tx(fn, *args)` runs `fn(conn, *args)` in one transaction on a worker thread.
    SQLite gets one thread (it has one writer anyway); PostgreSQL a small pool.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = self.url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(self.url)
            _sqlite_pragmas(self.engine)
        else:
            self.engine = create_engine(
                self.url, pool_size=8, max_overflow=4, pool_pre_ping=True, pool_timeout=10
            )
        self._executor = ThreadPoolExecutor(
            max_workers=1 if self.is_sqlite else 8, thread_name_prefix="store"
        )
        self.observe: Callable[[float], object] = lambda _seconds: None  # a metrics hook
        if migrate:
            self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(_HERE / "alembic"))
        deadline = time.monotonic() + float(os.environ.get("CLOUDAI_DB_CONNECT_TIMEOUT", "15"))
        while True:
            try:
                with self.engine.connect() as conn:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                    conn.commit()
                return
            except OperationalError as exc:
                if time.monotonic() > deadline:
                    raise Unavailable(f"database unreachable: {exc.orig}") from exc
                time.sleep(0.5)

    def tx_sync(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            with self.engine.begin() as conn:
                return fn(conn, *args)
        except (OperationalError, InterfaceError) as exc:  # down, unreachable, locked, full
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if "full" in reason:  # SQLite's SQLITE_FULL: the disk under the file
                reason += " (writes resume once space is freed)"
            raise StoreUnavailable(f"database unavailable: {reason}") from exc

    async def tx(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            return await loop.run_in_executor(self._executor, self.tx_sync, fn, *args)
        finally:
            self.observe(time.perf_counter() - started)

    def close(self) -> None:
        # Queued transactions are dropped (their callers are gone); a running one finishes.
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.engine.dispose()
