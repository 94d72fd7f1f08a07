"""A worker killed (a fail-point, src/cloudai/failpoints.py) while a task run's end is only in
its spool (src/cloudai/worker/spool.py): after the container's removal and before the master
heard, or before the removal itself. The restarted worker tells the master from its spool: one
result, with its last log lines, the stop's stages in order, and no container left. Real
processes, a real Docker engine (docs/reliability.md)."""

from __future__ import annotations

import pathlib
import signal
from typing import Any

from cloudai.failpoints import ENV as FAILPOINTS_ENV
from tests.e2e import test_faults
from tests.e2e.test_faults import (
    UNTIL_GO,
    cluster,
    holds_invariants,
    kinds,
    release,
    run,
    spooled,
    worker_log,
)
from tests.e2e.test_faults_injected import containers_of, spawn_env
from tests.helpers import eventually

worker_id = test_faults.worker_id  # the fixture: a unique worker ID, its containers removed after

# A cooperative task that says goodbye on SIGTERM: its last log line proves the logs were kept.
WAVES = (
    "sh",
    "-c",
    "trap 'echo bye-on-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
)


def killed_at(c: Any, worker_id: str, point: str) -> None:
    proc = c.workers[worker_id]
    assert proc.wait(30) == -signal.SIGKILL
    assert f"fail-point {point} reached" in worker_log(c, worker_id)


def test_worker_killed_after_removal_before_report_replays_the_stop(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Killed after it removed a cancelled task's container, before any of `exited`/`removed`
    left: the master has no result and no exit; the spool has both. Restarted, the worker
    tells the master from its spool: the task is cancelled with one result (its last log
    line included), the stop is confirmed `removed`, and the spool entry is gone."""
    with cluster(tmp_path, "--worker-lost-after", "60") as c:
        with spawn_env(c, **{FAILPOINTS_ENV: "worker.after_remove"}):
            c.add_worker(worker_id)
        task_id = run(c, worker_id, *WAVES)
        done = c.cli("cancel", task_id, "--reason", "spool test")
        assert done.returncode == 0, done.stderr
        killed_at(c, worker_id, "worker.after_remove")

        assert containers_of(docker, task_id) == []  # removed before the kill
        assert "bye-on-term" in spooled(c, worker_id, task_id)  # its end, logs included
        task = c.client.get_task(task_id)
        assert task.result is None, task.result  # the master has not heard
        assert task.cancellation is not None and task.cancellation.exited_at is None

        c.add_worker(worker_id)  # restarted without the fail-point
        shown = eventually(
            lambda: (
                (t := c.cli_json("task", "show", task_id))["cancellation"]["state"] == "removed"
                and t
            ),
            timeout=60,
            what="the spooled stop to be replayed up to `removed`",
        )
        assert shown["status"] == "cancelled"
        assert shown["result"]["status"] == "cancelled", shown["result"]
        assert "bye-on-term" in shown["result"]["logs"]
        assert shown["exit_code"] == 0
        stages = [k for k in kinds(c, task_id) if k in ("signal_sent", "stopped", "removed")]
        assert stages == ["signal_sent", "stopped", "removed"], kinds(c, task_id)
        assert "late_report" not in kinds(c, task_id)
        assert f"[Task {task_id}] its end is spooled" in worker_log(c, worker_id)
        eventually(
            lambda: spooled(c, worker_id, task_id) == "",
            what="the spool entry to be dropped once the master answered",
        )
        assert containers_of(docker, task_id) == []
        holds_invariants(c, docker, worker_id, acknowledged=[task_id])


def test_worker_killed_after_spool_before_removal_replays_the_result(
    docker: Any, tmp_path: pathlib.Path, worker_id: str
) -> None:
    """Killed once a completed task's end was spooled, before its container was removed and
    before the report: the restarted worker removes the container (it does not adopt it and
    report it a second time) and reports the spooled result, once, with its logs."""
    with cluster(tmp_path, "--worker-lost-after", "60") as c:
        with spawn_env(c, **{FAILPOINTS_ENV: "worker.after_spool"}):
            c.add_worker(worker_id)
        task_id = run(c, worker_id, *UNTIL_GO)
        release(docker, task_id)
        killed_at(c, worker_id, "worker.after_spool")

        assert len(containers_of(docker, task_id)) == 1  # not removed yet
        assert "finished" in spooled(c, worker_id, task_id)
        assert c.client.get_task(task_id).status.value == "running"  # not reported yet

        c.add_worker(worker_id)
        done = c.wait_status(task_id, "completed")
        assert done["exit_code"] == 0 and "finished" in done["result"]["logs"]
        assert kinds(c, task_id).count("completed") == 1
        assert "late_report" not in kinds(c, task_id)
        log = worker_log(c, worker_id)
        assert f"[Task {task_id}] re-adopted" not in log  # its end was known: not followed again
        eventually(
            lambda: containers_of(docker, task_id) == [] and spooled(c, worker_id, task_id) == "",
            what="the container removed and the spool entry dropped",
        )
        holds_invariants(c, docker, worker_id, acknowledged=[task_id])
