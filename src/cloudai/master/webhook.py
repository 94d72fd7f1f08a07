"""The cancellation webhook: each cancellation event POSTed as JSON to the operator's URL
(`cloudai master --cancel-webhook`), in the background, a few tries each."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from typing import Any

from cloudai.core.models import Cancellation

__all__ = ["Webhook"]

log = logging.getLogger("cloudai.master.cancel")


class Webhook:
    def __init__(self, url: str) -> None:
        self.url = url
        self._background: set[asyncio.Task[Any]] = set()

    def notify(self, kind: str, c: Cancellation) -> None:
        """POST the event, when a URL is set (in the background)."""
        url = self.url
        if not url:
            return
        body = json.dumps(
            {
                "event": kind,
                "task_id": c.task_id,
                "worker_id": c.worker_id,
                "requested_by": c.requested_by,
                "requested_at": c.requested_at,
                "reason": c.reason,
                "force": c.force,
                "state": c.state,
                "exit_code": c.exit_code,
                "forced": c.forced,
                "stop_seconds": c.stop_seconds,
            }
        ).encode()
        t = asyncio.create_task(asyncio.to_thread(_post, url, body), name=f"webhook-{kind}")
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def close(self) -> None:
        pending = list(self._background)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _post(url: str, body: bytes, attempts: int = 3) -> None:
    for attempt in range(attempts):
        req = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - operator's URL
                if resp.status < 300:
                    return
        except OSError as exc:
            if attempt == attempts - 1:
                log.warning("⚠ cancellation webhook %s failed: %s", url, exc)
                return
        time.sleep(0.5 * 2**attempt)
