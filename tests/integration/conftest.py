from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import LocalCluster


@pytest.fixture
def cluster(store_url: str, tmp_path: Any) -> Iterator[LocalCluster]:
    """A master (SQLite, then PostgreSQL) with two process-runtime workers (2 CPU, 4 GB each)."""
    c = LocalCluster(store_url, tmp_path)
    try:
        c.add_worker("w1")
        c.add_worker("w2")
        yield c
    finally:
        c.close()


@pytest.fixture
def one_slot(store_url: str, tmp_path: Any) -> Iterator[LocalCluster]:
    """One worker, w1, with room for exactly one 1-CPU task (on SQLite, then on PostgreSQL)."""
    c = LocalCluster(store_url, tmp_path)
    try:
        c.add_worker("w1", cpu=1, mem=1)
        yield c
    finally:
        c.close()
