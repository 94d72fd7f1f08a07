"""Limits against abuse, with real processes: a task printing 1 GiB, a worker started with
impossible flags, an oversized request. docs/limits.md quotes the figures measured here."""

from __future__ import annotations

import json
import pathlib
import threading
import time
from collections.abc import Iterator

import grpc
import psutil
import pytest

from cloudai.api.v1 import master_pb2, master_pb2_grpc, types_pb2
from cloudai.core.limits import LOG_TAIL_BYTES, MAX_REQUEST_BYTES
from tests.cluster import ProcCluster

GIB = 1024**3
MIB = 1024**2
# docs/limits.md: the master's memory while a task prints 1 GiB (its RSS, psutil), what its
# store grows by, and the worker's memory. Measured here (2 cores): master 74 -> 82 MiB, worker
# 47 -> 51 MiB, store +1.2 MiB (the 1 MiB log tail and the task's rows).
MASTER_RSS_MAX = 200 * MIB
MASTER_RSS_GROWTH_MAX = 64 * MIB
WORKER_RSS_GROWTH_MAX = 64 * MIB
STORE_GROWTH_MAX = 8 * MIB


@pytest.fixture
def process_cluster(tmp_path: pathlib.Path) -> Iterator[ProcCluster]:
    with ProcCluster(tmp_path) as c:
        c.add_worker("w1", runtime="process")
        yield c


class PeakRss:
    """The highest RSS of a process, sampled every 50 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:  # it ended: the test says whether that was expected
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(2)
        return self.peak


def _store_bytes(tmp: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in tmp.glob("master.db*"))


def test_a_task_printing_1_gib_leaves_the_master_within_its_bounds(
    process_cluster: ProcCluster, tmp_path: pathlib.Path
) -> None:
    c = process_cluster
    assert c.master is not None
    store_before = _store_bytes(tmp_path)
    master_rss = PeakRss(c.master.pid)
    worker_rss = PeakRss(c.workers["w1"].pid)
    started = time.monotonic()
    run = c.cli("task", "run", "-o", "json", "busybox", "sh", "-c", f"yes cloudai | head -c {GIB}")
    assert run.returncode == 0, run.stderr
    task = json.loads(run.stdout)
    shown = c.wait_status(task["task_id"], "completed", "failed", timeout=300)
    took = time.monotonic() - started
    master_peak, worker_peak = master_rss.stop(), worker_rss.stop()
    store_growth = _store_bytes(tmp_path) - store_before
    logs = shown["result"]["logs"]
    print(
        f"\n1 GiB task: {took:.1f} s; master RSS {master_rss.start / MIB:.0f} -> peak "
        f"{master_peak / MIB:.0f} MiB; worker RSS {worker_rss.start / MIB:.0f} -> peak "
        f"{worker_peak / MIB:.0f} MiB; store +{store_growth / MIB:.2f} MiB; "
        f"stored logs {len(logs.encode())} bytes"
    )
    assert shown["status"] == "completed", shown
    assert len(logs.encode()) <= LOG_TAIL_BYTES
    first, _, rest = logs.partition("\n")
    dropped = GIB - len(rest.encode())
    assert first == (
        f"[cloudai: {dropped} bytes of earlier output dropped; "
        f"the last {len(rest.encode())} bytes follow]"
    )
    assert rest.endswith("cloudai\ncloudai\n") or rest.endswith("cloudai\ncloud")
    assert master_peak <= MASTER_RSS_MAX, f"master RSS peaked at {master_peak / MIB:.0f} MiB"
    assert master_peak - master_rss.start <= MASTER_RSS_GROWTH_MAX
    assert worker_peak - worker_rss.start <= WORKER_RSS_GROWTH_MAX
    assert store_growth <= STORE_GROWTH_MAX


def test_a_worker_with_an_impossible_flag_refuses_to_start(tmp_path: pathlib.Path) -> None:
    """One line and exit 2, before it serves anything: not "runs on but never registers"."""
    c = ProcCluster(tmp_path)
    try:
        for flags in (["--gpu", "2147483648"], ["--cpu", "inf"], ["--cpu", "1e-300"],
                      ["--mem", "nan"], ["--id", "../escape"]):  # fmt: skip
            argv = ["worker", "--id", "w9", "--runtime", "process", "--listen", "127.0.0.1:0"]
            res = c.cli(*argv, *flags, timeout=30)
            assert res.returncode == 2, (flags, res.returncode, res.stderr)
            assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert not (tmp_path / "home" / "escape").exists()
    finally:
        c.close()


def test_a_20_mb_request_is_refused_and_task_ls_works_for_everyone(
    process_cluster: ProcCluster,
) -> None:
    c = process_cluster
    with c.admin_channel(options=[("grpc.max_send_message_length", 64 * MIB)]) as channel:
        stub = master_pb2_grpc.MasterStub(channel)
        spec = types_pb2.TaskSpec(image="busybox", command=["x" * (20 * MIB)])
        with pytest.raises(grpc.RpcError) as exc:
            stub.SubmitTask(master_pb2.SubmitTaskRequest(spec=spec), timeout=30)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"vs. {MAX_REQUEST_BYTES}" in (exc.value.details() or "")
    listed = c.cli("task", "ls")
    assert listed.returncode == 0, listed.stderr
    # The CLI refuses an oversized command itself, with the invalid-argument exit code.
    res = c.cli("task", "run", "busybox", "x" * (70 * 1024))
    assert res.returncode == 2 and "bytes long, at most" in res.stderr, res.stderr
