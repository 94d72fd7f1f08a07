"""The cluster's security over real gRPC and TLS on loopback, attacked the way an intruder
would: raw stubs over channels with no TLS, TLS without a client certificate, a certificate
for another worker, a certificate of another CA; users without a token, with a wrong one, or
acting on another user's tasks; rate limits; join tokens.

Each refusal is checked twice: the status code the caller gets, and that nothing changed
behind it (the task still runs, no result stored, no process started, no user added)."""

from __future__ import annotations

import os
import pathlib
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from cloudai.api.v1 import master_pb2, master_pb2_grpc, types_pb2, worker_pb2, worker_pb2_grpc
from cloudai.cli.secure import join
from cloudai.client import Client, Credentials
from cloudai.core.models import TaskSpec
from cloudai.core.resources import Resources
from cloudai.errors import (
    AlreadyExists,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from cloudai.rpc.convert import resources_to_pb, spec_to_pb
from cloudai.security.pki import Pki, identity_of
from cloudai.security.tls import Tls, master_target_options, worker_target_options
from cloudai.store import Store, results
from tests.cluster import LocalCluster
from tests.helpers import eventually

# ---- helpers ------------------------------------------------------------------------------


def spec(*command: str, worker: str = "", env: dict[str, str] | None = None) -> TaskSpec:
    return TaskSpec(
        image="busybox",
        command=command,
        env=env or {},
        resources=Resources(cpu=0.5, mem_gb=0.1),
        worker_id=worker,
    )


def gate(tmp: pathlib.Path, first: str = "true") -> tuple[pathlib.Path, tuple[str, ...]]:
    """A command that runs `first`, then waits until the test touches the returned file."""
    path = tmp / f"go-{secrets.token_hex(4)}"
    wait = f'while [ ! -e "{path}" ]; do sleep 0.02; done'
    return path, ("sh", "-c", f"{first}; {wait}; echo released")


def code_of(call: Callable[..., Any], *args: Any) -> grpc.StatusCode:
    """The status code a raw gRPC call `call(*args)` fails with (the test fails if it
    succeeds)."""
    try:
        reply = call(*args)
        if hasattr(reply, "__iter__") and not hasattr(reply, "ListFields"):
            list(reply)  # a server stream: the refusal comes with the first read
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    raise AssertionError(f"the call was accepted: {reply!r}")


def worker_rpcs(task_id: str, worker_id: str) -> dict[str, Callable[[Any], Any]]:
    """Each RPC a worker makes to the master, speaking for `worker_id`, as f(MasterStub)."""
    return {
        "RegisterWorker": lambda stub: stub.RegisterWorker(
            register_request(worker_id, "127.0.0.1:1"), timeout=5
        ),
        "SendHeartbeat": lambda stub: stub.SendHeartbeat(
            master_pb2.HeartbeatRequest(worker_id=worker_id, running_task_ids=[]), timeout=5
        ),
        "Heartbeats": lambda stub: stub.Heartbeats(
            iter([master_pb2.HeartbeatRequest(worker_id=worker_id, running_task_ids=[])]),
            timeout=5,
        ),
        "ReportTaskCompletion": lambda stub: stub.ReportTaskCompletion(
            forged_result(task_id, worker_id, "failed"), timeout=5
        ),
        "UpdateStop": lambda stub: stub.UpdateStop(
            master_pb2.StopUpdate(
                task_id=task_id, worker_id=worker_id, stage="removed", at=time.time()
            ),
            timeout=5,
        ),
        "UpdateStops": lambda stub: stub.UpdateStops(
            master_pb2.StopUpdates(worker_id=worker_id, updates=[removed(task_id, worker_id)]),
            timeout=5,
        ),
    }


def removed(task_id: str, worker_id: str) -> master_pb2.StopUpdate:
    return master_pb2.StopUpdate(
        task_id=task_id, worker_id=worker_id, stage="removed", at=time.time()
    )


def master_stub(channel: grpc.Channel) -> master_pb2_grpc.MasterStub:
    return master_pb2_grpc.MasterStub(channel)


def ca_only_channel(c: LocalCluster, address: str, target: list[tuple[str, Any]]) -> grpc.Channel:
    """TLS that trusts the cluster CA but presents no certificate (what the CLI holds)."""
    assert c.pki is not None
    creds = grpc.ssl_channel_credentials(c.pki.ca_cert.read_bytes())
    return grpc.secure_channel(address, creds, options=target)


def other_ca(tmp: pathlib.Path) -> Pki:
    """A second cluster's CA, with a certificate for worker `w1` and a master certificate."""
    pki = Pki(tmp / "other-ca")
    pki.init([])
    pki.issue_worker("w1")
    return pki


def register_request(worker_id: str, address: str) -> master_pb2.RegisterWorkerRequest:
    return master_pb2.RegisterWorkerRequest(
        worker_id=worker_id,
        address=address,
        capacity=resources_to_pb(Resources(cpu=64, mem_gb=256, storage_gb=100)),
        runtime="process",
    )


def forged_result(task_id: str, worker_id: str, status: str = "completed") -> types_pb2.TaskResult:
    return types_pb2.TaskResult(
        task_id=task_id,
        worker_id=worker_id,
        status=status,
        logs="forged output\n",
        exit_code=0 if status == "completed" else 1,
        completed_at=time.time(),
    )


def stored_result(c: LocalCluster, task_id: str) -> Any:
    store = Store(c.db_url)
    try:
        return store.tx_sync(results.get, task_id)
    finally:
        store.close()


def worker_row_address(c: LocalCluster, worker_id: str) -> str:
    return next(w.address for w in c.client.list_workers() if w.worker_id == worker_id)


def denied_events(c: LocalCluster, task_id: str) -> list[tuple[str, str]]:
    """(actor, message) of each `denied` event on a task, as the admin's `task show` has it."""
    return [(e.actor, e.message) for e in c.client.get_task(task_id).events if e.kind == "denied"]


def running_on(c: LocalCluster, task_id: str, worker_id: str) -> bool:
    """The master has the task running on the worker, and the worker holds it."""
    task = c.client.get_task(task_id)
    return (
        task.status.value == "running"
        and task.worker_id == worker_id
        and task.result is None
        and task_id in c.workers[worker_id].supervisor.running_ids()
    )


def beats_after(c: LocalCluster, worker_id: str, n: int = 3) -> None:
    """Wait until `worker_id` has sent `n` more heartbeats (each one reconciles its tasks)."""
    metric = c.master[0].metrics.heartbeats.labels(worker_id)
    start = metric._value.get()
    eventually(
        lambda: metric._value.get() >= start + n, what=f"{n} more heartbeats from {worker_id}"
    )


@pytest.fixture
def sq(sqlite_url: str, tmp_path: pathlib.Path) -> Iterator[LocalCluster]:
    """SQLite only: a master with two process-runtime workers."""
    c = LocalCluster(sqlite_url, tmp_path)
    try:
        c.add_worker("w1")
        c.add_worker("w2")
        yield c
    finally:
        c.close()


@pytest.fixture
def bare(sqlite_url: str, tmp_path: pathlib.Path) -> Iterator[Callable[..., LocalCluster]]:
    """Start a master with no worker (tasks stay pending) and these MasterConfig fields."""
    made: list[LocalCluster] = []

    def start(**config: Any) -> LocalCluster:
        made.append(LocalCluster(sqlite_url, tmp_path, **config))
        return made[-1]

    yield start
    for c in made:
        c.close()


# ---- transport: who may even talk -----------------------------------------------------------


def test_plaintext_clients_are_refused_by_the_tls_master(sq: LocalCluster) -> None:
    for port in (sq.port, sq.peer_port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert (
                code_of(
                    lambda ch=ch: master_stub(ch).ListWorkers(
                        master_pb2.ListWorkersRequest(), timeout=5
                    )
                )
                is grpc.StatusCode.UNAVAILABLE
            )
            assert (
                code_of(
                    lambda ch=ch: master_stub(ch).RegisterWorker(
                        register_request("w1", "127.0.0.1:1"), timeout=5
                    )
                )
                is grpc.StatusCode.UNAVAILABLE
            )
    # Through the client API: one clear line that says what to do.
    plain = Client(sq.address, credentials=Credentials(sq.token, None))
    with pytest.raises(Unavailable, match="plaintext: it may use TLS"):
        plain.list_workers()
    plain.close()
    assert worker_row_address(sq, "w1") == sq.workers["w1"].link.address


def test_worker_calls_without_a_certificate_are_refused(sq: LocalCluster) -> None:
    """On the worker port the handshake needs a certificate; on the client port (TLS, no
    client certificate) every worker RPC is UNAUTHENTICATED."""
    task = sq.client.submit(spec(*gate(sq.tmp)[1], worker="w1"))
    sq.wait_status(task.task_id, "running")
    with ca_only_channel(sq, f"127.0.0.1:{sq.peer_port}", master_target_options()) as ch:
        for name, call in worker_rpcs(task.task_id, "w1").items():
            assert code_of(call, master_stub(ch)) is grpc.StatusCode.UNAVAILABLE, name
    with ca_only_channel(sq, sq.address, master_target_options()) as ch:
        for name, call in worker_rpcs(task.task_id, "w1").items():
            assert code_of(call, master_stub(ch)) is grpc.StatusCode.UNAUTHENTICATED, name
    beats_after(sq, "w1")
    assert running_on(sq, task.task_id, "w1")
    assert worker_row_address(sq, "w1") == sq.workers["w1"].link.address


def test_a_worker_cannot_speak_for_another_worker(
    cluster: LocalCluster, tmp_path: pathlib.Path
) -> None:
    """With w2's certificate (or an unknown worker's), register, heartbeat, report and stop
    progress as w1 are PERMISSION_DENIED: w1 keeps its address, its task keeps running and
    no result is stored (the probes: a takeover by RegisterWorker, a heartbeat with an empty
    task list failing all of w1's tasks, a forged report becoming the only result)."""
    task = cluster.client.submit(spec(*gate(tmp_path)[1], worker="w1"))
    cluster.wait_status(task.task_id, "running")
    w1_address = worker_row_address(cluster, "w1")
    for impostor in ("w2", "intruder"):
        with cluster.channel_as_worker(impostor) as ch:
            for name, call in worker_rpcs(task.task_id, "w1").items():
                code = code_of(call, master_stub(ch))
                assert code is grpc.StatusCode.PERMISSION_DENIED, (impostor, name)
    beats_after(cluster, "w1")
    assert running_on(cluster, task.task_id, "w1")
    assert stored_result(cluster, task.task_id) is None
    assert worker_row_address(cluster, "w1") == w1_address
    kinds = [e.kind for e in cluster.client.get_task(task.task_id).events]
    assert set(kinds) <= {"submitted", "placed", "delivered"}, kinds
    # The same channel is accepted for the worker it belongs to: the refusals were about
    # whose certificate it is, not a broken channel.
    with cluster.channel_as_worker("w2") as ch:
        reply = master_stub(ch).SendHeartbeat(
            master_pb2.HeartbeatRequest(worker_id="w2", running_task_ids=[]), timeout=5
        )
        assert reply.known


def test_a_worker_cannot_report_on_another_workers_task(
    cluster: LocalCluster, tmp_path: pathlib.Path
) -> None:
    go, cmd = gate(tmp_path)
    task = cluster.client.submit(spec(*cmd, worker="w1"))
    cluster.wait_status(task.task_id, "running")
    with cluster.channel_as_worker("w2") as ch:
        stub = master_stub(ch)
        # w2, with its own certificate, on w1's running task.
        assert (
            code_of(lambda: stub.ReportTaskCompletion(forged_result(task.task_id, "w2"), timeout=5))
            is grpc.StatusCode.PERMISSION_DENIED
        )
        assert (
            code_of(
                lambda: stub.UpdateStop(
                    master_pb2.StopUpdate(
                        task_id=task.task_id, worker_id="w2", stage="killed", at=time.time()
                    ),
                    timeout=5,
                )
            )
            is grpc.StatusCode.PERMISSION_DENIED
        )
        # In a batch: w2's own update on w1's task; one that claims to be w1's in w2's call.
        for claimed, code in (
            ("w2", grpc.StatusCode.PERMISSION_DENIED),
            ("w1", grpc.StatusCode.INVALID_ARGUMENT),
        ):
            batch = master_pb2.StopUpdates(worker_id="w2", updates=[removed(task.task_id, claimed)])
            assert code_of(lambda b=batch: stub.UpdateStops(b, timeout=5)) is code, claimed
        assert running_on(cluster, task.task_id, "w1")
        assert stored_result(cluster, task.task_id) is None
        # Once w1 reported, w2 cannot replace or add to its result.
        go.touch()
        done = cluster.wait_status(task.task_id, "completed")
        before = stored_result(cluster, task.task_id)
        assert before is not None and before["worker_id"] == "w1"
        assert (
            code_of(
                lambda: stub.ReportTaskCompletion(
                    forged_result(task.task_id, "w2", "failed"), timeout=5
                )
            )
            is grpc.StatusCode.PERMISSION_DENIED
        )
    after = cluster.client.get_task(task.task_id)
    assert stored_result(cluster, task.task_id) == before
    assert after.status.value == "completed" and after.exit_code == 0
    assert after.result is not None and "released" in after.result.logs
    assert [e.kind for e in after.events] == [e.kind for e in done.events]


def test_a_certificate_of_another_ca_fails_the_handshake(
    sq: LocalCluster, tmp_path: pathlib.Path
) -> None:
    stranger = other_ca(tmp_path)
    task = sq.client.submit(spec(*gate(sq.tmp)[1], worker="w1"))
    sq.wait_status(task.task_id, "running")
    # A worker certificate for w1 from another CA, on the master's worker port (mutual TLS)
    # and on its client port (no certificate needed there, but one offered must verify, or
    # it could name any worker it liked): the handshake fails on both.
    creds = Tls.for_worker(stranger, "w1").channel_credentials()
    for port in (sq.peer_port, sq.port):
        with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=master_target_options()) as ch:
            for name, call in worker_rpcs(task.task_id, "w1").items():
                code = code_of(call, master_stub(ch))
                assert code is grpc.StatusCode.UNAVAILABLE, (port, name, code)
    # A "master" certificate from another CA, on worker w1's port.
    creds = Tls.for_master(stranger).channel_credentials()
    address = sq.workers["w1"].link.address
    with grpc.secure_channel(address, creds, options=worker_target_options("w1")) as ch:
        worker = worker_pb2_grpc.WorkerStub(ch)
        assert (
            code_of(
                lambda: worker.CancelTask(
                    types_pb2.CancelTaskRequest(task_id=task.task_id), timeout=5
                )
            )
            is grpc.StatusCode.UNAVAILABLE
        )
        assert (
            code_of(
                lambda: worker.AssignTask(
                    worker_pb2.AssignTaskRequest(
                        task_id="task-forged", spec=spec_to_pb(spec("true"))
                    ),
                    timeout=5,
                )
            )
            is grpc.StatusCode.UNAVAILABLE
        )
    # A client that trusts another CA does not trust this master: a clear line.
    lost = Client(sq.address, credentials=Credentials(sq.token, stranger.ca_cert.read_bytes()))
    with pytest.raises(Unavailable, match="TLS handshake failed"):
        lost.list_workers()
    lost.close()
    beats_after(sq, "w1")
    assert running_on(sq, task.task_id, "w1")
    assert "task-forged" not in sq.workers["w1"].supervisor.running_ids()


def test_only_the_master_may_call_a_worker(sq: LocalCluster, tmp_path: pathlib.Path) -> None:
    """Another worker's certificate (of the cluster CA) on w1's port: AssignTask, CancelTask,
    StreamTaskLogs and Describe are PERMISSION_DENIED; nothing starts, nothing stops, no
    output is read. Without a certificate or without TLS, the handshake fails."""
    task = sq.client.submit(spec(*gate(tmp_path, "echo secret-output")[1], worker="w1"))
    sq.wait_status(task.task_id, "running")
    w1 = sq.workers["w1"]
    marker = tmp_path / "pwned"
    forged = worker_pb2.AssignTaskRequest(
        task_id="task-forged", spec=spec_to_pb(spec("sh", "-c", f"touch {marker}"))
    )
    calls: dict[str, Callable[[worker_pb2_grpc.WorkerStub], Any]] = {
        "AssignTask": lambda s: s.AssignTask(forged, timeout=5),
        "CancelTask": lambda s: s.CancelTask(
            types_pb2.CancelTaskRequest(task_id=task.task_id, force=True), timeout=5
        ),
        "StreamTaskLogs": lambda s: s.StreamTaskLogs(
            types_pb2.LogsRequest(task_id=task.task_id), timeout=5
        ),
        "Describe": lambda s: s.Describe(worker_pb2.DescribeRequest(), timeout=5),
    }
    with grpc.secure_channel(
        w1.link.address,
        Tls.for_worker(sq.pki, "w2").channel_credentials(),  # type: ignore[arg-type]
        options=worker_target_options("w1"),
    ) as ch:
        stub = worker_pb2_grpc.WorkerStub(ch)
        for name, call in calls.items():
            assert code_of(call, stub) is grpc.StatusCode.PERMISSION_DENIED, name
    for channel in (
        ca_only_channel(sq, w1.link.address, worker_target_options("w1")),
        grpc.insecure_channel(w1.link.address),
    ):
        with channel as ch:
            stub = worker_pb2_grpc.WorkerStub(ch)
            for name, call in calls.items():
                assert code_of(call, stub) is grpc.StatusCode.UNAVAILABLE, name
    assert "task-forged" not in w1.supervisor.running_ids()
    assert "task-forged" not in {h.task_id for h in sq.loop.run(w1.runtime.list())}
    beats_after(sq, "w1")
    assert running_on(sq, task.task_id, "w1")
    assert not marker.exists()
    assert sq.client.get_task(task.task_id).cancellation is None
    # The master's own certificate gets through: the refusals were about who called.
    with sq.channel_as_master("w1") as ch:
        info = worker_pb2_grpc.WorkerStub(ch).Describe(worker_pb2.DescribeRequest(), timeout=5)
        assert info.worker_id == "w1" and task.task_id in info.running_tasks


# ---- users: tokens, owners, admins ---------------------------------------------------------


def test_no_token_a_wrong_one_or_a_malformed_one_is_unauthenticated(sq: LocalCluster) -> None:
    unknown = "cloudai_" + secrets.token_urlsafe(32)
    cases = {
        "": "no token: pass --token, set CLOUDAI_TOKEN",
        unknown: "invalid token (unknown or revoked)",
        "hello": "invalid token",
        sq.token[:-1]: "invalid token",  # the admin's, one character short
    }
    for token, line in cases.items():
        with sq.client_with(token) as c:
            for call in (
                c.list_workers,
                c.whoami,
                lambda c=c: c.submit(spec("echo", "hi")),
                lambda c=c: c.list_tasks(),
            ):
                with pytest.raises(Unauthenticated) as caught:
                    call()
                assert caught.value.message.startswith(line), caught.value.message
                assert "\n" not in caught.value.message
    # Not a bearer token at all, on the raw stub.
    with ca_only_channel(sq, sq.address, master_target_options()) as ch:
        for header in (f"Basic {sq.token}", sq.token, f"Bearer {unknown}"):
            assert (
                code_of(
                    lambda header=header: master_stub(ch).ListTasks(
                        master_pb2.ListTasksRequest(),
                        metadata=(("authorization", header),),
                        timeout=5,
                    )
                )
                is grpc.StatusCode.UNAUTHENTICATED
            ), header
    assert sq.client.list_tasks() == []  # no submit got through
    assert sq.client.whoami().name == "admin"


def test_users_act_only_on_their_own_tasks_and_each_refusal_is_audited(
    cluster: LocalCluster, tmp_path: pathlib.Path
) -> None:
    alice, bob = cluster.user("alice"), cluster.user("bob")
    a_task = alice.submit(spec(*gate(tmp_path, "echo alice-secret")[1], worker="w1"))
    b_task = bob.submit(spec(*gate(tmp_path)[1], worker="w2"))
    for t in (a_task, b_task):
        cluster.wait_status(t.task_id, "running")
    assert alice.get_task(a_task.task_id).spec.owner == "alice"

    with pytest.raises(PermissionDenied, match="bob may not show task"):
        bob.get_task(a_task.task_id)
    with pytest.raises(PermissionDenied, match="bob may not cancel task"):
        bob.cancel(a_task.task_id)
    with pytest.raises(PermissionDenied, match="bob may not read the logs of task"):
        b"".join(bob.logs(a_task.task_id))
    acks = {a.task_id: a for a in bob.cancel_many([a_task.task_id, b_task.task_id])}
    assert not acks[a_task.task_id].success
    assert acks[a_task.task_id].error_code == "PERMISSION_DENIED"
    assert acks[a_task.task_id].exit_code == PermissionDenied.exit_code
    assert acks[b_task.task_id].success, acks[b_task.task_id]
    cluster.wait_status(b_task.task_id, "cancelled")

    beats_after(cluster, "w1")
    assert running_on(cluster, a_task.task_id, "w1")
    assert cluster.client.get_task(a_task.task_id).cancellation is None
    audit = denied_events(cluster, a_task.task_id)
    assert [actor for actor, _ in audit] == ["bob"] * 4, audit
    assert sorted(m.split(" refused")[0] for _, m in audit) == [
        "cancel",
        "cancel",
        "read the logs of",
        "show",
    ]
    assert denied_events(cluster, b_task.task_id) == []  # bob's own: nothing refused

    # The owner and an admin may.
    assert "alice-secret" in b"".join(alice.logs(a_task.task_id)).decode()
    assert cluster.client.get_task(a_task.task_id).spec.owner == "alice"
    assert "alice-secret" in b"".join(cluster.client.logs(a_task.task_id)).decode()
    cluster.client.cancel(a_task.task_id)
    done = cluster.wait_status(a_task.task_id, "cancelled")
    assert done.cancellation is not None and done.cancellation.requested_by == "admin"


def test_a_user_lists_only_its_own_tasks_and_how_many_are_hidden(sq: LocalCluster) -> None:
    """The probe: ListTasks handed every caller every task's environment."""
    alice, bob, carol = sq.user("alice"), sq.user("bob"), sq.user("carol")
    alices = [
        alice.submit(spec("echo", "a", env={"API_KEY": "alice-secret"})).task_id for _ in range(2)
    ]
    bobs = bob.submit(spec("echo", "b")).task_id
    carols = carol.submit(spec("echo", "c")).task_id
    for t in [*alices, bobs, carols]:
        sq.wait_status(t, "completed")
    seen, hidden = bob.list_tasks_counted()
    assert [t.task_id for t in seen] == [bobs] and hidden == 3
    assert all("alice-secret" not in str(t.spec.env) for t in seen)
    # Filters narrow what is counted as hidden too.
    assert bob.list_tasks_counted(owner="alice") == ([], 2)
    seen, hidden = bob.list_tasks_counted(owner="bob")
    assert [t.task_id for t in seen] == [bobs] and hidden == 0
    seen, hidden = bob.list_tasks_counted(status="failed")
    assert seen == [] and hidden == 0
    everything, hidden = sq.client.list_tasks_counted()
    assert sorted(t.task_id for t in everything) == sorted([*alices, bobs, carols])
    assert hidden == 0 and {t.spec.owner for t in everything} == {"alice", "bob", "carol"}


def test_admin_actions_are_refused_to_users(sq: LocalCluster) -> None:
    bob = sq.user("bob")
    for action, call in {
        "drain": lambda: bob.drain("w1"),
        "undrain": lambda: bob.drain("w1", drain=False),
        "register": lambda: bob.register("w1", "127.0.0.1:1"),
        "user add": lambda: bob.add_user("mallory", admin=True),
        "user ls": bob.list_users,
        "user rm": lambda: bob.remove_user("admin"),
        "join-token": lambda: bob.join_token(3600),
    }.items():
        with pytest.raises(PermissionDenied, match=f"{action} is for admins only"):
            call()
    w1 = next(w for w in sq.client.list_workers() if w.worker_id == "w1")
    assert not w1.drained and w1.address == sq.workers["w1"].link.address
    assert sorted(u.name for u in sq.client.list_users()) == ["admin", "bob"]
    assert bob.whoami().name == "bob" and not bob.whoami().admin


def test_a_removed_users_token_stops_working_at_once(cluster: LocalCluster) -> None:
    bob = cluster.user("bob")
    for _ in range(2):  # the second answer comes from the master's token cache
        assert bob.whoami().name == "bob"
    assert [t.spec.owner for t in bob.list_tasks()] == []
    cluster.client.remove_user("bob")
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        bob.whoami()
    with pytest.raises(Unauthenticated):
        bob.submit(spec("echo", "too late"))
    assert cluster.client.list_tasks() == []
    # A new bob gets a new token; the old one stays dead.
    again = cluster.user("bob")
    assert again.whoami().name == "bob"
    with pytest.raises(Unauthenticated):
        bob.whoami()


def test_the_last_admin_cannot_be_removed(sq: LocalCluster) -> None:
    with pytest.raises(PermissionDenied, match="last admin"):
        sq.client.remove_user("admin")
    assert sq.client.whoami().admin


# ---- rate limits -------------------------------------------------------------------------------


def test_rate_limits_answer_resource_exhausted_and_others_go_on(
    bare: Callable[..., LocalCluster],
) -> None:
    master = bare(submit_rate=2.0, cancel_rate=1.0)
    bob, carol = master.user("bob"), master.user("carol")
    accepted = 0
    with pytest.raises(RateLimited) as caught:
        for _ in range(50):  # bursts of 4 (twice the rate): refused well before 50
            bob.submit(spec("echo", "burst"))
            accepted += 1
    assert 1 <= accepted < 50
    assert caught.value.retry_after > 0
    assert "too many submits from bob" in caught.value.message
    # The raw status code is RESOURCE_EXHAUSTED.
    with ca_only_channel(master, master.address, master_target_options()) as ch:
        assert (
            code_of(
                lambda: master_stub(ch).SubmitTask(
                    master_pb2.SubmitTaskRequest(spec=spec_to_pb(spec("echo", "x"))),
                    metadata=bob._meta,
                    timeout=5,
                )
            )
            is grpc.StatusCode.RESOURCE_EXHAUSTED
        )
    # Another user, and the admin, are served meanwhile.
    assert carol.submit(spec("echo", "fine")).spec.owner == "carol"
    assert master.client.list_workers() == []
    assert len(master.client.list_tasks(owner="bob")) == accepted
    # Cancels have their own bucket.
    own = bob.list_tasks()[0].task_id
    with pytest.raises(RateLimited, match="too many cancels from bob"):
        for _ in range(50):
            bob.cancel_many([own])
    carol_task = carol.list_tasks()[0].task_id
    assert carol.cancel_many([carol_task])[0].success
    # The bucket refills: bob is served again once the wait it was told has passed.
    eventually(
        lambda: _submits(bob), timeout=caught.value.retry_after + 10, what="bob's bucket to refill"
    )


def _submits(client: Client) -> bool:
    try:
        client.submit(spec("echo", "later"))
    except RateLimited:
        return False
    return True


def test_the_pending_cap_is_per_user(bare: Callable[..., LocalCluster]) -> None:
    """With no worker, every task stays pending: bob's fourth is refused, carol's is not."""
    master = bare(max_pending_per_user=3)
    bob, carol = master.user("bob"), master.user("carol")
    pending = [bob.submit(spec("echo", str(i))) for i in range(3)]
    assert all(t.status.value == "pending" for t in pending)
    with pytest.raises(RateLimited, match="bob has 3 pending tasks already") as caught:
        bob.submit(spec("echo", "one too many"))
    assert caught.value.retry_after > 0
    assert carol.submit(spec("echo", "mine")).status.value == "pending"
    assert len(master.client.list_tasks(owner="bob")) == 3
    bob.cancel(pending[0].task_id)
    assert bob.submit(spec("echo", "room again")).status.value == "pending"


# ---- join tokens -------------------------------------------------------------------------------


def _joined(home: pathlib.Path, worker_id: str) -> Pki:
    pki = Pki(home / "pki")
    assert pki.has_worker(worker_id)
    assert stat.S_IMODE(os.stat(pki.worker_key(worker_id)).st_mode) == 0o600
    who = identity_of(pki.worker_cert(worker_id).read_bytes())
    assert who is not None and (who.role, who.name) == ("worker", worker_id)
    return pki


def test_a_join_token_works_once(cluster: LocalCluster, tmp_path: pathlib.Path) -> None:
    token = cluster.client.join_token(600).token
    assert join(tmp_path / "n1", cluster.address, "n1", token) is True
    pki = _joined(tmp_path / "n1", "n1")
    assert pki.ca_cert.read_bytes() == cluster.pki.ca_cert.read_bytes()  # type: ignore[union-attr]
    # The certificate it got is one the master's worker port takes, for n1 alone.
    creds = Tls.for_worker(pki, "n1").channel_credentials()
    with grpc.secure_channel(
        f"127.0.0.1:{cluster.peer_port}", creds, options=master_target_options()
    ) as ch:
        assert (
            master_stub(ch)
            .RegisterWorker(register_request("n1", "127.0.0.1:9"), timeout=5)
            .accepted
        )
        assert (
            code_of(
                lambda: master_stub(ch).RegisterWorker(
                    register_request("w1", "127.0.0.1:9"), timeout=5
                )
            )
            is grpc.StatusCode.PERMISSION_DENIED
        )
    # Started again with the same --join, n1 keeps its certificate and asks nothing.
    assert join(tmp_path / "n1", cluster.address, "n1", token) is False
    with pytest.raises(PermissionDenied, match="used already"):
        join(tmp_path / "n2", cluster.address, "n2", token)
    assert not Pki(tmp_path / "n2" / "pki").has_worker("n2")


def test_an_expired_join_token_is_refused(sq: LocalCluster, tmp_path: pathlib.Path) -> None:
    reply = sq.client.join_token(1)
    eventually(lambda: time.time() > reply.expires_at + 0.1, what="the join token to expire")
    with pytest.raises(PermissionDenied, match="expired"):
        join(tmp_path / "late", sq.address, "late", reply.token)
    assert not Pki(tmp_path / "late" / "pki").has_worker("late")


def test_a_join_token_pinning_another_ca_is_refused_before_any_csr(
    sq: LocalCluster, tmp_path: pathlib.Path
) -> None:
    token = sq.client.join_token(600).token
    forged = token.rsplit(".", 1)[0] + "." + "0" * 64
    with pytest.raises(PermissionDenied, match="does not present the CA"):
        join(tmp_path / "n1", sq.address, "n1", forged)
    assert not (tmp_path / "n1" / "pki").exists()
    # Nothing reached the master: the real token is still unused.
    join(tmp_path / "n1", sq.address, "n1", token)
    _joined(tmp_path / "n1", "n1")


def test_joining_as_a_known_worker_or_with_a_forged_secret_is_refused(
    sq: LocalCluster, tmp_path: pathlib.Path
) -> None:
    token = sq.client.join_token(600).token
    for known in ("w1", "W1"):  # W1 would get w1's TLS name (DNS names have no case)
        with pytest.raises(AlreadyExists, match="'w1' is known already"):
            join(tmp_path / known, sq.address, known, token)
        assert not Pki(tmp_path / known / "pki").has_worker(known)
    token_id, secret, ca_hash = token.removeprefix("cloudai-join.").split(".")
    guessed = f"cloudai-join.{token_id}.{secrets.token_urlsafe(32)}.{ca_hash}"
    assert guessed != token and secret not in guessed
    with pytest.raises(PermissionDenied, match="invalid join token"):
        join(tmp_path / "n1", sq.address, "n1", guessed)
    # Neither refusal used the token up.
    join(tmp_path / "n1", sq.address, "n1", token)
    _joined(tmp_path / "n1", "n1")
