"""The master's settings: one frozen value, its own module, so that every part of the master
can take it without importing the Cluster that holds them all."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MasterConfig"]


@dataclass(frozen=True)
class MasterConfig:
    heartbeat_interval: float = 5.0
    dispatch_interval: float = 1.0
    cancel_deadline: float = 30.0  # the CancelTask RPC to a worker
    cancel_ack_wait: float = 0.05  # how long a cancel waits for the worker's ack before "queued"
    cancel_webhook: str = ""  # POST cancellation events here (JSON), when set
    # A worker silent this long (counted from the later of its last heartbeat and this
    # master's start: core/lease.py) is lost, and its running tasks end failed.
    worker_lost_after: float = 300.0
    metrics_listen: str = ""  # HOST:PORT for /metrics; empty: none
    metrics_required: bool = False  # False: a busy (default) address is only a warning
    http_listen: str = ""  # HOST:PORT for the web console and HTTP API; empty: none
    http_required: bool = True  # False (`up`'s default address): a busy port is a warning
    max_pending_per_user: int = 10_000  # a user's pending tasks beyond this are refused
    submit_rate: float = 200.0  # per user and second, bursts of twice as many; 0: no limit
    cancel_rate: float = 200.0
    max_task_time: float = 0.0  # seconds: a task's time limit when it names none, and its cap
    # Where cancels taken while the store is unavailable are journaled (master/outage.py);
    # "": nowhere, and such cancels are refused. The CLI's master: $CLOUDAI_HOME.
    journal_dir: str = ""
