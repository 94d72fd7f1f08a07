"""Prometheus metrics for the master and the worker, each in its own registry (both may run in
one process under `cloudai up`), served over HTTP at `--metrics-listen`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cloudai.core.limits import quote
from cloudai.errors import InvalidArgument

__all__ = ["MasterMetrics", "WorkerMetrics", "serve_metrics", "start_metrics"]

log = logging.getLogger("cloudai.metrics")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STOP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 15, 30, 60, 120)


class _Callback(Collector):
    """Gauges computed at scrape time (from the store, or the worker's own state)."""

    def __init__(self, collect: Callable[[], Iterator[GaugeMetricFamily]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            yield from self._collect()
        except Exception:  # a scrape must not fail on one bad gauge; the error is logged
            log.exception("metrics collection failed")


class MasterMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.submitted = Counter("cloudai_tasks_submitted", "Tasks submitted.", registry=r)
        self.placements = Counter(
            "cloudai_placements", "Tasks placed on a worker.", ["worker"], registry=r
        )
        self.cancels = Counter(
            "cloudai_cancels",
            "Cancel requests by outcome: cancelled, queued (worker not reached yet), already, "
            "not_found, conflict, error.",
            ["outcome"],
            registry=r,
        )
        self.cancel_answer = Histogram(
            "cloudai_cancel_answer_seconds",
            "Time for the master to answer a cancel.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cancel_stop = Histogram(
            "cloudai_cancel_stop_seconds",
            "From a cancel request to the task's exit, as the worker reported it.",
            ["how"],
            buckets=STOP_BUCKETS,
            registry=r,
        )
        self.heartbeats = Counter(
            "cloudai_heartbeats", "Heartbeats received.", ["worker"], registry=r
        )
        self.rpc_errors = Counter(
            "cloudai_rpc_errors",
            "RPCs answered with an error, by code.",
            ["method", "code"],
            registry=r,
        )
        self.store_seconds = Histogram(
            "cloudai_store_transaction_seconds",
            "Store transaction time (including waiting for the connection).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lost = Counter(
            "cloudai_tasks_lost", "Tasks ended failed by reconciliation.", ["why"], registry=r
        )
        self.started = Gauge(
            "cloudai_master_start_time_seconds",
            "When this master started (Unix time); workers' leases count from it at the earliest.",
            registry=r,
        )
        self.loop_failures = Counter(
            "cloudai_loop_failures",
            "Background loop failures, by loop (each restarted, or the process stopped).",
            ["loop"],
            registry=r,
        )
        self.workers_refused = Counter(
            "cloudai_workers_refused",
            "Worker calls refused: the worker belongs to another cluster (another store).",
            registry=r,
        )
        self.unknown_tasks = Counter(
            "cloudai_unknown_tasks",
            "Tasks a worker runs that the store has no record of (kept running, not stopped).",
            registry=r,
        )

    def watch(self, snapshot: Callable[[], tuple[dict[str, int], list[Any]]]) -> None:
        """Scrape-time gauges: tasks by status and workers by state, from the store."""

        def collect() -> Iterator[GaugeMetricFamily]:
            by_status, workers = snapshot()
            tasks = GaugeMetricFamily("cloudai_tasks", "Tasks by status.", labels=["status"])
            for status, n in sorted(by_status.items()):
                tasks.add_metric([status], n)
            yield tasks
            states = GaugeMetricFamily("cloudai_workers", "Workers by state.", labels=["state"])
            counts = {"healthy": 0, "unhealthy": 0, "offline": 0}
            for w in workers:
                counts[w.state] = counts.get(w.state, 0) + 1
            for state, n in sorted(counts.items()):
                states.add_metric([state], n)
            yield states
            age = GaugeMetricFamily(
                "cloudai_worker_heartbeat_age_seconds",
                "Seconds since each worker's last heartbeat.",
                labels=["worker"],
            )
            now = time.time()
            for w in workers:
                if w.last_heartbeat:
                    age.add_metric([w.worker_id], max(now - w.last_heartbeat, 0.0))
            yield age

        self.registry.register(_Callback(collect))


class WorkerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.heartbeats = Counter(
            "cloudai_worker_heartbeats", "Heartbeats sent, by result.", ["result"], registry=r
        )
        self.tasks_started = Counter("cloudai_worker_tasks_started", "Tasks started.", registry=r)
        self.tasks_ended = Counter(
            "cloudai_worker_tasks_ended", "Tasks ended, by status.", ["status"], registry=r
        )
        self.stops = Counter(
            "cloudai_worker_stops",
            "Stops carried out, by how they ended: graceful, forced, already_stopped, kill_failed.",
            ["how"],
            registry=r,
        )
        self.stop_seconds = Histogram(
            "cloudai_worker_stop_seconds",
            "From receiving a stop order to the task's exit.",
            buckets=STOP_BUCKETS,
            registry=r,
        )
        self.report_retries = Counter(
            "cloudai_worker_report_retries", "Result reports that had to be retried.", registry=r
        )
        self.masters_refused = Counter(
            "cloudai_worker_masters_refused",
            "Answers refused from a master of another cluster (its tasks kept running).",
            registry=r,
        )
        self.rpc_errors = Counter(
            "cloudai_rpc_errors",
            "RPCs answered with an error, by code.",
            ["method", "code"],
            registry=r,
        )
        self.loop_failures = Counter(
            "cloudai_loop_failures",
            "Background loop failures, by loop (each restarted, or the process stopped).",
            ["loop"],
            registry=r,
        )

    def watch(self, running: Callable[[], int]) -> None:
        def collect() -> Iterator[GaugeMetricFamily]:
            yield GaugeMetricFamily(
                "cloudai_worker_tasks_running", "Tasks this worker holds.", value=running()
            )

        self.registry.register(_Callback(collect))


def serve_metrics(registry: CollectorRegistry, listen: str) -> Any:
    """Serve `/metrics` at HOST:PORT; returns the HTTP server (call .shutdown() to stop)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidArgument(f"invalid --metrics-listen {quote(listen)}: expected HOST:PORT")
    try:
        server, _thread = start_http_server(
            int(port), addr=host.strip("[]") or "0.0.0.0", registry=registry
        )
    except OSError as exc:
        raise InvalidArgument(f"cannot serve metrics on {listen}: {exc.strerror or exc}") from exc
    log.info("metrics on http://%s/metrics", listen)
    return server


def start_metrics(registry: CollectorRegistry, listen: str, required: bool) -> Any:
    """serve_metrics; when the address is only the default (not `required`), a busy port is
    a warning, not a failure (several workers on one machine share the default)."""
    try:
        return serve_metrics(registry, listen)
    except InvalidArgument as exc:
        if required:
            raise
        log.warning("⚠ no metrics endpoint: %s (set --metrics-listen)", exc)
        return None
