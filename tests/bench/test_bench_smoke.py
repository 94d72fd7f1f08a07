"""Smoke test of the benchmark suite (`python -m bench`, see docs/performance.md): it runs in
its tiny size and produces every figure of the sections it ran. No time is asserted: timings
belong to bench/results/, not to a test on a shared machine."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

from tests.helpers import docker_client

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _bench(out: pathlib.Path, only: str, timeout: float) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--only", only, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert res.returncode == 0, f"python -m bench failed:\n{res.stdout[-4000:]}{res.stderr[-4000:]}"
    (written,) = out.glob("*.json")
    assert written.with_suffix(".md").exists()
    result: dict[str, Any] = json.loads(written.read_text())
    return result


def _assert_produced(result: dict[str, Any], names: list[str]) -> None:
    figures = result["figures"]
    for name in names:
        assert name in figures, f"figure {name} missing from the results"
        rows = figures[name]["rows"]
        produced = [r for r in rows if not r["missing"] and r["n"] > 0]
        assert produced, f"figure {name} was not produced: {rows}"


def test_master_scale_figures_without_docker(tmp_path: pathlib.Path) -> None:
    """Simulated workers over real gRPC (TLS, a certificate each), SQLite (and PostgreSQL when
    CLOUDAI_TEST_PG_URL): M1-M5, the gRPC floor, and the scaling curve's points and PNG."""
    result = _bench(tmp_path, "M,K", timeout=300)
    _assert_produced(result, ["M1", "M2", "G1", "M3", "M4", "M5"])
    sqlite_points = [p for p in result["curve"] if p["store"] == "sqlite"]
    assert sqlite_points and all(p["heartbeats"] > 0 for p in sqlite_points), result["curve"]
    assert (tmp_path / result["curve_png"]).stat().st_size > 0


def test_floor_and_cloudai_figures(tmp_path: pathlib.Path) -> None:
    """The engine floor and cloudai on real Docker (skipped locally without an engine)."""
    docker_client().close()
    result = _bench(tmp_path, "F,C", timeout=240)
    _assert_produced(result, [f"F{i}" for i in range(1, 6)] + [f"C{i}" for i in range(1, 8)])
