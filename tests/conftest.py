"""Shared fixtures: store URLs for SQLite and a real PostgreSQL, a Docker client."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import docker_client, need


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'cloudai.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server named by CLOUDAI_TEST_PG_URL (scripts/test.sh
    starts one), dropped afterwards."""
    base = os.environ.get("CLOUDAI_TEST_PG_URL")
    if not base:
        need("PostgreSQL", "CLOUDAI_TEST_PG_URL is not set (scripts/test.sh sets it)")
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        need("PostgreSQL", f"cannot create a database on {base}: {exc}")
    url = base.rsplit("/", 1)[0] + "/" + name
    yield url
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store test runs on SQLite and on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def docker() -> Any:
    return docker_client()
