"""The HTTP JSON API under /api/v1/: the same Cluster methods, permission rules and audit
events as the gRPC API (master/service.py), spoken in JSON. Errors are JSON too, with the HTTP
status that says what went wrong (web/errors.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from cloudai.cli.render import task_json, worker_json
from cloudai.core.models import validate_task_id, validate_worker_id
from cloudai.core.requests import LIMIT_MAX, CancelRequest, TaskFilter
from cloudai.errors import CloudAIError, InvalidArgument, check
from cloudai.master.auth import Auth, Caller
from cloudai.master.canceller import CancelOutcome
from cloudai.master.cluster import Cluster
from cloudai.web.errors import outcome_status
from cloudai.web.feed import Feed
from cloudai.web.openapi import OPENAPI
from cloudai.web.session import caller_of

__all__ = ["add_api_routes"]

log = logging.getLogger("cloudai.web")
KEEPALIVE = 15.0  # seconds between SSE comments on an idle stream
CANCEL_MANY_MAX = 10_000


def _task_id(request: web.Request) -> str:
    task_id = request.match_info["task_id"]
    check(validate_task_id(task_id))
    return task_id


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidArgument("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object")
    return body


def _cancel_request(body: dict[str, Any], caller: Caller) -> CancelRequest:
    """The cancel a body asks for (force, grace, reason), each field's type checked; the
    rules of its values are CancelRequest's, checked by Cluster.cancel."""
    unknown = set(body) - {"force", "grace", "reason", "task_ids"}
    if unknown:
        raise InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
    force, grace, reason = body.get("force", False), body.get("grace"), body.get("reason", "")
    if not isinstance(force, bool):
        raise InvalidArgument("force must be true or false")
    if grace is not None and (
        isinstance(grace, bool) or not isinstance(grace, int | float) or not math.isfinite(grace)
    ):
        raise InvalidArgument("grace must be a number of seconds")
    if not isinstance(reason, str):
        raise InvalidArgument("reason must be a string")
    return CancelRequest(caller.name, reason, force, None if grace is None else float(grace))


def _ack(o: CancelOutcome) -> dict[str, Any]:
    return {
        "task_id": o.task_id,
        "success": o.success,
        "message": o.message,
        "status": o.status,
        "error_code": o.error_code,
        "already": o.already,
        "queued": o.queued,
    }


class _Api:
    def __init__(self, cluster: Cluster, auth: Auth, feed: Feed) -> None:
        self.cluster = cluster
        self.auth = auth
        self.feed = feed

    async def caller(self, request: web.Request) -> Caller:
        return await caller_of(request, self.auth)

    async def workers(self, request: web.Request) -> web.Response:
        await self.caller(request)
        found = await self.cluster.list_workers()
        return web.json_response({"workers": [worker_json(w) for w in found]})

    async def tasks(self, request: web.Request) -> web.Response:
        caller = await self.caller(request)
        q = request.query
        try:
            limit = int(q.get("limit", "0") or 0)
        except ValueError:
            raise InvalidArgument("limit must be a whole number") from None
        if not 0 <= limit <= LIMIT_MAX:
            raise InvalidArgument(f"limit must be 0 (all) to {LIMIT_MAX}")
        f = TaskFilter(q.get("status", ""), q.get("worker", ""), q.get("owner", ""), limit=limit)
        found, hidden, total = await self.cluster.list_tasks(f, caller)
        return web.json_response(
            {"tasks": [task_json(t) for t in found], "hidden": hidden, "total": total}
        )

    async def task(self, request: web.Request) -> web.Response:
        caller = await self.caller(request)
        task = await self.cluster.get_task(_task_id(request), caller)
        return web.json_response(task_json(task))

    async def cancel(self, request: web.Request) -> web.Response:
        caller = await self.caller(request)
        task_id = _task_id(request)
        body = await _body(request)
        if "task_ids" in body:
            raise InvalidArgument("task_ids belongs to POST /api/v1/tasks/cancel")
        req = _cancel_request(body, caller)
        self.auth.limit_cancel(caller, 1)
        (outcome,) = await self.cluster.cancel([task_id], caller, req)
        status = outcome_status(outcome)
        body = _ack(outcome)
        if status != 200:  # an error as every error is, with the ack's fields beside it
            body["error"] = {"status": status, "message": outcome.message}
        return web.json_response(body, status=status)

    async def cancel_many(self, request: web.Request) -> web.Response:
        caller = await self.caller(request)
        body = await _body(request)
        ids = body.get("task_ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(t, str) for t in ids):
            raise InvalidArgument("task_ids must be a non-empty list of task IDs")
        if len(ids) > CANCEL_MANY_MAX:
            raise InvalidArgument(f"at most {CANCEL_MANY_MAX} task IDs at once")
        req = _cancel_request(body, caller)
        self.auth.limit_cancel(caller, len(ids))
        outcomes = await self.cluster.cancel(list(ids), caller, req)
        return web.json_response({"acks": [_ack(o) for o in outcomes]})

    async def drain(self, request: web.Request) -> web.Response:
        return await self._drain(request, True)

    async def undrain(self, request: web.Request) -> web.Response:
        return await self._drain(request, False)

    async def _drain(self, request: web.Request, drain: bool) -> web.Response:
        caller = await self.caller(request)
        self.auth.require_admin(caller, "drain" if drain else "undrain")
        worker_id = request.match_info["worker_id"]
        check(validate_worker_id(worker_id))
        worker = await self.cluster.drain(worker_id, drain)
        return web.json_response(worker_json(worker))

    async def logs(self, request: web.Request) -> web.StreamResponse:
        caller = await self.caller(request)
        task_id = _task_id(request)
        follow = request.query.get("follow", "0") not in ("", "0", "false")
        # Who may read them, before the stream starts (its errors cannot be a status after):
        # the rule and the audit event of Cluster.stream_logs, asked of Cluster.
        task = await self.cluster.get_task(task_id)
        if not caller.may_touch(task.spec.owner):
            await self.cluster.deny(caller, [task_id], "read the logs of")
        resp = await _sse_start(request)
        chunks = self.cluster.stream_logs(task_id, follow)
        waiting: asyncio.Future[bytes] | None = None
        try:
            while True:
                waiting = waiting or asyncio.ensure_future(anext(chunks))
                done, _ = await asyncio.wait({waiting}, timeout=KEEPALIVE)
                if not done:  # nothing yet (a pending task): is the reader still there?
                    await resp.write(b": keepalive\n\n")
                    continue
                waiting = None
                try:
                    chunk = done.pop().result()
                except StopAsyncIteration:
                    break
                await _sse(resp, "log", {"data": chunk.decode("utf-8", "replace")})
            await _sse(resp, "end", {"task_id": task_id})
        except CloudAIError as exc:  # e.g. the worker stopped answering: said in the stream
            await _sse(resp, "error", {"message": exc.message})
        except ConnectionResetError:  # the reader went away: nothing left to do
            log.debug("log stream of %s: the client left", task_id)
        finally:
            if waiting is not None:
                waiting.cancel()
            if isinstance(chunks, AsyncGenerator):  # let it clean up (its call to the worker)
                await chunks.aclose()
        return resp

    async def events(self, request: web.Request) -> web.StreamResponse:
        caller = await self.caller(request)
        sub = self.feed.subscribe(caller.name, caller.admin)
        try:
            resp = await _sse_start(request)
            await _sse(resp, "hello", {"user": caller.name, "admin": caller.admin})
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE):
                        kind, data = await sub.queue.get()
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                await _sse(resp, kind, data)
        except ConnectionResetError:  # the reader went away
            log.debug("event stream of %s: the client left", caller.name)
            return resp
        finally:
            self.feed.unsubscribe(sub)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)


async def _sse_start(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    return resp


async def _sse(resp: web.StreamResponse, kind: str, data: dict[str, Any]) -> None:
    await resp.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())


def add_api_routes(app: web.Application, cluster: Cluster, auth: Auth, feed: Feed) -> None:
    api = _Api(cluster, auth, feed)
    app.router.add_get("/api/v1/openapi.json", api.openapi)
    app.router.add_get("/api/v1/workers", api.workers)
    app.router.add_post("/api/v1/workers/{worker_id}/drain", api.drain)
    app.router.add_post("/api/v1/workers/{worker_id}/undrain", api.undrain)
    app.router.add_get("/api/v1/tasks", api.tasks)
    app.router.add_post("/api/v1/tasks/cancel", api.cancel_many)
    app.router.add_get("/api/v1/tasks/{task_id}", api.task)
    app.router.add_post("/api/v1/tasks/{task_id}/cancel", api.cancel)
    app.router.add_get("/api/v1/tasks/{task_id}/logs", api.logs)
    app.router.add_get("/api/v1/events", api.events)
