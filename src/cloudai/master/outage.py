"""Cancels while the store is unavailable (docs/reliability.md, "The store unavailable").

A cancel is decided in the store (canceller.py). When the store does not answer, an admin's
cancel of a task still stops it: the master appends the cancel to a journal file under its
home (`$CLOUDAI_HOME/cancel-journal.jsonl`, fsynced before it answers), sends the stop order
straight to the worker that last said it runs the task, and answers "accepted, will be
recorded". Once the store answers again the journal is replayed into it, entry by entry,
through the ordinary decision (a compare-and-set: a task that ended first keeps its end), and
each entry is dropped once the store has it. A master restarted meanwhile replays it too.

What the master needs without its store is memory, as last heard from the workers: which
tasks each runs (its heartbeats) and where it listens (its registration). Ownership cannot be
checked without the store, so a user's cancel of their own task is refused (UNAVAILABLE);
only an admin's is journaled."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import pathlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloudai.api.v1 import types_pb2
from cloudai.core.models import DEFAULT_GRACE_SECONDS
from cloudai.errors import CloudAIError, Conflict, NotFound, StoreUnavailable
from cloudai.master.peers import WorkerPeers

if TYPE_CHECKING:
    from cloudai.master.config import MasterConfig

__all__ = ["CancelJournal", "JournaledCancel", "OutageCancels"]

log = logging.getLogger("cloudai.master.outage")
JOURNAL_NAME = "cancel-journal.jsonl"


@dataclass(frozen=True, slots=True)
class JournaledCancel:
    task_id: str
    worker_id: str
    actor: str
    reason: str
    force: bool
    grace: float | None
    stop_signal: str
    at: float


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CancelJournal:
    """An append-only file of accepted cancels, one JSON line each, fsynced before the cancel
    is answered. Blocking: call it off the event loop."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.entries: list[JournaledCancel] = self._load()

    def _load(self) -> list[JournaledCancel]:
        if not self.path.exists():
            return []
        out: list[JournaledCancel] = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(JournaledCancel(**json.loads(line)))
            except (ValueError, TypeError):  # a line torn by a crash mid-append: never answered
                log.warning("⚠ %s: skipping an unreadable line %r", self.path, line[:80])
        if out:
            log.warning("⚠ %d journaled cancel(s) to record once the store answers", len(out))
        return out

    def append(self, entry: JournaledCancel) -> None:
        new = not self.path.exists()
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(dataclasses.asdict(entry)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if new:
            _fsync_dir(self.path.parent)
        self.entries.append(entry)

    def drop(self, entry: JournaledCancel) -> None:
        """Forget an entry the store now has (the file rewritten whole, atomically)."""
        self.entries = [e for e in self.entries if e != entry]
        if not self.entries:
            self.path.unlink(missing_ok=True)
        else:
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(dataclasses.asdict(e)) + "\n" for e in self.entries)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)


Decide = Callable[..., Awaitable[object]]  # Canceller.cancel: the decision, in the store


class OutageCancels:
    """The master's memory of where tasks run, and the journal of cancels taken without the
    store (`config.journal_dir`; "": none, as for an in-process test master: such cancels are
    refused)."""

    def __init__(self, config: MasterConfig, peers: WorkerPeers, decide: Decide) -> None:
        where = pathlib.Path(config.journal_dir) if config.journal_dir else None
        self.journal = CancelJournal(where / JOURNAL_NAME) if where else None
        self.peers = peers
        self.deadline = config.cancel_deadline  # of the stop order's RPC
        self.decide = decide
        self.addresses: dict[str, str] = {}  # worker -> where it listens
        self.running: dict[str, frozenset[str]] = {}  # worker -> tasks, at its last heartbeat
        self._replaying = asyncio.Lock()
        self._sending: set[asyncio.Task[None]] = set()

    def heard(self, worker_id: str, running: list[str], address: str = "") -> None:
        self.running[worker_id] = frozenset(running)
        if address:
            self.addresses[worker_id] = address

    def _worker_of(self, task_id: str) -> str | None:
        return next((w for w, ts in self.running.items() if task_id in ts), None)

    async def cancel(
        self,
        why: StoreUnavailable,
        task_id: str,
        actor: str,
        reason: str,
        force: bool,
        grace: float | None,
        stop_signal: str,
    ) -> str:
        """Journal the cancel and send the stop; the answer's message. Raises `why` when it
        cannot be taken (no journal, or no worker said it runs the task)."""
        worker_id = self._worker_of(task_id)
        if self.journal is None or worker_id is None or worker_id not in self.addresses:
            raise StoreUnavailable(
                f"{why.message}; task {task_id} is not running on any worker this master has "
                "heard from: try again once the store answers"
            )
        entry = JournaledCancel(
            task_id, worker_id, actor, reason, force, grace, stop_signal, time.time()
        )
        await asyncio.to_thread(self.journal.append, entry)
        sending = asyncio.create_task(self._send(entry), name=f"outage-stop-{task_id}")
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)
        log.warning(
            "⚠ store unavailable: cancel of %s by %s journaled in %s; stop order sent to %s",
            task_id, actor, self.journal.path, worker_id,
        )  # fmt: skip
        return (
            f"task {task_id}: cancel accepted, will be recorded: the store is unavailable, so "
            f"the master journaled it and sent the stop to worker {worker_id}"
        )

    async def _send(self, e: JournaledCancel) -> None:
        grace = DEFAULT_GRACE_SECONDS if e.grace is None else e.grace
        order = types_pb2.CancelTaskRequest(
            task_id=e.task_id,
            stop_signal="SIGKILL" if e.force else (e.stop_signal or "SIGTERM"),
            grace_seconds=0.0 if e.force else grace,
            force=e.force,
            reason=e.reason,
            requested_by=e.actor,
        )
        try:
            await self.peers.cancel(e.worker_id, self.addresses[e.worker_id], order, self.deadline)
        except CloudAIError as exc:  # the replay's decision re-sends it through the store
            log.warning(
                "⚠ journaled stop of %s not delivered to %s: %s", e.task_id, e.worker_id, exc
            )

    async def replay(self) -> None:
        """Record the journaled cancels through the ordinary decision, oldest first; each
        dropped once the store has it. Stops at the first store failure."""
        if self.journal is None or not self.journal.entries:
            return
        async with self._replaying:
            for e in list(self.journal.entries):
                try:
                    await self.decide(
                        e.task_id, e.actor, e.reason, e.force, e.grace, stop_signal=e.stop_signal
                    )
                    log.info("✓ journaled cancel of %s recorded in the store", e.task_id)
                except StoreUnavailable:
                    return  # still away: the next round tries again
                except (NotFound, Conflict) as exc:  # it ended first: that end stands
                    log.info("journaled cancel of %s not recorded: %s", e.task_id, exc)
                except CloudAIError as exc:  # never a poison entry that blocks the rest
                    log.error("✗ journaled cancel of %s refused by the store: %s", e.task_id, exc)
                await asyncio.to_thread(self.journal.drop, e)

    async def stop(self) -> None:
        for t in list(self._sending):
            t.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
