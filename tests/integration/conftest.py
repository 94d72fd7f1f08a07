from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import LocalCluster


@pytest.fixture
def cluster(sqlite_url: str, tmp_path: Any) -> Iterator[LocalCluster]:
    """A master on SQLite with two process-runtime workers (2 CPU, 4 GB each)."""
    c = LocalCluster(sqlite_url, tmp_path)
    try:
        c.add_worker("w1")
        c.add_worker("w2")
        yield c
    finally:
        c.close()
