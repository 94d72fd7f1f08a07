"""Heartbeats in memory: most heartbeats are answered without the store.

A heartbeat that only says "alive, same tasks" refreshes liveness and telemetry here; the store
gets one batched write per interval (`take` / `workers.touch_many`). The full pass (reconcile,
stop orders, an immediate write) runs when it can answer differently:

- the worker's first heartbeat since this master started (or since it registered);
- its task set (running, stopping) or its busy GPUs changed;
- the store's view of it changed (`changed`: a task delivered to it, a stop decided for one of
  its tasks, a task of it ended by the master) since the last full pass began;
- the last full pass was not quiet: it sent stop orders, met a task the store does not know,
  or found a task delivered there that the worker does not list yet (still young);
- the worker was silent for over two intervals, or the last full pass is `FULL_EVERY`
  intervals old (a bound on what a missed `changed` could cost).

A changed store view is marked with a generation number, not a flag: a full pass that read the
store before a change and finished after it does not count as having seen it.

What a crash costs: at most one interval of `last_heartbeat` and telemetry. That is harmless:
after a restart every worker's lease counts from the master's start (core/lease.py), and every
worker's first heartbeat takes the full pass and writes at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cloudai.core.gpus import GpuDevice

__all__ = ["Beats", "FULL_EVERY", "Touch"]

FULL_EVERY = 24  # intervals: a full pass at least this often per worker (2 min at 5 s)
GAP = 2.0  # intervals of silence after which a heartbeat takes the full pass


@dataclass
class Touch:
    """A heartbeat not yet written: when, the telemetry and the GPUs it carried, the usage of
    the worker's tasks."""

    at: float
    telemetry: Mapping[str, float | None] | None
    gpus: Sequence[GpuDevice]
    usage: Sequence[tuple[str, float | None, float | None]]


@dataclass
class _Seen:
    at: float  # its last heartbeat (either path)
    running: frozenset[str]
    stopping: frozenset[str]
    busy: frozenset[str]
    gen: int  # the store's view of the worker the last full pass saw
    full_at: float


def _busy(gpus: Sequence[GpuDevice]) -> frozenset[str]:
    return frozenset(g.gpu_id for g in gpus if g.busy)


class Beats:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._seen: dict[str, _Seen] = {}
        self._gen: dict[str, int] = {}
        self._pending: dict[str, Touch] = {}

    def changed(self, worker_id: str) -> None:
        """The store's view of the worker changed: its next heartbeat takes the full pass."""
        self._gen[worker_id] = self._gen.get(worker_id, 0) + 1

    def forget(self, worker_id: str) -> None:
        """The worker was removed (or re-registers): nothing of it is answered from memory."""
        self._seen.pop(worker_id, None)
        self._pending.pop(worker_id, None)
        self.changed(worker_id)

    def generation(self, worker_id: str) -> int:
        """Taken before a full pass reads the store, handed back to `after_full`."""
        return self._gen.get(worker_id, 0)

    def answer(
        self,
        worker_id: str,
        running: Sequence[str],
        stopping: Sequence[str],
        touch: Touch,
    ) -> bool:
        """Answer the heartbeat from memory (True: known, no stop orders) when nothing it could
        change or learn needs the store; False: the caller takes the full pass."""
        seen = self._seen.get(worker_id)
        if seen is None or seen.gen != self._gen.get(worker_id, 0):
            return False
        now = touch.at
        if now - seen.at > GAP * self.interval or now - seen.full_at > FULL_EVERY * self.interval:
            return False
        if (
            seen.running != frozenset(running)
            or seen.stopping != frozenset(stopping)
            or seen.busy != _busy(touch.gpus)
        ):
            return False
        seen.at = now
        self._pending[worker_id] = touch
        return True

    def after_full(
        self,
        worker_id: str,
        gen: int,
        running: Sequence[str],
        stopping: Sequence[str],
        gpus: Sequence[GpuDevice],
        now: float,
        quiet: bool,
    ) -> None:
        """A full pass (which wrote the heartbeat itself) ended: remember what it saw when it
        was quiet, so the next same heartbeat is answered from memory."""
        self._pending.pop(worker_id, None)  # the full pass wrote a newer one
        if not quiet:
            self._seen.pop(worker_id, None)
            return
        self._seen[worker_id] = _Seen(
            now, frozenset(running), frozenset(stopping), _busy(gpus), gen, now
        )

    def last(self, worker_id: str) -> float | None:
        """The worker's last heartbeat this master heard (None: none since it started)."""
        seen = self._seen.get(worker_id)
        return None if seen is None else seen.at

    def heard(self) -> dict[str, float]:
        """worker_id -> its last heartbeat heard, for the reaper (a copy)."""
        return {w: s.at for w, s in self._seen.items()}

    def latest(self, worker_id: str) -> Touch | None:
        """The newest heartbeat of the worker not yet in the store."""
        return self._pending.get(worker_id)

    def take(self) -> dict[str, Touch]:
        """The heartbeats to write now (they leave memory: `put_back` if the write fails)."""
        batch, self._pending = self._pending, {}
        return batch

    def put_back(self, batch: Mapping[str, Touch]) -> None:
        """A batch the store refused: kept for the next write, unless a newer one came."""
        for worker_id, touch in batch.items():
            self._pending.setdefault(worker_id, touch)
