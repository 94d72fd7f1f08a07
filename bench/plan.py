"""How big each section runs: full (the issue's sizes), --quick and --tiny (the smoke test)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IMAGE", "Sizes", "sizes_for"]

IMAGE = "cloudai-test/busybox:latest"


@dataclass(frozen=True)
class Sizes:
    mode: str
    n: int  # samples per latency figure (F, C, S)
    grace_parallel: int  # F4 / C4 / S4 run this many at once (each waits out a 2 s grace)
    f5_containers: int  # F5: create/start/wait/remove cycles over 8 parallel clients
    c7_tasks: int  # C7: `true` tasks from 8 clients
    s7_services: int  # S7: one-shot services in a batch
    m_workers: int  # M1: simulated workers
    m_window: float  # M1: seconds of heartbeats measured
    m_idle: float  # M1: of which the first seconds have heartbeats only (M2 starts after)
    m_submit: int  # M2: tasks to submit during the window (fewer if the master is slower)
    m_cancel: int  # M2: of which cancelled
    m_loadgens: int  # load-generator processes
    m3_rows: int  # M3: task rows in the store
    m3_queries: int  # M3: calls of each kind per store
    m4_starts: int  # M4: master starts per store (the first, after the fill, included)
    profile_window: float  # seconds of a profiled M1+M2 rerun after an M miss (0: none)


FULL = Sizes(
    mode="full",
    n=30,
    grace_parallel=3,
    f5_containers=80,
    c7_tasks=200,
    s7_services=50,
    m_workers=1000,
    m_window=120.0,
    m_idle=30.0,
    m_submit=10_000,
    m_cancel=5_000,
    m_loadgens=2,
    m3_rows=1_000_000,
    m3_queries=100,
    m4_starts=2,
    profile_window=20.0,
)
QUICK = Sizes(
    mode="quick",
    n=5,
    grace_parallel=3,
    f5_containers=16,
    c7_tasks=24,
    s7_services=10,
    m_workers=100,
    m_window=15.0,
    m_idle=5.0,
    m_submit=300,
    m_cancel=150,
    m_loadgens=1,
    m3_rows=20_000,
    m3_queries=30,
    m4_starts=2,
    profile_window=10.0,
)
TINY = Sizes(
    mode="tiny",
    n=3,
    grace_parallel=3,
    f5_containers=8,
    c7_tasks=8,
    s7_services=4,
    m_workers=4,
    m_window=4.0,
    m_idle=1.0,
    m_submit=20,
    m_cancel=10,
    m_loadgens=1,
    m3_rows=300,
    m3_queries=10,
    m4_starts=1,
    profile_window=0.0,
)


def sizes_for(quick: bool, tiny: bool) -> Sizes:
    return TINY if tiny else QUICK if quick else FULL
