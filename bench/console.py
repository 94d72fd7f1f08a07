"""`python -m bench.console`: the web console's tasks view with 1,000 tasks in Chromium — how
long it takes to render, and to filter (the figure docs/performance.md quotes). With
`--screenshot PATH`, also a picture of the console with a worker and a few tasks (the README's).

Needs Playwright and Debian's chromium (scripts/test.sh installs both)."""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import tempfile
import time
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from cloudai.cli.secure import init_pki, pki_of
from cloudai.core.models import TaskSpec, new_task_id
from cloudai.core.resources import Resources
from cloudai.master import planner
from cloudai.master.app import MasterSecurity, serve_master, shutdown_master
from cloudai.master.config import MasterConfig
from cloudai.security.tls import Tls
from cloudai.store import Store
from cloudai.worker.app import WorkerConfig, serve_worker

CHROMIUM = "/usr/bin/chromium"
LONG = ("sh", "-c", "echo starting; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done")


def _seed(store: Any, n: int) -> None:
    def insert(conn: Any) -> None:
        now = time.time()
        for i in range(n):
            spec = TaskSpec(
                image="busybox",
                command=("true",),
                resources=Resources(cpu=0.1, mem_gb=0.01),
                owner=("ann", "bob")[i % 2],
                name=f"job-{i}",
            )
            planner.submit(conn, new_task_id(), spec, now + i * 1e-3, 1.0)

    store.tx_sync(insert)


_NETWORK_CHANGED = ("ERR_NETWORK_CHANGED", "chrome-error://", "interrupted by another navigation")


def _goto(page: Any, url: str) -> None:
    """page.goto, again when Chromium dropped the page or its script over a network change
    (ERR_NETWORK_CHANGED, when an interface comes or goes: a container's veth on this
    machine). As tests/web/conftest.py does."""
    for attempt in range(5):
        try:
            page.goto(url)
            if url.endswith("/login"):
                return
            page.wait_for_function(
                "document.documentElement.dataset.console === 'up'", timeout=10_000
            )
            return
        except PlaywrightError as exc:  # a Playwright timeout is one too
            if attempt == 4 or not (
                isinstance(exc, PlaywrightTimeout) or any(m in str(exc) for m in _NETWORK_CHANGED)
            ):
                raise


def _login(page: Any, url: str, token: str) -> None:
    _goto(page, url + "login")
    page.get_by_label("Your user token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/tasks")


_FETCH = """() => performance.getEntriesByType("resource")
  .filter((e) => e.name.endsWith("/api/v1/tasks"))[0].duration"""
# from the navigation's start to the first rendering of the list, in the page's own clock
_RENDERED = """() => performance.getEntriesByName("tasks-rendered")[0].startTime"""
_FILTER = """(owner) => {
  const input = document.getElementById("f-owner"), t0 = performance.now();
  input.value = owner; input.dispatchEvent(new Event("input", {bubbles: true}));
  return performance.now() - t0;
}"""


def measure(browser: Any, url: str, token: str, runs: int) -> dict[str, float]:
    ctx = browser.new_context(ignore_https_errors=True)
    ctx.set_default_timeout(120_000)  # a busy machine: a figure, however slow, not a failure
    page = ctx.new_page()
    _login(page, url, token)
    renders, filters, fetches, walls = [], [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        _goto(page, url + "tasks")
        page.locator("#count").filter(has_text="1000 of 1000 shown").wait_for()
        walls.append(time.perf_counter() - t0)
        renders.append(page.evaluate(_RENDERED) / 1000)
        fetches.append(page.evaluate(_FETCH) / 1000)
        for owner in ("ann", "", "bob", ""):
            filters.append(page.evaluate(_FILTER, owner) / 1000)
    ctx.close()
    return {
        "render_s": statistics.median(renders),
        "wall_s": statistics.median(walls),
        "fetch_s": statistics.median(fetches),
        "filter_s": statistics.median(filters),
    }


async def _start(tmp: pathlib.Path, with_worker: bool, seed: int = 0) -> tuple[Any, Any, Any, str]:
    home = tmp / "home"
    home.mkdir()
    token = init_pki(home, [])
    pki = pki_of(home)
    url = f"sqlite:///{tmp / 'b.db'}"
    if seed:  # before the master starts: its loops need not wait for one long transaction
        store = Store(url)
        _seed(store, seed)
        store.close()
    cfg = MasterConfig(heartbeat_interval=0.5, dispatch_interval=0.1, http_listen="127.0.0.1:0")
    cluster, served, port = await serve_master(
        "127.0.0.1:0", url, cfg, MasterSecurity(pki, "127.0.0.1:0")
    )
    worker = None
    if with_worker:
        pki.issue_worker("gpu-box-1")
        worker = await serve_worker(
            WorkerConfig(
                worker_id="gpu-box-1",
                master=f"127.0.0.1:{port}",
                listen="127.0.0.1:0",
                runtime="process",
                capacity=Resources(cpu=8, mem_gb=16, storage_gb=50),
                state_dir=str(tmp / "w"),
                advertise="",
                heartbeat_interval=0.5,
                tls=Tls.for_worker(pki, "gpu-box-1"),
                gpu_ids=(),
            )
        )
    return cluster, served, worker, token


def screenshot(browser: Any, path: pathlib.Path) -> None:
    with tempfile.TemporaryDirectory() as d:
        loop = asyncio.new_event_loop()
        import threading

        threading.Thread(target=loop.run_forever, daemon=True).start()

        def run(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

        cluster, served, worker, token = run(_start(pathlib.Path(d), True))
        try:
            from cloudai.master.auth import Caller

            admin = Caller("admin", True)
            ids = []
            for i, (cpu, mem) in enumerate([(2, 4), (1, 2), (0.5, 1), (4, 6), (6, 8)]):
                spec = TaskSpec(
                    image="busybox",
                    command=LONG,
                    resources=Resources(cpu=cpu, mem_gb=mem),
                    name=["train-resnet", "etl-nightly", "notebook", "eval-llm", "render"][i],
                )
                ids.append(run(cluster.submit(spec, admin)).task_id)
            time.sleep(2)
            run(cluster.cancel([ids[1]], admin, "superseded by v2", False, 2.0))
            time.sleep(3)
            ctx = browser.new_context(
                ignore_https_errors=True, viewport={"width": 1280, "height": 720}
            )
            page = ctx.new_page()
            url = cluster.web_server.url
            _login(page, url, token)
            _goto(page, f"{url}tasks/{ids[1]}")  # the cancelled one: its timeline
            page.locator('#timeline li[data-stage="removed"].done').wait_for()
            page.locator("#log").filter(has_text="tick").wait_for()
            page.screenshot(path=str(path.with_name(path.stem + "-task.png")))
            _goto(page, f"{url}workers")
            page.locator('tr[data-worker="gpu-box-1"]').wait_for()
            time.sleep(1)
            page.screenshot(path=str(path.with_name(path.stem + "-workers.png")))
            _goto(page, f"{url}tasks")
            page.locator("#tasks tbody tr").first.wait_for()
            time.sleep(1)
            page.screenshot(path=str(path))
            ctx.close()
            run(cluster.cancel(ids, admin, "screenshot taken", True, None))
            time.sleep(1)
        finally:
            if worker is not None:
                run(worker.shutdown())
            run(shutdown_master(cluster, served))
            loop.call_soon_threadsafe(loop.stop)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--screenshot", type=pathlib.Path, help="also write the README's screenshot")
    args = p.parse_args()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        with tempfile.TemporaryDirectory() as d:
            loop = asyncio.new_event_loop()
            import threading

            threading.Thread(target=loop.run_forever, daemon=True).start()
            cluster, served, _, token = asyncio.run_coroutine_threadsafe(
                _start(pathlib.Path(d), False, seed=1000), loop
            ).result(120)
            figures = measure(browser, cluster.web_server.url, token, args.runs)
            asyncio.run_coroutine_threadsafe(shutdown_master(cluster, served), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)
        print(
            f"console, 1,000 tasks (median of {args.runs}): navigation start to the list "
            f"rendered {figures['render_s'] * 1000:.0f} ms (of which GET /api/v1/tasks "
            f"{figures['fetch_s'] * 1000:.0f} ms; {figures['wall_s'] * 1000:.0f} ms as Playwright "
            f"sees it); a filter {figures['filter_s'] * 1000:.1f} ms"
        )
        if args.screenshot:
            screenshot(browser, args.screenshot)
            print(f"screenshot: {args.screenshot}")
        browser.close()


if __name__ == "__main__":
    main()
