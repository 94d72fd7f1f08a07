"""Regressions for what a hostile probe and the fuzzers found, over real gRPC, on SQLite and
PostgreSQL: each was an INTERNAL answer with the SQL statement, an out-of-bounds row, or a path
built from a task ID."""

from __future__ import annotations

import logging
import math
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, text

from cloudai.api.v1 import master_pb2, master_pb2_grpc, types_pb2, worker_pb2, worker_pb2_grpc
from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.errors import CloudAIError, LimitExceeded, NoCapacity
from cloudai.runtime.base import Handle
from cloudai.runtime.process import ProcessRuntime
from tests.cluster import LocalCluster

MIB = 1024 * 1024


@pytest.fixture
def stubs(cluster: LocalCluster) -> Iterator[tuple[Any, Any]]:
    """Raw stubs to the master and to worker w1: requests the Client would never build."""
    with cluster.channel_as_master("w1") as w:
        yield cluster.raw_master(), worker_pb2_grpc.WorkerStub(w)


def _refused(call: Any, request: Any) -> str:
    with pytest.raises(grpc.RpcError) as exc:
        call(request, timeout=10)
    detail = exc.value.details() or ""
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (exc.value.code(), detail)
    assert "[SQL" not in detail and "Error" not in detail, detail
    return detail


def _rows(cluster: LocalCluster, sql: str) -> list[Any]:
    engine = create_engine(cluster.master[0].store.url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)))
    finally:
        engine.dispose()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e-300, 1e300])
def test_register_worker_with_an_impossible_capacity_is_invalid(
    cluster: LocalCluster, stubs: tuple[Any, Any], value: float
) -> None:
    """Before: NaN answered INTERNAL with the SQL statement; inf was stored and printed as
    `Infinity` by `workers -o json`; 1e-300 lifted any limit on tasks per worker."""
    master, _ = stubs
    request = master_pb2.RegisterWorkerRequest(
        worker_id="x1", address="127.0.0.1:9", capacity=types_pb2.Resources(cpu=value, mem_gb=1)
    )
    assert "invalid capacity: cpu must be" in _refused(master.RegisterWorker, request)
    assert _rows(cluster, "SELECT worker_id FROM workers WHERE worker_id = 'x1'") == []


def test_a_runtime_name_longer_than_its_column_is_invalid(stubs: tuple[Any, Any]) -> None:
    """Before, on PostgreSQL: INTERNAL, "value too long for type character varying(16)"."""
    request = master_pb2.RegisterWorkerRequest(
        worker_id="x1",
        address="127.0.0.1:9",
        capacity=types_pb2.Resources(cpu=1, mem_gb=1),
        runtime="r" * 17,
    )
    assert "runtime is longer than 16 characters" in _refused(stubs[0].RegisterWorker, request)


@pytest.mark.parametrize("method", ["GetTask", "CancelTask"])
def test_a_task_id_with_nul_is_invalid(stubs: tuple[Any, Any], method: str) -> None:
    """Before, on PostgreSQL: INTERNAL, "text fields cannot contain NUL (0x00) bytes"."""
    assert "invalid task id" in _refused(getattr(stubs[0], method), types_pb2.TaskID(task_id="a\0"))


def test_logs_of_a_task_id_with_nul_are_invalid(stubs: tuple[Any, Any]) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        list(stubs[0].StreamTaskLogs(types_pb2.LogsRequest(task_id="a\0"), timeout=10))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"name": "n" * MIB}, "name is longer than 128 characters"),
        ({"name": "n" * 129}, "name is longer than 128 characters"),
        ({"command": ["x" * (70 * 1024)]}, "the command is 71680 bytes long"),
        ({"command": ["x"] * 1025}, "the command has 1025 arguments"),
        ({"env": {"K": "v" * (70 * 1024)}}, "the environment is"),
        ({"name": "a\0b"}, "name must not contain control characters"),
        ({"resources": {"cpu": 1, "gpu": 2**31 - 1}}, "gpu must be at most 64"),
        ({"resources": {"cpu": 1e-300}}, "cpu must be at least 0.01 cores"),
    ],
)
def test_oversized_or_impossible_fields_are_refused_and_nothing_is_stored(
    cluster: LocalCluster, stubs: tuple[Any, Any], spec: dict[str, Any], fragment: str
) -> None:
    """Before: 1 MB owners were stored on SQLite (a VARCHAR(64) column). The owner is now the
    caller (its token's user), whatever a spec says; every other field is checked."""
    fields = {"image": "busybox", "resources": {"cpu": 0.5}, **spec}
    request = master_pb2.SubmitTaskRequest(spec=types_pb2.TaskSpec(**fields))
    before = _rows(cluster, "SELECT count(*) FROM tasks")
    detail = _refused(stubs[0].SubmitTask, request)
    assert fragment in detail and len(detail) < 400, detail
    assert _rows(cluster, "SELECT count(*) FROM tasks") == before


def test_an_error_about_a_10_kb_image_quotes_a_short_prefix(stubs: tuple[Any, Any]) -> None:
    request = master_pb2.SubmitTaskRequest(
        spec=types_pb2.TaskSpec(image="A" * 10_000, resources=types_pb2.Resources(cpu=1))
    )
    detail = _refused(stubs[0].SubmitTask, request)
    assert "… (10000 characters)" in detail and len(detail) < 200, detail


@pytest.mark.parametrize("task_id", ["{victim}", "../victim", "..", "a/../../victim"])
def test_a_task_id_never_becomes_a_path_on_the_worker(
    cluster: LocalCluster, stubs: tuple[Any, Any], tmp_path: pathlib.Path, task_id: str
) -> None:
    """Before: AssignTask with task ID `/some/dir` ran, and the cleanup deleted that
    directory."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    spec = types_pb2.TaskSpec(
        image="busybox", command=["true"], resources=types_pb2.Resources(cpu=0.1)
    )
    request = worker_pb2.AssignTaskRequest(task_id=task_id.format(victim=victim), spec=spec)
    assert "invalid task id" in _refused(stubs[1].AssignTask, request)
    for call, req in (
        (stubs[1].CancelTask, types_pb2.CancelTaskRequest(task_id=str(victim))),
        (stubs[0].GetTask, types_pb2.TaskID(task_id=str(victim))),
    ):
        _refused(call, req)
    assert (victim / "keep").exists()


async def test_the_process_runtime_builds_paths_only_from_valid_ids(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime checks again, whoever calls it: no path outside its state directory, and
    no signal for a handle it refuses."""
    signalled: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda pgid, sig: signalled.append((pgid, sig)))
    victim = tmp_path / "victim"
    victim.mkdir()
    rt = ProcessRuntime("w1", tmp_path / "state")
    for bad in (str(victim), "..", "../victim", ""):
        with pytest.raises(CloudAIError, match="invalid task id|task_id is required"):
            await rt.destroy(Handle(bad, "999999999", 0.0))
        with pytest.raises(CloudAIError):
            await rt.start(bad, TaskSpec(image="busybox", command=("true",)))
    # A directory that is not a valid ID (made behind the runtime's back) is not adopted.
    (rt.root / ".hidden").mkdir()
    (rt.root / ".hidden" / "meta.json").write_text('{"pid": 5, "started_at": 0, "worker_id": "w1"}')
    assert await rt.list() == []
    assert victim.exists() and signalled == []


@pytest.mark.parametrize("ref", ["0", "1", "-1", "self", "x"])
async def test_the_process_runtime_never_signals_a_group_that_is_not_a_tasks(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, ref: str
) -> None:
    """A handle (or a tampered meta.json) naming process group 0, 1 or the worker's own would
    have SIGKILLed every process of that group."""
    signalled: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda pgid, sig: signalled.append((pgid, sig)))
    rt = ProcessRuntime("w1", tmp_path / "state")
    ref = str(os.getpgrp()) if ref == "self" else ref
    with pytest.raises(CloudAIError, match="process group"):
        await rt.destroy(Handle("task-1", ref, 0.0))
    assert signalled == []


def test_a_20_mb_request_is_refused_and_the_client_says_so_with_exit_2(
    cluster: LocalCluster, stubs: tuple[Any, Any]
) -> None:
    """Before: two 20 MB submits were stored; then `task ls` failed for everyone with exit 6
    ("no worker has room")."""
    big = master_pb2.SubmitTaskRequest(spec=types_pb2.TaskSpec(image="b", command=["x" * 20 * MIB]))
    with (
        cluster.admin_channel(options=[("grpc.max_send_message_length", 64 * MIB)]) as channel,
        pytest.raises(grpc.RpcError) as exc,
    ):
        master_pb2_grpc.MasterStub(channel).SubmitTask(big, timeout=30)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    cluster.client.list_tasks()  # works for everyone
    # The client refuses to send one itself: a size limit, exit 2, not "no worker has room".
    with pytest.raises(LimitExceeded) as err:
        cluster.client.list_tasks(owner="o" * 5 * MIB)
    assert err.value.exit_code == 2 and "at most 4 MiB" in err.value.message
    # No room is still exit 6.
    with pytest.raises(NoCapacity) as no_room:
        cluster.client.submit(TaskSpec(image="busybox", resources=Resources(cpu=64)))
    assert no_room.value.exit_code == 6


def test_an_unexpected_error_reaches_the_client_as_an_incident_id_only(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No store error or exception text reaches a client: a generic message and an incident
    ID, which the server logs with the traceback."""
    master = cluster.master[0]

    async def broken() -> Any:
        raise RuntimeError("[SQL: SELECT secret FROM workers] /srv/cloudai/db")

    monkeypatch.setattr(master, "list_workers", broken)
    with (
        caplog.at_level(logging.ERROR, logger="cloudai.rpc.errors"),
        pytest.raises(CloudAIError) as exc,
    ):
        cluster.client.list_workers()
    message = exc.value.message
    assert "secret" not in message and "SQL" not in message and "RuntimeError" not in message
    assert message.startswith("internal error in ListWorkers (incident ")
    incident = message.split("incident ")[1].split(";")[0]
    logged = [r for r in caplog.records if incident in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback, under the same ID


def test_a_task_printing_nul_bytes_is_stored(cluster: LocalCluster) -> None:
    """PostgreSQL cannot store NUL in text: before, the result was refused (INTERNAL) and the
    worker retried its report for ever."""
    task = cluster.client.submit(
        TaskSpec(image="busybox", command=("printf", "a\\000b"), resources=Resources(cpu=0.1))
    )
    done = cluster.wait_status(task.task_id, "completed", "failed")
    assert done.status.value == "completed" and done.result is not None
    assert done.result.logs == "a\ufffdb"


def test_a_task_list_carries_summaries_and_a_task_its_whole_spec(cluster: LocalCluster) -> None:
    """Each task may hold 64 KiB of command and 64 KiB of env: a list carries the first KiB of
    each, so `task ls` stays within a reply however many such tasks there are."""
    spec = TaskSpec(
        image="busybox",
        command=("true", "x" * 60_000),
        env={"BIG": "v" * 60_000},
        resources=Resources(cpu=0.1),
    )
    task = cluster.client.submit(spec)
    listed = next(t for t in cluster.client.list_tasks() if t.task_id == task.task_id)
    assert listed.spec.command[1].endswith("…") and len(listed.spec.command[1]) <= 1025
    assert listed.spec.env == {"…": "1 more"}
    whole = cluster.client.get_task(task.task_id)
    assert whole.spec.command == spec.command and whole.spec.env == spec.env
