"""The store the contract suites run against: SQLite, then PostgreSQL (`store_url`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cloudai.store.engine import Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()
