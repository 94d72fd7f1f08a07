"""Fail-points (src/cloudai/failpoints.py): an armed point kills its process with SIGKILL
there and nowhere else; unarmed, points do nothing; an unknown name is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

SCRIPT = """
from cloudai.failpoints import check_armed, failpoint
print(check_armed(), flush=True)
failpoint("cancel.after_status_write")
print("between", flush=True)
failpoint("cancel.after_worker_ack")
print("after", flush=True)
"""


def run(armed: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CLOUDAI_FAILPOINTS"}
    if armed is not None:
        env["CLOUDAI_FAILPOINTS"] = armed
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )


def test_unarmed_points_do_nothing() -> None:
    done = run(None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "between", "after"]


def test_an_armed_point_kills_its_process_there() -> None:
    done = run(" cancel.after_worker_ack ,")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["None", "between"]  # killed at the second point only


def test_an_unknown_point_is_refused() -> None:
    done = run("cancel.after_worker_ack,no.such.point")
    assert done.stdout.startswith("CLOUDAI_FAILPOINTS: unknown fail-point(s) no.such.point;")
