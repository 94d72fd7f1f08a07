"""Named background loops, supervised: each process starts and stops its loops here, in one
place (the master: `dispatch-loop`; a worker: `heartbeat-loop`, `telemetry-loop`).

A loop runs until it is stopped. When it fails instead (an unexpected exception, or returning
at all) the failure is logged with its traceback, counted (`cloudai_loop_failures_total{loop}`)
and the loop restarted after a backoff that doubles from 1 s up to 30 s. A loop that keeps
failing (10 failures in a row, none after a run of 30 s or more) or fails with an error no
restart can mend (MemoryError) is given up: one critical log line says so, and the process is
told to stop and exits non-zero (`LoopFailed`). Never a process that looks alive and does
nothing: a dead heartbeat-loop left a worker answering but never registered."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter

from cloudai.errors import LoopFailed

__all__ = ["DEFAULT_POLICY", "Loops", "RestartPolicy"]

log = logging.getLogger("cloudai.loops")

# Errors a restart cannot mend: the loop is given up at once.
NOT_RETRYABLE: tuple[type[BaseException], ...] = (MemoryError,)


@dataclass(frozen=True)
class RestartPolicy:
    first_backoff: float = 1.0  # seconds before the first restart; doubles with each failure
    max_backoff: float = 30.0
    give_up_after: int = 10  # failures in a row (about 2.5 minutes of restarting)
    healthy_run: float = 30.0  # a run at least this long ends a series of failures

    def backoff(self, failures: int) -> float:
        return float(min(self.first_backoff * 2 ** (failures - 1), self.max_backoff))


DEFAULT_POLICY = RestartPolicy()


class Loops:
    """The named loops of one process. `failure` is set, and the `when_failed` callbacks
    called, when a loop is given up; the process then stops and raises it."""

    def __init__(
        self, process: str, failures: Counter | None = None, policy: RestartPolicy | None = None
    ) -> None:
        self.process = process  # "master", "worker w1": for the log line
        self._failures = failures  # labelled by loop
        self.policy = policy or DEFAULT_POLICY
        self._running: dict[str, asyncio.Task[None]] = {}
        self._callbacks: list[Callable[[LoopFailed], None]] = []
        self.failure: LoopFailed | None = None

    def start(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run `body()` as the loop `name`, restarting it when it fails."""
        if name in self._running:
            raise RuntimeError(f"{name} is already running")
        self._running[name] = asyncio.create_task(self._supervise(name, body), name=name)

    def when_failed(self, callback: Callable[[LoopFailed], None]) -> None:
        """Call `callback` when a loop is given up (at once if one was already)."""
        self._callbacks.append(callback)
        if self.failure is not None:
            callback(self.failure)

    async def stop(self) -> None:
        running, self._running = self._running, {}
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)

    async def _supervise(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            log.info("%s started", name)
            began = time.monotonic()
            try:
                await body()
                error: BaseException = RuntimeError("the loop returned; it must run until stopped")
            except asyncio.CancelledError:
                log.info("%s stopped", name)
                raise
            except Exception as exc:  # any failure: logged, counted, restarted or given up
                error = exc
            ran = time.monotonic() - began
            failures = 1 if ran >= self.policy.healthy_run else failures + 1
            if self._failures is not None:
                self._failures.labels(name).inc()
            if isinstance(error, NOT_RETRYABLE) or failures >= self.policy.give_up_after:
                self._give_up(name, failures, error)
                return
            delay = self.policy.backoff(failures)
            log.error(
                "✗ %s failed (%d in a row): %s; restarting in %gs",
                name,
                failures,
                _describe(error),
                delay,
                exc_info=error,
            )
            await asyncio.sleep(delay)

    def _give_up(self, name: str, failures: int, error: BaseException) -> None:
        why = "cannot be retried" if isinstance(error, NOT_RETRYABLE) else "failed too often"
        self.failure = LoopFailed(
            f"{name} failed {failures} time(s) in a row (last: {_describe(error)}); {why}: "
            f"the {self.process} stops"
        )
        log.critical("✗ %s", self.failure.message, exc_info=error)
        for callback in self._callbacks:
            callback(self.failure)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
