"""The SQL store: SQLite by default, PostgreSQL by URL. One module owns each table."""

from cloudai.store.engine import Store, default_sqlite_url, normalize_url

__all__ = ["Store", "default_sqlite_url", "normalize_url"]
