"""Smoke test of the chaos soak (`python -m bench chaos`, docs/reliability.md): a short soak
on a real secure cluster with Docker workers injects faults, runs tasks, and its invariant
checks find nothing wrong. The 30-minute soak itself is a bench run, not a test."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from tests.helpers import docker_client

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_a_short_chaos_soak_injects_faults_runs_tasks_and_breaks_no_invariant(
    tmp_path: pathlib.Path,
) -> None:
    docker_client().close()  # needs the engine and the test image (fails under CI=true)
    res = subprocess.run(
        [sys.executable, "-m", "bench", "chaos", "--minutes", "0.2", "--fault-gap", "2.5"]
        + ["--seed", "11", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = f"{res.stdout[-6000:]}{res.stderr[-6000:]}"
    assert res.returncode == 0, f"python -m bench chaos failed:\n{out}"
    (written,) = tmp_path.glob("chaos-*.json")
    assert written.with_suffix(".md").exists()
    run = json.loads(written.read_text())
    assert run["violations"] == [], out
    assert run["broken"] == [], out
    assert sum(run["faults"].values()) >= 1, out
    assert run["tasks"]["ended"] >= 5, out
    assert run["tasks"]["unfinished_at_end"] == [], out
    assert run["checks"] >= 2, out
    assert "invariant violations: 0" in res.stdout
