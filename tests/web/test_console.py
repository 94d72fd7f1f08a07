"""The web console in a real browser (Playwright driving Debian's Chromium) against a real
secure master: log in, watch a task live, cancel it from the page and see its timeline fill in
and its container leave the engine; what a user without rights sees and may do; the tasks view
with 1,000 tasks."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from docker.errors import NotFound as DockerNotFound

from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from tests.cluster import LocalCluster
from tests.helpers import TEST_IMAGE, eventually
from tests.web.conftest import goto, seed_tasks

LONG = ("sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done")


def spec(image: str = "busybox") -> TaskSpec:
    return TaskSpec(image=image, command=LONG, resources=Resources(cpu=0.5, mem_gb=0.1))


@pytest.fixture
def docker_web(docker: Any, sqlite_url: str, tmp_path: Any) -> Iterator[tuple[LocalCluster, str]]:
    """A master with the console on and one Docker worker of an ID unique to this test."""
    worker_id = f"web-{secrets.token_hex(3)}"
    c = LocalCluster(sqlite_url, tmp_path, http_listen="127.0.0.1:0")
    try:
        c.add_worker(worker_id, runtime="docker")
        yield c, worker_id
    finally:
        c.close()
        mine = {"label": f"cloudai.worker={worker_id}"}
        for container in docker.containers.list(all=True, sparse=True, filters=mine):
            with contextlib.suppress(DockerNotFound):  # gone meanwhile
                container.remove(force=True)


def test_log_in_watch_a_task_live_and_cancel_it(
    docker_web: tuple[LocalCluster, str], docker: Any, page_for: Any
) -> None:
    cluster, worker_id = docker_web
    page = page_for(cluster, cluster.token)
    page.evaluate("window.__notReloaded = true")
    task = cluster.client.submit(spec(TEST_IMAGE))
    row = page.locator(f'tr[data-task="{task.task_id}"]')
    row.locator(".s-running").wait_for()  # appeared, and turned running, with no reload
    assert page.evaluate("window.__notReloaded") is True

    assert row.get_by_role("link", name=task.task_id).get_attribute("href") == (
        f"/tasks/{task.task_id}"
    )
    goto(page, f"{cluster.master[0].web_server.url}tasks/{task.task_id}")
    page.locator("#log").filter(has_text="ready").wait_for()  # the live log tail
    its = {"label": f"cloudai.task={task.task_id}"}
    assert docker.containers.list(sparse=True, filters=its)  # it printed: its container runs
    page.evaluate("window.__notReloaded = true")
    page.get_by_label("Grace seconds").fill("5")
    page.get_by_label("Reason").fill("from the browser")
    page.get_by_role("button", name="Cancel task").click()
    for stage in ("requested", "delivered", "signalled", "exited", "removed"):
        page.locator(f'#timeline li[data-stage="{stage}"].done').wait_for()
    assert page.evaluate("window.__notReloaded") is True
    page.locator("#t-status .s-cancelled").wait_for()
    page.locator("#events tbody").filter(has_text="from the browser").wait_for()
    assert not page.get_by_role("button", name="Cancel task").is_visible()

    done = cluster.client.get_task(task.task_id)
    assert done.status.value == "cancelled"
    assert done.cancellation is not None and done.cancellation.requested_by == "admin"
    eventually(
        lambda: (
            not docker.containers.list(
                all=True, ignore_removed=True, filters={"label": f"cloudai.task={task.task_id}"}
            )
        ),
        what=f"task {task.task_id}'s container to be gone from the engine",
    )


@pytest.fixture
def web(sqlite_url: str, tmp_path: Any) -> Iterator[LocalCluster]:
    c = LocalCluster(sqlite_url, tmp_path, http_listen="127.0.0.1:0")
    try:
        c.add_worker("w1")
        yield c
    finally:
        c.close()


def test_a_user_without_rights_sees_no_controls_and_is_refused(
    web: LocalCluster, page_for: Any
) -> None:
    ann_token = web.client.add_user("ann", False).token
    bob_token = web.client.add_user("bob", False).token
    task = web.client_with(ann_token).submit(spec())
    web.wait_status(task.task_id, "running")
    base = web.master[0].web_server.url

    ann = page_for(web, ann_token)  # the owner: the control is there
    goto(ann, f"{base}tasks/{task.task_id}")
    ann.get_by_role("button", name="Cancel task").wait_for()

    bob = page_for(web, bob_token)
    goto(bob, f"{base}tasks/{task.task_id}")
    bob.locator("#toast").filter(has_text="may not show").wait_for()
    assert not bob.get_by_role("button", name="Cancel task").is_visible()
    assert bob.locator(f'tr[data-task="{task.task_id}"]').count() == 0
    goto(bob, f"{base}workers")
    bob.locator('tr[data-worker="w1"]').wait_for()
    assert bob.get_by_role("button", name="Drain worker w1").count() == 0

    # forged requests from bob's logged-in page: with its CSRF token, and without
    # (retried on a network error: Chromium drops a request when an interface comes or goes,
    # as at every container start on this machine; the server's answer is what is tested)
    forged = """async ([id, csrf]) => {
        for (let i = 0; ; i++) {
            try {
                const r = await fetch(`/api/v1/tasks/${id}/cancel`, {method: "POST",
                    headers: Object.assign({"Content-Type": "application/json"},
                                           csrf ? {"X-CSRF-Token": csrf} : {}),
                    body: JSON.stringify({force: true})});
                return [r.status, (await r.json()).error.message];
            } catch (e) {
                if (!(e instanceof TypeError) || i >= 20) throw e;
                await new Promise((ok) => setTimeout(ok, 250));
            }
        }
    }"""
    csrf = bob.locator("#app").get_attribute("data-csrf")
    status, message = bob.evaluate(forged, [task.task_id, csrf])
    assert status == 403 and "not the owner" in message
    status, message = bob.evaluate(forged, [task.task_id, ""])
    assert status == 403 and "CSRF" in message
    assert web.client.get_task(task.task_id).status.value == "running"
    denied = [e for e in web.client.get_task(task.task_id).events if e.kind == "denied"]
    assert {e.actor for e in denied} == {"bob"}

    admin = page_for(web, web.token)  # an admin does see drain
    goto(admin, f"{base}workers")
    admin.get_by_role("button", name="Drain worker w1").click()
    admin.get_by_role("button", name="Undrain worker w1").wait_for()
    assert web.client.list_workers()[0].drained


def test_the_tasks_view_with_1000_tasks_renders_filters_and_bulk_cancels(
    sqlite_url: str, tmp_path: Any, page_for: Any
) -> None:
    ids = seed_tasks(sqlite_url, 1000)
    c = LocalCluster(sqlite_url, tmp_path, http_listen="127.0.0.1:0")  # no worker: all pending
    try:
        page = page_for(c, c.token)
        page.locator("#count").filter(has_text="1000 of 1000 shown").wait_for()
        assert page.locator("#tasks tbody tr").count() == 1000
        assert page.locator("#queue-n").inner_text() == "(1000)"
        assert page.locator("#queue li a").first.inner_text() == ids[0]  # the queue in order

        page.get_by_label("Owner").fill("ann")
        page.locator("#count").filter(has_text="500 of 1000 shown").wait_for()
        page.get_by_label("Task ID").fill(ids[42])
        page.locator("#count").filter(has_text="1 of 1000 shown").wait_for()
        page.get_by_label("Task ID").fill("")
        page.get_by_label("Owner").fill("")
        page.get_by_label("Status").select_option("cancelled")
        page.locator("#count").filter(has_text="0 of 1000 shown").wait_for()

        # bulk cancel bob's tasks: a preview of exactly those, then the confirmation
        page.get_by_label("Status").select_option("")
        page.get_by_label("Owner").fill("bob")
        page.locator("#count").filter(has_text="500 of 1000 shown").wait_for()
        bulk = page.get_by_role("button", name="Cancel the shown active tasks…")
        bulk.click()
        page.keyboard.press("Escape")  # the preview closes without cancelling anything
        assert not page.locator("#bulk").is_visible()
        assert c.client.list_tasks(status="cancelled") == []
        bulk.focus()
        page.keyboard.press("Enter")  # and opens from the keyboard too
        assert page.locator("#bulk").is_visible()
        assert page.locator("#bulk-n").inner_text() == "500"
        assert page.locator("#bulk-list li").count() == 500
        page.locator("#bulk").get_by_label("Reason").fill("bulk from the console")
        page.get_by_role("button", name="Cancel these tasks").click()
        page.locator("#toast").filter(has_text="500 cancelled").wait_for()
        page.get_by_label("Status").select_option("cancelled")
        page.locator("#count").filter(has_text="500 of 1000 shown").wait_for()  # live
        bobs = {t.task_id for t in c.client.list_tasks(status="cancelled")}
        assert bobs == set(ids[1::2])
    finally:
        c.close()
