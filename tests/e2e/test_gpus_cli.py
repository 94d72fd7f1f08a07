"""GPUs as a user drives them: a worker process declared with `--gpu-ids 0,1` (the process
runtime stands in for Docker, which needs the NVIDIA toolkit), tasks through the CLI and the
master> shell, devices in `task show -o json` and `workers -o json`, and in each task's env."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

from tests.cluster import ProcCluster
from tests.helpers import eventually


def waiting(gate: pathlib.Path) -> str:
    return (
        'echo "saw cuda=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES"; '
        f"while [ ! -e {gate} ]; do sleep 0.05; done"
    )


def test_gpus_through_the_cli_and_the_shell(tmp_path: pathlib.Path) -> None:
    c = ProcCluster(tmp_path)
    try:
        c.add_worker("g1", runtime="process", extra=("--gpu-ids", "0,1"))
        gate, gate3 = tmp_path / "gate", tmp_path / "gate3"
        run = ["task", "run", "busybox", "--gpu", "1", "--cpu", "0.1", "--mem", "0.1", "-o", "json"]
        ids = [
            json.loads(c.cli(*run, "--", "sh", "-c", waiting(gate)).stdout)["task_id"]
            for _ in range(2)
        ]
        shown = [c.wait_status(t, "running") for t in ids]
        assert sorted(s["gpus"] for s in shown) == [["0"], ["1"]]
        for s in shown:
            dev = s["gpus"][0]
            eventually(
                lambda t=s["task_id"], d=dev: f"saw cuda={d} nvidia={d}" in c.cli("logs", t).stdout,
                what=f"task {s['task_id']} to print its device",
            )
        (g1,) = c.cli_json("workers")
        assert g1["capacity"]["gpu"] == 2 and g1["available"]["gpu"] == 0
        assert {g["id"]: g["task_id"] for g in g1["gpus"]} == {
            s["gpus"][0]: s["task_id"] for s in shown
        }
        assert all(g["busy"] is False and g["memory_total_mb"] is None for g in g1["gpus"])

        # The shell's own form: a third 1-GPU task waits for a device.
        line = f"task auto busybox sh -c '{waiting(gate3)}' -gpu 1 -cpu_cores 0.1 -mem 0.1"
        res = subprocess.run(
            [sys.executable, "-m", "cloudai.cli.main", "shell"],
            input=f"{line}\nworkers\nexit\n",
            env=c.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        found = re.search(r"Task (task-\S+) submitted \(pending", res.stdout)
        assert found, res.stdout + res.stderr
        third = found.group(1)
        assert "2/2 (0)" in res.stdout  # workers: both GPUs allocated, none available

        gate.touch()  # the first two end; the third gets a freed device
        t3 = c.wait_status(third, "running")
        assert t3["gpus"] in (["0"], ["1"])
        text = c.cli("task", "show", third).stdout
        assert re.search(rf"GPUs\s+{t3['gpus'][0]}", text), text
        gate3.touch()
        c.wait_status(third, "completed")
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()
