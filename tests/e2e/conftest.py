from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from docker.errors import APIError as DockerAPIError
from docker.errors import NotFound

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
        mine = {"label": "cloudai.task"}
        for container in docker.containers.list(all=True, ignore_removed=True, filters=mine):
            if container.labels.get("cloudai.worker") in ("w1", "w2"):
                with contextlib.suppress(NotFound):  # its worker removed it meanwhile
                    container.remove(force=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    """Keep each phase's report on the test item (`item.rep_call`), so a fixture's teardown
    can tell whether the test itself passed (e.g. to print the process logs when it did not)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def docker_worker_ids() -> tuple[str, str]:
    """Two worker IDs unique to this test: `w1-<hex>`, `w2-<hex>`."""
    suffix = secrets.token_hex(3)
    return f"w1-{suffix}", f"w2-{suffix}"


@pytest.fixture
def isolated_docker_cluster(
    docker: Any, tmp_path: Any, docker_worker_ids: tuple[str, str]
) -> Iterator[ProcCluster]:
    """Like docker_cluster, but with the workers of `docker_worker_ids`. Workers find their
    containers by the label cloudai.worker=ID: with unique IDs, another cluster on the same
    Docker engine (a parallel test run) neither re-adopts nor removes this one's containers,
    and this one leaves theirs alone."""
    c = ProcCluster(tmp_path)
    try:
        for worker_id in docker_worker_ids:
            c.add_worker(worker_id)
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()
        for worker_id in docker_worker_ids:
            for found in docker.api.containers(
                all=True, filters={"label": f"cloudai.worker={worker_id}"}
            ):
                with contextlib.suppress(DockerAPIError):  # gone or going already
                    docker.api.remove_container(found["Id"], force=True)
