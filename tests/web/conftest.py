"""A secure in-process cluster with the web console on, and an HTTP client for its API."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cloudai.core.models import TaskSpec, new_task_id
from cloudai.core.resources import Resources
from cloudai.master import planner
from cloudai.store import Store
from tests.cluster import LocalCluster
from tests.helpers import need

CHROMIUM = os.environ.get("CLOUDAI_TEST_CHROMIUM", "/usr/bin/chromium")


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
def web_cluster(store_url: str, tmp_path: Any) -> Iterator[LocalCluster]:
    """A master (SQLite, then PostgreSQL) with --http-listen on a free port and one
    process-runtime worker."""
    c = LocalCluster(store_url, tmp_path, http_listen="127.0.0.1:0")
    try:
        c.add_worker("w1")
        yield c
    finally:
        c.close()


@pytest.fixture
def http(web_cluster: LocalCluster) -> Http:
    return Http(web_cluster)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (its own browser download cannot work here).
    Per module, not per session: Playwright's sync API keeps an event loop running in this
    thread while it lives, and the asyncio tests that follow need the thread free."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        need("Playwright", f"{exc} (scripts/test.sh installs it)")
    if not shutil.which(CHROMIUM):
        need("Chromium", f"no {CHROMIUM} (apt-get install chromium; scripts/test.sh does)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page_for(browser: Any) -> Iterator[Any]:
    """page_for(cluster, token): a fresh browser context, logged in to the console."""
    contexts: list[Any] = []

    def open_as(cluster: LocalCluster, token: str) -> Any:
        ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1366, "height": 800})
        ctx.set_default_timeout(30_000)
        contexts.append(ctx)
        page = ctx.new_page()
        n = len(contexts)
        # what the page said, printed at the end (pytest shows it when the test failed)
        page.on("console", lambda m: print(f"page {n} console: {m.text}"))
        page.on("requestfailed", lambda r: print(f"page {n} failed: {r.url} {r.failure}"))
        page.on("framenavigated", lambda f: print(f"page {n} at {f.url}"))
        login(page, cluster.master[0].web_server.url, token)
        return page

    yield open_as
    for ctx in contexts:
        for page in ctx.pages:
            print(f"last seen at {page.url}; toast: {page.locator('#toast').all_inner_texts()}")
        ctx.close()


# What Chromium says when it dropped a navigation over a network change (and went on to its
# error page, or navigated again by itself).
NETWORK_CHANGED = ("ERR_NETWORK_CHANGED", "chrome-error://", "interrupted by another navigation")


def goto(page: Any, url: str) -> None:
    """page.goto, again when Chromium dropped the page or its script over a network change
    (ERR_NETWORK_CHANGED: it aborts requests when a network interface comes or goes, as a
    container's veth does on this machine; a known Chromium behaviour, not the console's).
    The console's own requests retry the same way (console.js)."""
    from playwright.sync_api import Error as PlaywrightError

    for attempt in range(5):
        try:
            page.goto(url)
            if url.endswith("/login") or _script_runs(page):
                return
        except PlaywrightError as exc:
            if not any(m in str(exc) for m in NETWORK_CHANGED) or attempt == 4:
                raise
    raise AssertionError(f"{url}: the console's script never ran (see the page log above)")


def _script_runs(page: Any) -> bool:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("document.documentElement.dataset.console === 'up'", timeout=10_000)
        return True
    except PlaywrightTimeout:
        return False


def login(page: Any, url: str, token: str) -> None:
    """The login form, as a user fills it in (again if a network blip dropped it)."""
    for attempt in range(3):
        goto(page, url + "login")
        page.get_by_label("Your user token").fill(token)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda u: u.endswith("/tasks") or u.startswith("chrome-error://"))
        if page.url.endswith("/tasks") and _script_runs(page):
            break
        if attempt == 2:
            raise AssertionError(f"could not log in: the page is at {page.url}")
    page.wait_for_selector("#live.on")  # the event stream is connected


def seed_tasks(url: str, n: int, owners: tuple[str, ...] = ("ann", "bob")) -> list[str]:
    """`n` pending tasks straight into the store at `url` (as many submits would leave them),
    before a master starts on it: one long transaction need not hold up the master's loops."""
    store = Store(url)
    ids = [new_task_id() for _ in range(n)]

    def insert(conn: Any) -> None:
        now = time.time()
        for i, task_id in enumerate(ids):
            spec = TaskSpec(
                image="busybox",
                command=("true",),
                resources=Resources(cpu=0.1, mem_gb=0.01),
                owner=owners[i % len(owners)],
                name=f"job-{i}",
            )
            planner.submit(conn, task_id, spec, now + i * 1e-3, 1.0)

    try:
        store.tx_sync(insert)
    finally:
        store.close()
    return ids
