"""The master's behaviour, independent of gRPC: every RPC handler calls one method here."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from cloudai.core.lease import Lease
from cloudai.core.lifecycle import TaskStatus
from cloudai.core.models import Worker
from cloudai.errors import CloudAIError
from cloudai.loops import Loops
from cloudai.master import planner
from cloudai.master.beats import Beats
from cloudai.master.cancel_desk import CancelDesk
from cloudai.master.canceller import Canceller
from cloudai.master.config import MasterConfig
from cloudai.master.deadlines import Deadlines
from cloudai.master.dispatcher import Dispatcher
from cloudai.master.membership import Membership
from cloudai.master.peers import WorkerPeers
from cloudai.master.preemption import Preemptor
from cloudai.master.task_desk import TaskDesk
from cloudai.metrics import MasterMetrics
from cloudai.security.tls import Tls
from cloudai.store import Store, tasks

__all__ = ["Cluster", "MasterConfig"]

log = logging.getLogger("cloudai.master")


class Cluster(Membership, TaskDesk, CancelDesk):
    """The master's behaviour: one method per RPC, in three parts (membership.py,
    task_desk.py, cancel_desk.py); here its state and its start and stop."""

    def __init__(
        self,
        store: Store,
        config: MasterConfig | None = None,
        tls: Tls | None = None,
        cluster_id: str = "",
    ) -> None:
        self.store = store
        self.cluster_id = cluster_id  # the store's identity (store/identity.py); "": none
        self._refusals_logged: dict[str, float] = {}  # worker_id -> when last logged
        self._unknown_reported: set[tuple[str, str]] = set()  # (worker, task) said once
        self.config = config or MasterConfig()
        self.peers = WorkerPeers(tls)
        self.dispatcher = Dispatcher(store, self.peers, self.config)
        self.metrics = MasterMetrics()
        self.beats = Beats(self.config.heartbeat_interval)  # heartbeats in memory
        self.metrics.watch(self._metrics_snapshot)  # collects at once: after what it reads
        self.loops = Loops("master", self.metrics.loop_failures)
        self.metrics_server: Any = None
        self.web_server: Any = None  # web.WebServer, when --http-listen is given
        self.canceller = Canceller(store, self.peers, self.config, self.metrics)
        self.dispatcher.also.append(self.canceller.outage.replay)  # first: before new orders
        self.dispatcher.on_store_away = self._lease_from_now
        self.dispatcher.on_delivered = self.beats.changed
        self.dispatcher.heard = self.beats.heard
        self.canceller.on_decided = self.beats.changed
        self.dispatcher.also.append(self._reap_lost_workers)
        self.dispatcher.on_placed = lambda w: self.metrics.placements.labels(w).inc()
        self.dispatcher.also.append(Deadlines(store, self.canceller).enforce)
        self.dispatcher.preempt = Preemptor(store, self.canceller)
        self._lease_from_now()  # re-taken by start(), once workers can reach this master

    def _lease_from_now(self) -> None:
        """Every worker's lease counts from now at the earliest: at this master's start, and
        while its store is away (heartbeats could not be recorded: the store was away, not
        the workers)."""
        self.lease = Lease(self.config.worker_lost_after, master_started=time.time())

    async def start(self) -> None:
        """Load what the store holds (the spec's LoadWorkersFromDB) and start the loops.
        Workers' leases count from now at the earliest: each has a full deadline to reach
        this master before it can be judged lost, however long the master was away."""
        self._lease_from_now()
        self.metrics.started.set(self.lease.master_started)
        snapshot = await self.list_workers()
        self.canceller.outage.addresses.update((w.worker_id, w.address) for w in snapshot)
        counts = await self.store.tx(tasks.count_by_status)
        log.info(
            "loaded %d workers, %d running and %d pending tasks from the store",
            len(snapshot),
            counts.get(TaskStatus.RUNNING.value, 0),
            counts.get(TaskStatus.PENDING.value, 0),
        )
        log.info(
            "workers' leases count from now: a worker is lost after %gs without a heartbeat",
            self.lease.lost_after,
        )
        self.loops.start("dispatch-loop", self.dispatcher.run)
        self.loops.start("beat-writer", self._write_beats_loop)

    def _metrics_snapshot(self) -> tuple[dict[str, int], list[Worker]]:
        """For a scrape (on the HTTP server's thread): tasks by status, workers."""
        by_status = self.store.tx_sync(tasks.count_by_status)
        now = time.time()
        interval = self.config.heartbeat_interval
        found = self.store.tx_sync(planner.load_workers, now, interval, None, self.beats.heard())
        return by_status, [self.with_latest_beat(w, now) for w in found]

    async def stop(self) -> None:
        await self.loops.stop()
        with contextlib.suppress(CloudAIError):
            await self.write_beats()  # the last heartbeats heard
        await self.dispatcher.stop()
        await self.canceller.close()
        await self.peers.close()
