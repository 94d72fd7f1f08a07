"""A worker's lease: when the master may judge a silent worker lost.

The lease counts from the later of the worker's last heartbeat and this master's start. A
master that was down for longer than `--worker-lost-after` therefore gives every worker a full
deadline to reach it before it judges any of them lost, instead of failing all running work in
its first round because the heartbeats it finds in the store are old (they are old because the
master was away, not the workers). Nomad grants a heartbeat grace after a leader takes over;
Kubernetes' node controller waits for fresh node status after it starts.

The master's start time is memory, re-taken at every start: that is exactly the point."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Lease"]


@dataclass(frozen=True)
class Lease:
    lost_after: float  # seconds without a heartbeat to this master before a worker is lost
    master_started: float  # this master's start (Unix time)

    def lapsed_before(self, now: float) -> float | None:
        """At `now`, the lease of a worker whose last heartbeat is older than this has lapsed;
        None while no lease can have lapsed (this master started less than `lost_after` ago).
        So a worker is lost at `now` exactly when max(last heartbeat, master start) +
        lost_after < now; this form of the rule goes straight into a query."""
        cutoff = now - self.lost_after
        return cutoff if self.master_started < cutoff else None
