from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import ProcCluster


@pytest.fixture
def docker_cluster(docker: Any, tmp_path: Any) -> Iterator[ProcCluster]:
    """A master process (SQLite) and two Docker worker processes on loopback."""
    c = ProcCluster(tmp_path)
    try:
        c.add_worker("w1")
        c.add_worker("w2")
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()
        for container in docker.containers.list(all=True, filters={"label": "cloudai.task"}):
            if container.labels.get("cloudai.worker") in ("w1", "w2"):
                container.remove(force=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    """Keep each phase's report on the test item (`item.rep_call`), so a fixture's teardown
    can tell whether the test itself passed (e.g. to print the process logs when it did not)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
