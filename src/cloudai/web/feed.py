"""The live feed behind `GET /api/v1/events`: task and worker changes, fanned out to the
connected clients.

One poller per master, running only while someone listens: every `interval` it reads the task
events written since the last look (every transition writes one: store/events.py) and the
workers' rows, and publishes what changed. Each subscriber has a bounded queue; one that falls
behind is told to resync (re-read the API) instead of growing without bound."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cloudai.cli.render import iso, task_json, worker_json
from cloudai.errors import Unavailable
from cloudai.master.cluster import Cluster
from cloudai.store import events, tasks

__all__ = ["Feed", "Subscriber"]

log = logging.getLogger("cloudai.web")
QUEUE_MAX = 2000  # messages a subscriber may have waiting before it must resync
BATCH = 500  # task events read per look
_REREAD = 200  # ids below the newest seen that are read again (a later-committed lower id)


@dataclass(eq=False)
class Subscriber:
    """One connected client: admins see every task, others their own."""

    name: str
    admin: bool
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_MAX)
    )
    behind: bool = False

    def offer(self, kind: str, data: dict[str, Any]) -> None:
        if self.behind:
            return
        try:
            self.queue.put_nowait((kind, data))
        except asyncio.QueueFull:
            self.behind = True
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self.queue.get_nowait()
            self.queue.put_nowait(("resync", {"reason": "too many changes at once"}))
            self.behind = False


class Feed:
    def __init__(self, cluster: Cluster, interval: float = 0.5) -> None:
        self.cluster = cluster
        self.interval = interval
        self._subs: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_id = 0
        self._seen: deque[int] = deque(maxlen=4 * _REREAD)
        self._workers: dict[str, dict[str, Any]] = {}

    def subscribe(self, name: str, admin: bool) -> Subscriber:
        sub = Subscriber(name, admin)
        self._subs.add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="web-feed-loop")
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._subs.clear()

    async def _run(self) -> None:
        log.info("web-feed-loop started")
        self._last_id = await self.cluster.store.tx(events.last_id)
        self._workers = {}
        try:
            while self._subs:
                try:
                    await self._look()
                except Unavailable as exc:  # the store is busy or away: tried again next look
                    log.warning("⚠ web-feed-loop: %s", exc.message)
                await asyncio.sleep(self.interval)
        except asyncio.CancelledError:
            raise
        except BaseException:
            log.exception("✗ web-feed-loop failed; a new client starts it again")
            raise
        finally:
            log.info("web-feed-loop stopped")

    async def _look(self) -> None:
        changed = await self.cluster.store.tx(self._changes_tx, self._last_id)
        for event_id, task_id, event, task in changed:
            self._last_id = max(self._last_id, event_id)
            self._seen.append(event_id)
            data = {
                "task_id": task_id,
                "event": {
                    "at": iso(event.at),
                    "kind": event.kind,
                    "actor": event.actor,
                    "message": event.message,
                },
                "task": task,
            }
            owner = task["owner"] if task else ""
            for sub in list(self._subs):
                if sub.admin or owner == sub.name:
                    sub.offer("task", data)
        now = time.time()
        current = {w.worker_id: worker_json(w, now) for w in await self.cluster.list_workers()}
        for wid, row in current.items():
            same = {k: v for k, v in row.items() if k != "last_heartbeat_age_s"}
            before = self._workers.get(wid)
            if before is None or before != same:
                for sub in list(self._subs):
                    sub.offer("worker", row)
            self._workers[wid] = same
        for wid in set(self._workers) - set(current):
            del self._workers[wid]
            for sub in list(self._subs):
                sub.offer("worker_removed", {"worker_id": wid})

    def _changes_tx(self, conn: Any, after: int) -> list[tuple[int, str, Any, Any]]:
        seen = set(self._seen)
        found = [e for e in events.since(conn, max(0, after - _REREAD), BATCH) if e[0] not in seen]
        out = []
        for event_id, task_id, event in found:
            task = tasks.get(conn, task_id)
            out.append((event_id, task_id, event, task_json(task) if task else None))
        return out
