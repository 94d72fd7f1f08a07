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
    g1_workers: int  # G1: simulated callers of the empty gRPC method, every 5 s
    g1_window: float  # G1: seconds measured
    k_points: tuple[int, ...]  # the scaling curve: workers per point (heartbeats only)
    k_window: float  # seconds measured per curve point, after registration
    m5_workers: int  # M5: simulated workers (also the curve's point of that size)
    m5_window: float  # M5: seconds measured, after registration


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
    g1_workers=1000,
    g1_window=30.0,
    k_points=(250, 500, 1000, 2000, 5000),
    k_window=35.0,
    m5_workers=5000,
    m5_window=60.0,
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
    m_submit=1110,
    m_cancel=555,
    m_loadgens=1,
    m3_rows=20_000,
    m3_queries=30,
    m4_starts=2,
    profile_window=10.0,
    g1_workers=200,
    g1_window=10.0,
    k_points=(100, 200, 400),
    k_window=10.0,
    m5_workers=400,
    m5_window=10.0,
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
    g1_workers=4,
    g1_window=3.0,
    k_points=(8,),  # M5's own: one point per store
    k_window=3.0,  # 8 workers: none beats in 3 s of 5 once in 1,500 runs
    m5_workers=8,
    m5_window=3.0,
)


def sizes_for(quick: bool, tiny: bool) -> Sizes:
    return TINY if tiny else QUICK if quick else FULL
