"""Choose a worker for a request. Pure: no I/O. The commit re-checks room in the store."""

from __future__ import annotations

from collections.abc import Sequence

from cloudai.core.models import Worker, WorkerState
from cloudai.core.resources import Resources

__all__ = ["fits_anywhere", "propose"]


def _load(w: Worker) -> float:
    """The worker's busiest axis after placement, as a share of its capacity (0..1)."""
    shares = [w.allocated.cpu / w.capacity.cpu if w.capacity.cpu else 1.0]
    if w.capacity.mem_gb:
        shares.append(w.allocated.mem_gb / w.capacity.mem_gb)
    return max(shares)


def propose(request: Resources, workers: Sequence[Worker]) -> str | None:
    """The healthy worker with room for `request` and the lowest load (spread), or None."""
    candidates = [
        w
        for w in workers
        if w.state == WorkerState.HEALTHY and not w.drained and request.fits_in(w.available)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda w: (_load(w), w.worker_id)).worker_id


def fits_anywhere(request: Resources, workers: Sequence[Worker]) -> bool:
    """True when some worker's whole capacity could hold the request (ignoring what runs now)."""
    return any(request.fits_in(w.capacity) for w in workers)
