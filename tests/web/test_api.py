"""The console's HTTP API (/api/v1/) on a real secure master: the same rules, audit events and
errors as the gRPC API, as JSON with HTTP statuses; the OpenAPI document; the event streams."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate

from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.errors import Unavailable
from cloudai.security.tokens import new_user_token
from cloudai.web.session import COOKIE, CSRF_HEADER, csrf_of
from tests.cluster import LocalCluster
from tests.helpers import eventually
from tests.web.conftest import Http

LONG = (
    "sh",
    "-c",
    "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.05; done",
)


def spec(*command: str) -> TaskSpec:
    return TaskSpec(
        image="busybox", command=command or LONG, resources=Resources(cpu=0.5, mem_gb=0.1)
    )


def error(resp: Any, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert body["error"]["status"] == status
    return str(body["error"]["message"])


def test_errors_are_json_with_the_right_status(web_cluster: LocalCluster, http: Http) -> None:
    admin = web_cluster.token
    ann = web_cluster.client.add_user("ann", False).token
    bob = web_cluster.client.add_user("bob", False).token
    # 401: no token, a malformed one, an unknown one
    assert "no token" in error(http.call("GET", "/api/v1/tasks"), 401)
    error(http.call("GET", "/api/v1/workers", "nonsense"), 401)
    assert "unknown or revoked" in error(http.call("GET", "/api/v1/workers", new_user_token()), 401)
    # 404: a task or worker that does not exist
    assert "not found" in error(http.call("GET", "/api/v1/tasks/t-nope", admin), 404)
    error(http.call("POST", "/api/v1/workers/nope/drain", admin), 404)
    error(http.call("GET", "/api/v1/no/such/path", admin), 404)
    # 422: bad input
    error(http.call("GET", "/api/v1/tasks?status=sleeping", ann), 422)
    error(http.call("GET", "/api/v1/tasks?limit=-1", ann), 422)
    error(http.call("GET", "/api/v1/tasks?limit=ten", ann), 422)
    error(http.call("GET", "/api/v1/tasks?limit=" + "9" * 30, ann), 422)
    error(http.call("POST", "/api/v1/tasks/cancel", ann, json={"task_ids": []}), 422)
    error(http.call("POST", "/api/v1/tasks/cancel", ann, json={"task_ids": ["a b"]}), 422)
    error(http.call("POST", "/api/v1/tasks/cancel", ann, json=["t"]), 422)
    task = web_cluster.client_with(ann).submit(spec("echo", "hi"))
    web_cluster.wait_status(task.task_id, "completed")
    path = f"/api/v1/tasks/{task.task_id}/cancel"
    error(http.call("POST", path, ann, json={"grace": "soon"}), 422)
    error(http.call("POST", path, ann, json={"force": "yes"}), 422)
    error(http.call("POST", path, ann, json={"grace": -1}), 422)
    error(http.call("POST", path, ann, json={"color": "red"}), 422)
    error(http.call("POST", path, ann, data="not json"), 422)
    error(http.call("POST", "/api/v1/tasks/bad id!/cancel", ann, json={}), 422)
    # 403: another user's task (an audit event on it), admin-only actions, no CSRF token
    assert "not the owner" in error(http.call("GET", f"/api/v1/tasks/{task.task_id}", bob), 403)
    assert "not the owner" in error(http.call("POST", path, bob, json={}), 403)
    error(http.call("POST", "/api/v1/workers/w1/drain", ann), 403)
    events = web_cluster.client.get_task(task.task_id).events
    assert [e.actor for e in events if e.kind == "denied"] == ["bob", "bob"]
    # 409: already completed
    body = http.call("POST", path, ann, json={"reason": "late"})
    assert body.status_code == 409, body.text
    assert body.json()["error_code"] == "FAILED_PRECONDITION"
    assert body.json()["success"] is False


def test_cookie_sessions_need_the_csrf_token(web_cluster: LocalCluster, http: Http) -> None:
    ann = web_cluster.client.add_user("ann", False).token
    task = web_cluster.client_with(ann).submit(spec())
    web_cluster.wait_status(task.task_id, "running")
    cookies = {COOKIE: ann}
    path = f"/api/v1/tasks/{task.task_id}/cancel"
    assert http.call("GET", f"/api/v1/tasks/{task.task_id}", cookies=cookies).status_code == 200
    assert "CSRF" in error(http.call("POST", path, cookies=cookies, json={}), 403)
    wrong = {CSRF_HEADER: csrf_of("cai_someone_else")}
    error(http.call("POST", path, cookies=cookies, headers=wrong, json={}), 403)
    assert web_cluster.client.get_task(task.task_id).status.value == "running"
    ok = http.call("POST", path, cookies=cookies, headers={CSRF_HEADER: csrf_of(ann)}, json={})
    assert ok.status_code == 200 and ok.json()["success"], ok.text


def test_tasks_workers_cancel_and_drain(web_cluster: LocalCluster, http: Http) -> None:
    admin = web_cluster.token
    ann_client = web_cluster.user("ann")
    mine = ann_client.submit(spec())
    theirs = web_cluster.client.submit(spec())
    for t in (mine, theirs):
        web_cluster.wait_status(t.task_id, "running")
    listed = http.call("GET", "/api/v1/tasks", admin).json()
    assert {t["task_id"] for t in listed["tasks"]} >= {mine.task_id, theirs.task_id}
    shown = http.call("GET", f"/api/v1/tasks/{mine.task_id}", admin).json()
    assert shown["status"] == "running" and shown["worker_id"] == "w1"
    assert {"events", "cancellation", "usage", "owner", "resources"} <= set(shown)
    only = http.call("GET", "/api/v1/tasks?status=running&worker=w1&owner=ann", admin).json()
    assert [t["task_id"] for t in only["tasks"]] == [mine.task_id]
    workers = http.call("GET", "/api/v1/workers", admin).json()["workers"]
    assert [w["worker_id"] for w in workers] == ["w1"]
    assert http.call("POST", "/api/v1/workers/w1/drain", admin).json()["drained"] is True
    assert http.call("POST", "/api/v1/workers/w1/undrain", admin).json()["drained"] is False
    done = http.call(
        "POST", f"/api/v1/tasks/{mine.task_id}/cancel", admin, json={"grace": 5, "reason": "web"}
    )
    assert done.status_code == 200 and done.json()["success"], done.text
    task = web_cluster.wait_status(mine.task_id, "cancelled")
    assert task.cancellation.reason == "web" and task.cancellation.requested_by == "admin"
    bulk = http.call(
        "POST",
        "/api/v1/tasks/cancel",
        admin,
        json={"task_ids": [theirs.task_id, mine.task_id], "force": True},
    ).json()
    assert [a["success"] for a in bulk["acks"]] == [True, True]
    assert bulk["acks"][1]["already"] is True


def test_events_and_logs_stream(web_cluster: LocalCluster, http: Http) -> None:
    admin = web_cluster.token
    got: list[Any] = []
    listening = threading.Thread(
        target=lambda: got.extend(
            http.sse(
                "/api/v1/events",
                admin,
                lambda ev: any(
                    k == "task" and d["event"]["kind"] == "cancel_requested" for k, d in ev
                ),
            )
        ),
        daemon=True,
    )
    listening.start()
    eventually(lambda: web_cluster.master[0].web_server.feed._subs, what="a subscriber")
    task = web_cluster.client.submit(spec())
    web_cluster.wait_status(task.task_id, "running")
    logs = http.sse(
        f"/api/v1/tasks/{task.task_id}/logs?follow=1",
        admin,
        lambda ev: "ready" in "".join(d.get("data", "") for _, d in ev),
    )
    assert logs[0][0] == "log"
    web_cluster.client.cancel(task.task_id)
    listening.join(20)
    assert not listening.is_alive(), got
    kinds = [
        (k, d["event"]["kind"]) for k, d in got if k == "task" and d["task_id"] == task.task_id
    ]
    assert ("task", "submitted") in kinds and ("task", "cancel_requested") in kinds
    assert any(k == "worker" and d["worker_id"] == "w1" for k, d in got)
    ended = http.sse(f"/api/v1/tasks/{task.task_id}/logs", admin, lambda ev: ev[-1][0] == "end")
    assert ended[-1] == ("end", {"task_id": task.task_id})


def test_openapi_document(http: Http) -> None:
    doc = http.call("GET", "/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, verb in [
        ("/workers", "get"),
        ("/tasks", "get"),
        ("/tasks/{task_id}", "get"),
        ("/tasks/{task_id}/cancel", "post"),
        ("/workers/{worker_id}/drain", "post"),
        ("/workers/{worker_id}/undrain", "post"),
        ("/tasks/{task_id}/logs", "get"),
        ("/events", "get"),
    ]:
        assert verb in paths[path], path
    validate(doc)  # raises on an invalid document
    # every $ref resolves, every operation has an id and responses, path params are declared
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    for ref in refs:
        section, kind, key = ref.removeprefix("#/").split("/")
        assert key in doc[section][kind], ref
    ids = [op["operationId"] for p in paths.values() for op in p.values()]
    assert len(ids) == len(set(ids))
    for path, ops in paths.items():
        for op in ops.values():
            assert op["responses"], path
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}


def test_login_sets_a_strict_http_only_cookie_and_logout_needs_csrf(
    web_cluster: LocalCluster, http: Http
) -> None:
    web = requests.Session()
    url, ca = http.url, http.ca
    assert web.get(f"{url}/tasks", verify=ca, allow_redirects=False).headers["Location"] == "/login"
    bad = web.post(f"{url}/login", data={"token": new_user_token()}, verify=ca)
    assert bad.status_code == 401 and "unknown or revoked" in bad.text
    bad = web.post(f"{url}/login", data={"token": "letmein"}, verify=ca)
    assert bad.status_code == 401 and "not a cloudai user token" in bad.text
    assert COOKIE not in web.cookies
    ok = web.post(
        f"{url}/login", data={"token": web_cluster.token}, verify=ca, allow_redirects=False
    )
    assert ok.status_code == 303 and ok.headers["Location"] == "/tasks"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    page = web.get(f"{url}/tasks", verify=ca)
    assert page.status_code == 200 and 'data-admin="true"' in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert csrf_of(web_cluster.token) in page.text
    refused = web.post(f"{url}/logout", data={"csrf": "forged"}, verify=ca, allow_redirects=False)
    assert refused.status_code == 403
    out = web.post(
        f"{url}/logout", data={"csrf": csrf_of(web_cluster.token)}, verify=ca, allow_redirects=False
    )
    assert out.status_code == 303 and COOKIE not in web.cookies
    assert web.get(f"{url}/workers", verify=ca, allow_redirects=False).status_code == 303


def test_an_insecure_master_serves_plain_http_to_anyone(sqlite_url: str, tmp_path: Any) -> None:
    c = LocalCluster(sqlite_url, tmp_path, secure=False, http_listen="127.0.0.1:0")
    try:
        url = c.master[0].web_server.url
        assert url.startswith("http://")
        resp = requests.get(f"{url}api/v1/workers", timeout=10)
        assert resp.status_code == 200 and resp.json() == {"workers": []}
        # a cross-site form cannot set headers: a POST needs one (Authorization or CSRF)
        drain = requests.post(f"{url}api/v1/workers/nope/drain", timeout=10)
        assert drain.status_code == 403
        drain = requests.post(
            f"{url}api/v1/workers/nope/drain", headers={"Authorization": "Bearer x"}, timeout=10
        )
        assert drain.status_code == 404
    finally:
        c.close()


def test_a_busy_address_fails_the_master_unless_it_is_only_the_default(
    sqlite_url: str, tmp_path: Any
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        with pytest.raises(Unavailable, match="cannot serve the web console"):
            LocalCluster(sqlite_url, tmp_path / "a", http_listen=address)
        other = f"sqlite:///{tmp_path / 'b.db'}"
        c = LocalCluster(other, tmp_path / "b", http_listen=address, http_required=False)
        try:
            assert c.master[0].web_server is None
            assert c.client.list_workers() == []  # the master runs on without its console
        finally:
            c.close()


def test_a_log_stream_starts_at_once_and_is_refused_to_others(
    web_cluster: LocalCluster, http: Http
) -> None:
    ann = web_cluster.client.add_user("ann", False).token
    bob = web_cluster.client.add_user("bob", False).token
    whole = TaskSpec(image="busybox", command=LONG, resources=Resources(cpu=2, mem_gb=0.1))
    web_cluster.client_with(ann).submit(whole)  # all of w1's CPU
    task = web_cluster.client_with(ann).submit(whole)  # no room left: it stays pending
    assert task.status.value == "pending"
    path = f"/api/v1/tasks/{task.task_id}/logs?follow=1"
    assert "not the owner" in error(http.call("GET", path, bob), 403)
    denied = [e for e in web_cluster.client.get_task(task.task_id).events if e.kind == "denied"]
    assert [(e.actor, e.message) for e in denied] == [
        ("bob", "read the logs of refused: not the owner")
    ]
    with http.call("GET", path, ann, stream=True) as resp:  # headers now, output when it runs
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
    web_cluster.client.cancel(task.task_id)
    ended = http.sse(path, ann, lambda ev: ev[-1][0] == "end")
    assert ended[-1] == ("end", {"task_id": task.task_id})
