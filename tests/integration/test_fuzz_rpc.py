"""Fuzzing every RPC of the Master and Worker services over real gRPC (hypothesis).

Requests are generated from the protobuf descriptors (tests/fuzz.py), so every field of every
request message, and any RPC added later, is covered. Each reply must be OK or a clear error
(never INTERNAL or UNKNOWN), its message must carry no traceback, SQL or driver text, and the
store must hold no half-stored or out-of-bounds record afterwards.

SAFETY: the cluster's one worker runs tests.fuzz.HarmlessRuntime, which replaces every command
with `true` and drops the environment: generated specs never run on this machine.

At least 1,000 cases per RPC under CI=true on SQLite, a tenth of that on PostgreSQL
(CLOUDAI_FUZZ_EXAMPLES overrides; CLOUDAI_FUZZ_DEBUG=1 prints every error answer). Each RPC's
time and its answers by status code are printed (pytest -s shows them). An RPC without request
fields (ListWorkers, Describe) has fewer distinct cases than that: hypothesis stops when it has
tried them all."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select, text

from cloudai.api.v1 import master_pb2, worker_pb2
from cloudai.core.lifecycle import TERMINAL, TaskStatus
from cloudai.core.limits import (
    ACTOR_MAX,
    ERROR_MAX,
    LOG_TAIL_BYTES,
    MAX_REQUEST_BYTES,
    REASON_MAX,
    RUNTIME_MAX,
    command_problems,
    validate_task_id,
)
from cloudai.core.models import (
    STOP_SIGNALS,
    TaskSpec,
    validate_address,
    validate_worker_id,
)
from cloudai.core.resources import Resources
from cloudai.core.stop_update import WORKER_STAGES
from cloudai.security.tls import master_target_options
from cloudai.worker import app as worker_app
from tests.cluster import WORKER_CALLS, LocalCluster
from tests.fuzz import FUZZ_EXAMPLES, HarmlessRuntime, Hints, ids_like, message_class, requests
from tests.helpers import need

HARMLESS = "harmless-fuzz-worker"
OK = grpc.StatusCode.OK
# A clear answer to a bad or impossible request. INTERNAL and UNKNOWN are bugs.
EXPECTED = {
    OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}
# Logs come from the worker, through the master: a worker that is not there is UNAVAILABLE;
# following a task that stays pending outlasts the call's deadline.
EXTRA = {
    "StreamTaskLogs": {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED},
}
LEAKS = ("Traceback", 'File "', "[SQL", "sqlalchemy", "sqlite3", "psycopg", "INSERT ", "SELECT ")
DEBUG = bool(os.environ.get("CLOUDAI_FUZZ_DEBUG"))  # print every error answer
MASTER = master_pb2.DESCRIPTOR.services_by_name["Master"]
WORKER = worker_pb2.DESCRIPTOR.services_by_name["Worker"]
TIMINGS: dict[str, float] = {}
CODES: dict[str, Counter[str]] = {}  # how the fuzz went: replies by code, per RPC


# The master's calls that workers make: they go to its port for workers, with the harmless
# worker's certificate (the rest go to its client port, with the admin's token), so the fuzz
# reaches past authentication into the handlers; tests/integration/test_security.py covers
# the callers that are turned away (WORKER_CALLS, from tests/cluster.py).


@dataclass
class FuzzEnv:
    cluster: LocalCluster
    engine: Any
    master: grpc.Channel  # the client port, as the admin
    master_for_workers: grpc.Channel  # the workers' port, as the harmless worker
    worker: grpc.Channel  # the harmless worker, as the master
    examples: int  # cases per RPC
    known: list[str] = field(default_factory=list)  # task IDs that exist

    def channel_for(self, service: str, name: str) -> grpc.Channel:
        if service == "Worker":
            return self.worker
        return self.master_for_workers if name in WORKER_CALLS else self.master

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.cluster.token}"),)


@contextlib.contextmanager
def _pg_database() -> Iterator[str]:
    """A fresh database on the server named by CLOUDAI_TEST_PG_URL, dropped afterwards."""
    base = os.environ.get("CLOUDAI_TEST_PG_URL", "")
    if not base:
        need("PostgreSQL", "CLOUDAI_TEST_PG_URL is not set (scripts/test.sh sets it)")
    import psycopg

    name = f"fz_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzEnv]:
    """A master and one harmless worker, shared by every RPC's fuzz (on SQLite, then on
    PostgreSQL, where column sizes and NUL are enforced by the engine)."""
    tmp = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            url = stack.enter_context(_pg_database())
        else:
            url = f"sqlite:///{tmp / 'fuzz.db'}"
        quiet = logging.getLogger("cloudai")
        stack.callback(quiet.setLevel, quiet.level)
        quiet.setLevel(logging.WARNING)  # thousands of INFO boxes would be most of the time
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setattr(
            worker_app, "open_runtime", lambda _n, wid, state, *_: HarmlessRuntime(wid, state)
        )
        cluster = LocalCluster(url, tmp)
        stack.callback(cluster.close)
        cluster.add_worker(HARMLESS, cpu=4, mem=8)
        engine = create_engine(cluster.master[0].store.url)
        stack.callback(engine.dispose)
        assert cluster.pki is not None
        master = stack.enter_context(
            grpc.secure_channel(
                cluster.address,
                grpc.ssl_channel_credentials(cluster.pki.ca_cert.read_bytes()),
                options=master_target_options(),
            )
        )
        for_workers = stack.enter_context(cluster.channel_as_worker(HARMLESS))
        worker_channel = stack.enter_context(cluster.channel_as_master(HARMLESS))
        # The second store gets a tenth of the cases: it is there for what only PostgreSQL
        # enforces (column sizes, NUL); SQLite gets the full count.
        examples = FUZZ_EXAMPLES if request.param == "sqlite" else max(FUZZ_EXAMPLES // 10, 30)
        known = [_seed_task(cluster, i) for i in range(4)]
        yield FuzzEnv(cluster, engine, master, for_workers, worker_channel, examples, known)
    print(f"\nfuzz on {request.param}: {sum(TIMINGS.values()):.1f} s in all")
    for name, seconds in TIMINGS.items():
        print(f"  {name:32} {seconds:6.1f} s  {dict(CODES.get(name, {}))}")
    TIMINGS.clear()
    CODES.clear()


def _seed_task(cluster: LocalCluster, i: int) -> str:
    spec = TaskSpec(image="busybox", command=("true",), resources=Resources(cpu=0.5, mem_gb=0.1))
    task = cluster.client.submit(spec)
    if i == 0:
        cluster.client.cancel_many([task.task_id], reason="seed")
    return task.task_id


def _hints(env: FuzzEnv, method: MethodDescriptor) -> Hints:
    workers = ["", "fz-1", "fz-2"]
    if not method.name.endswith("RegisterWorker"):  # never move the harmless worker away
        workers += [HARMLESS, HARMLESS, HARMLESS]
    worker_address = env.cluster.workers[HARMLESS].link.address
    task_ids = ids_like(lambda: env.known)
    return {  # plausible values by field name; hostile ones come from tests/fuzz.py
        "task_id": task_ids,
        "task_ids": task_ids,
        "running_task_ids": task_ids,
        "stopping_task_ids": task_ids,
        "worker_id": st.one_of(
            st.sampled_from(workers), st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
        ),
        "image": st.sampled_from(["cloudai-test/busybox:latest", "busybox"]),
        "status": st.sampled_from([s.value for s in TaskStatus]),
        "stop_signal": st.sampled_from(["", *sorted(STOP_SIGNALS)]),
        "signal": st.sampled_from(["", *sorted(STOP_SIGNALS)]),
        "stage": st.sampled_from(sorted(s.value for s in WORKER_STAGES)),
        "address": st.sampled_from(
            ["127.0.0.1:1", "localhost:1", "[::1]:1", "127.0.0.1:0", "h:99999", worker_address]
        ),
        "runtime": st.sampled_from(["process", "docker"]),
        "owner": st.sampled_from(["", "alice"]),
        "requested_by": st.sampled_from(["", "alice"]),
        "cancelled_by": st.sampled_from(["", "alice"]),
        "reason": st.sampled_from(["", "why"]),
        "cpu": st.sampled_from([0.01, 0.5, 1.0, 2.0]),
        "mem_gb": st.sampled_from([0.0, 0.01, 0.5]),
        "storage_gb": st.sampled_from([0.0, 1.0]),
        "grace_seconds": st.sampled_from([0.0, 1.0, 3600.0]),
        "completed_at": st.just(time.time()),
        "at": st.just(time.time()),
    }


@functools.cache
def _callable(channel: grpc.Channel, method: MethodDescriptor) -> Any:
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.client_streaming:  # a bidi stream (Heartbeats): one request on it
        make = channel.stream_stream
    else:
        make = channel.unary_stream if method.server_streaming else channel.unary_unary
    return make(
        path,
        request_serializer=message_class(method.input_type).SerializeToString,
        response_deserializer=message_class(method.output_type).FromString,
    )


def _call(
    channel: grpc.Channel, method: MethodDescriptor, request: Any, metadata: Any = ()
) -> tuple[Any, str, Any]:
    fn = _callable(channel, method)
    try:
        if method.client_streaming:
            return OK, "", list(fn(iter([request]), timeout=10, metadata=metadata))
        if method.server_streaming:
            return OK, "", list(fn(request, timeout=1, metadata=metadata))
        return OK, "", fn(request, timeout=10, metadata=metadata)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", None


def _check_reply(method: MethodDescriptor, code: Any, detail: str, request: Any) -> None:
    allowed = EXPECTED | EXTRA.get(method.name, set())
    assert code in allowed, f"{method.name} answered {code.name}: {detail!r}\nrequest: {request}"
    assert not any(leak in detail for leak in LEAKS), f"{method.name} leaked: {detail!r}"
    assert len(detail) <= 2000, f"{method.name}: a {len(detail)}-character error"


def _task_count(env: FuzzEnv) -> int:
    with env.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM tasks")).scalar_one())


def _fuzz(env: FuzzEnv, service: str, method: MethodDescriptor) -> None:
    hints = _hints(env, method)
    channel = env.channel_for(service, method.name)
    codes = CODES.setdefault(f"{service}.{method.name}", Counter())

    @settings(settings.get_profile("cloudai-fuzz"), database=None, max_examples=env.examples)
    @given(requests(method, hints))
    def one(request: Any) -> None:
        code, detail, reply = _call(channel, method, request, env.metadata)
        codes[code.name] += 1
        if DEBUG and code != OK:
            print(f"{method.name}: {code.name}: {detail[:150]}")
        _check_reply(method, code, detail, request)
        if method.name == "SubmitTask" and code == OK:
            env.known.append(reply.task_id)

    tasks_before, accepted_before = _task_count(env), codes["OK"]
    started = time.monotonic()
    one()
    TIMINGS[f"{service}.{method.name}"] = time.monotonic() - started
    if method.name == "SubmitTask":  # only accepted submits added rows: nothing half-stored
        assert _task_count(env) == tasks_before + codes["OK"] - accepted_before
    _check_store(env)


@pytest.mark.parametrize("name", [m.name for m in MASTER.methods])
def test_master_rpc_fuzz(env: FuzzEnv, name: str) -> None:
    _fuzz(env, "Master", MASTER.methods_by_name[name])


@pytest.mark.parametrize("name", [m.name for m in WORKER.methods])
def test_worker_rpc_fuzz(env: FuzzEnv, name: str) -> None:
    _fuzz(env, "Worker", WORKER.methods_by_name[name])


@pytest.mark.parametrize(
    ("service", "name"),
    [("Master", m.name) for m in MASTER.methods] + [("Worker", m.name) for m in WORKER.methods],
)
def test_a_request_over_the_size_limit_is_refused(env: FuzzEnv, service: str, name: str) -> None:
    """Whatever the RPC, a message over MAX_REQUEST_BYTES is refused before it is parsed, and
    the master goes on answering (`task ls` works for everyone)."""
    method = (MASTER if service == "Master" else WORKER).methods_by_name[name]
    cls = message_class(method.input_type)
    big = cls()
    big.ParseFromString(
        # An unknown field (number 15000) carrying 5 MiB: every message type can hold it.
        _unknown_field(15000, b"x" * (MAX_REQUEST_BYTES + 1024))
    )
    code, detail, _ = _call(env.channel_for(service, name), method, big, env.metadata)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, detail)
    assert "larger than max" in detail
    env.cluster.client.list_tasks()


def _unknown_field(number: int, payload: bytes) -> bytes:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    return varint(number << 3 | 2) + varint(len(payload)) + payload


# ---- the store afterwards: no half-stored or out-of-bounds record ---------------------------


def _check_store(env: FuzzEnv) -> None:
    with env.engine.connect() as conn:
        tasks = list(conn.execute(text("SELECT * FROM tasks")).mappings())
        assigned = {r[0] for r in conn.execute(text("SELECT task_id FROM assignments"))}
        results = list(conn.execute(text("SELECT * FROM results")).mappings())
        workers = list(conn.execute(text("SELECT * FROM workers")).mappings())
        cancels = list(conn.execute(text("SELECT * FROM cancellations")).mappings())
        orphans = conn.execute(
            select(func.count())
            .select_from(text("task_events"))
            .where(text("task_id NOT IN (SELECT task_id FROM tasks)"))
        ).scalar_one()
    assert orphans == 0
    status = {}
    for t in tasks:
        status[t["task_id"]] = t["status"]
        assert validate_task_id(t["task_id"]) is None, t["task_id"]
        assert t["status"] in {s.value for s in TaskStatus}, t
        spec = TaskSpec(
            image=t["image"],
            command=tuple(_json(t["command"])),
            env=dict(_json(t["env"])),
            resources=Resources(t["req_cpu"], t["req_mem_gb"], t["req_storage_gb"], t["req_gpu"]),
            name=t["name"],
            worker_id=t["requested_worker"] or "",
            owner=t["owner"],
            grace_seconds=None if t["grace_seconds"] < 0 else t["grace_seconds"],  # -1: not given
            stop_signal=t["stop_signal"],
        )
        assert spec.problems() == [], (t["task_id"], spec.problems())
        assert command_problems(spec.command) == []
        if t["status"] == TaskStatus.RUNNING.value:
            assert t["task_id"] in assigned, f"running task {t['task_id']} has no assignment"
    for r in results:
        assert status.get(r["task_id"]) in {s.value for s in TERMINAL}, r["task_id"]
        assert len(r["logs"].encode()) <= LOG_TAIL_BYTES and "\x00" not in r["logs"]
        assert len(r["error"]) <= ERROR_MAX
    for w in workers:
        assert validate_worker_id(w["worker_id"]) is None and validate_address(w["address"]) is None
        capacity = Resources(w["cpu"], w["mem_gb"], w["storage_gb"], w["gpu"])
        unreached = w["source"] == "manual" and w["cpu"] == 0  # registered by address only
        assert unreached or capacity.validate_capacity() == [], (w["worker_id"], capacity)
        assert len(w["runtime"]) <= RUNTIME_MAX
    for c in cancels:
        assert len(c["reason"]) <= REASON_MAX and math.isfinite(c["grace_seconds"])
        assert len(c["requested_by"]) <= ACTOR_MAX


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
