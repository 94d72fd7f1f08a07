"""A secure in-process cluster with the web console on, and an HTTP client for its API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.cluster import LocalCluster


class Http:
    """requests against the console, trusting the cluster's CA."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.url = cluster.master[0].web_server.url.rstrip("/")
        self.ca = str(cluster.pki.ca_cert) if cluster.pki else False
        self.session = requests.Session()

    def call(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(
            method, self.url + path, headers=headers, verify=self.ca, timeout=30, **kwargs
        )

    def sse(self, path: str, token: str, until: Any, limit: int = 10_000) -> list[tuple[str, Any]]:
        """Read server-sent events from `path` until `until(events)` is true (or the stream
        ends); (event, data) pairs."""
        seen: list[tuple[str, Any]] = []
        with self.call("GET", path, token, stream=True) as resp:
            assert resp.status_code == 200, resp.text
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            kind = ""
            for line in resp.iter_lines(decode_unicode=True):
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    seen.append((kind, json.loads(line[6:])))
                    if until(seen) or len(seen) >= limit:
                        break
        return seen


@pytest.fixture
def web_cluster(sqlite_url: str, tmp_path: Any) -> Iterator[LocalCluster]:
    """A master with --http-listen on a free port and one process-runtime worker."""
    c = LocalCluster(sqlite_url, tmp_path, http_listen="127.0.0.1:0")
    try:
        c.add_worker("w1")
        yield c
    finally:
        c.close()


@pytest.fixture
def http(web_cluster: LocalCluster) -> Http:
    return Http(web_cluster)
