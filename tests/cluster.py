"""Clusters for tests: in-process servers on a background loop (integration), or real
`cloudai` processes (e2e). Both speak real gRPC over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
from typing import Any

from cloudai.cli.secure import init_pki, pki_of
from cloudai.client import Client, Credentials
from cloudai.core.resources import Resources
from cloudai.master.app import MasterSecurity, serve_master, shutdown_master
from cloudai.master.cluster import MasterConfig
from cloudai.security.tls import Tls
from cloudai.worker.app import RunningWorker, WorkerConfig, serve_worker
from tests.helpers import eventually

HEARTBEAT = 0.2


class Loop:
    """An event loop in a thread, so sync test code (and the sync Client) can drive servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            self.dump(f"{coro.__qualname__} still running after {timeout:g}s")
            raise

    def dump(self, why: str) -> None:
        """Print where each of the loop's tasks waits (a hung shutdown says where it hangs)."""
        print(f"\n=== {why}; the loop's tasks:", file=sys.stderr)
        for task in asyncio.all_tasks(self.loop):
            task.print_stack(limit=12, file=sys.stderr)
            waits = getattr(task, "_fut_waiter", None)
            for child in getattr(waits, "_children", []):  # what a gather waits for
                print(f"  gathered: {child!r}", file=sys.stderr)
                if isinstance(child, asyncio.Task):
                    child.print_stack(limit=12, file=sys.stderr)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class LocalCluster:
    """A master and workers in this process (process runtime unless told otherwise), secured
    the documented way: a cluster PKI (`certs init`), the admin's token, a certificate per
    worker. `secure=False` runs them --insecure."""

    def __init__(self, db_url: str, tmp: pathlib.Path, secure: bool = True, **config: Any) -> None:
        self.config = config  # MasterConfig fields beyond the test defaults
        self.db_url = db_url
        self.tmp = tmp
        self.home = tmp / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.pki = pki_of(self.home) if secure else None
        self.token = ""
        if secure:  # a second cluster on the same directory keeps its PKI
            exists = self.pki is not None and self.pki.exists()
            self.token = (
                (self.home / "token").read_text().strip() if exists else init_pki(self.home, [])
            )
        self.loop = Loop()
        self.port = 0
        self.peer_port = 0
        self.master: Any = None
        self.workers: dict[str, RunningWorker] = {}
        self.start_master()
        self.client = self.client_with(self.token)

    def credentials(self, token: str) -> Credentials:
        return Credentials(token, self.pki.ca_cert.read_bytes() if self.pki else None)

    def client_with(self, token: str, user: str | None = None) -> Client:
        return Client(self.address, user=user, credentials=self.credentials(token))

    def channel_as_worker(self, worker_id: str) -> Any:
        """A gRPC channel to the master's port for workers, holding worker_id's certificate."""
        import grpc

        from cloudai.security.tls import master_target_options

        if self.pki is None:
            return grpc.insecure_channel(self.address)
        if not self.pki.has_worker(worker_id):
            self.pki.issue_worker(worker_id)
        creds = Tls.for_worker(self.pki, worker_id).channel_credentials()
        return grpc.secure_channel(
            f"127.0.0.1:{self.peer_port}", creds, options=master_target_options()
        )

    def channel_as_master(self, worker_id: str) -> Any:
        """A gRPC channel to worker_id's port, holding the master's certificate."""
        import grpc

        from cloudai.security.tls import worker_target_options

        address = self.workers[worker_id].link.address
        if self.pki is None:
            return grpc.insecure_channel(address)
        creds = Tls.for_master(self.pki).channel_credentials()
        return grpc.secure_channel(address, creds, options=worker_target_options(worker_id))

    def admin_channel(self, options: list[tuple[str, Any]] | None = None) -> Any:
        """A raw channel to the master's client port as the admin (TLS, the token sent)."""
        return _admin_channel(self.address, self.token, self.pki, options)

    def raw_master(self) -> Any:
        """Master RPCs as real peers make them: a client's with the admin's token, a worker's
        on the workers' port with the certificate of the worker it speaks for."""
        return _RawMaster(self)

    def user(self, name: str, admin: bool = False) -> Client:
        """A client for a new user `name` (added by the admin)."""
        return self.client_with(self.client.add_user(name, admin).token)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_master(self) -> None:
        cfg = MasterConfig(
            **{"heartbeat_interval": HEARTBEAT, "dispatch_interval": 0.1, **self.config}
        )
        security = MasterSecurity(self.pki, f"127.0.0.1:{self.peer_port}") if self.pki else None
        cluster, served, port = self.loop.run(
            serve_master(f"127.0.0.1:{self.port}", self.db_url, cfg, security)
        )
        self.master = (cluster, served)
        self.port = port
        self.peer_port = served.peer_port  # kept across restarts, as a real master's is

    def stop_master(self) -> None:
        self.loop.run(shutdown_master(*self.master))
        self.master = None

    def add_worker(
        self,
        worker_id: str,
        cpu: float = 2,
        mem: float = 4,
        runtime: str = "process",
        gpu_ids: tuple[str, ...] | None = None,
    ) -> RunningWorker:
        """`gpu_ids` stands in for real devices (`--gpu-ids`); None: what NVML finds."""
        tls = None
        if self.pki is not None:
            if not self.pki.has_worker(worker_id):
                self.pki.issue_worker(worker_id)
            tls = Tls.for_worker(self.pki, worker_id)
        cfg = WorkerConfig(
            worker_id=worker_id,
            master=self.address,
            listen="127.0.0.1:0",
            runtime=runtime,
            capacity=Resources(cpu=cpu, mem_gb=mem, storage_gb=10),
            state_dir=str(self.tmp / f"worker-{worker_id}"),
            advertise="",
            heartbeat_interval=HEARTBEAT,
            tls=tls,
            gpu_ids=gpu_ids,
        )
        worker = self.loop.run(serve_worker(cfg))
        self.workers[worker_id] = worker
        eventually(
            lambda: any(
                w.worker_id == worker_id and w.state == "healthy"
                for w in self.client.list_workers()
            ),
            what=f"worker {worker_id} to register",
        )
        return worker

    def stop_worker(self, worker_id: str) -> None:
        self.loop.run(self.workers.pop(worker_id).shutdown())

    def wait_status(self, task_id: str, *statuses: str, timeout: float = 20.0) -> Any:
        return eventually(
            lambda: (t := self.client.get_task(task_id)).status.value in statuses and t,
            timeout=timeout,
            what=f"task {task_id} to be {'/'.join(statuses)}",
        )

    def close(self) -> None:
        """Stop everything; a worker whose shutdown fails or hangs fails the test once the rest
        is stopped (a hang used to be swallowed here, and cost 30 s of the suite each time)."""
        failed = []
        for wid in list(self.workers):
            try:
                self.loop.run(_remove_all(self.workers[wid]))
                self.stop_worker(wid)
            except Exception as exc:  # teardown goes on for the rest, then says it
                failed.append(f"worker {wid}: {exc!r}")
        if self.master is not None:
            self.stop_master()
        self.client.close()
        self.loop.close()
        assert not failed, f"the cluster did not stop cleanly: {'; '.join(failed)}"


async def _remove_all(worker: RunningWorker) -> None:
    """A test leaves no task behind (a worker's own shutdown keeps them running)."""
    for handle in await worker.runtime.list():
        await worker.runtime.destroy(handle)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


WORKER_CALLS = frozenset(
    {
        "RegisterWorker",
        "SendHeartbeat",
        "Heartbeats",
        "ReportTaskCompletion",
        "UpdateStop",
        "UpdateStops",
    }
)


def _admin_channel(address: str, token: str, pki: Any, options: Any = None) -> Any:
    import grpc

    from cloudai.security.tls import master_target_options

    if pki is None:
        return grpc.insecure_channel(address, options=options or [])
    creds = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(pki.ca_cert.read_bytes()),
        grpc.access_token_call_credentials(token),
    )
    return grpc.secure_channel(address, creds, options=[*(options or []), *master_target_options()])


class _RawMaster:
    """MasterStub-like: each call on the channel its caller would use."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def __getattr__(self, name: str) -> Any:
        from cloudai.api.v1 import master_pb2_grpc

        def call(request: Any, **kwargs: Any) -> Any:
            if name in WORKER_CALLS:
                channel = self.cluster.channel_as_worker(request.worker_id or "nobody")
            else:
                channel = self.cluster.admin_channel()
            with channel:
                reply = getattr(master_pb2_grpc.MasterStub(channel), name)(request, **kwargs)
                return (
                    list(reply)
                    if hasattr(reply, "__iter__") and not hasattr(reply, "ListFields")
                    else reply
                )

        return call


class ProcCluster:
    """A master and workers as real `cloudai` processes."""

    def __init__(
        self,
        tmp: pathlib.Path,
        db_url: str | None = None,
        master_args: tuple[str, ...] = (),
        secure: bool = True,
    ) -> None:
        """Started the documented way: `cloudai certs init`, then `cloudai certs worker ID` for
        each worker, all sharing one CLOUDAI_HOME, the CLI reading its token from there."""
        self.secure = secure
        self.master_args = master_args
        self.tmp = tmp
        self.home = tmp / "home"
        self.env = {k: v for k, v in os.environ.items() if k not in ("CLOUDAI_TOKEN", "CLOUDAI_CA")}
        self.env.update(CLOUDAI_HOME=str(self.home), PYTHONUNBUFFERED="1")
        self.port = free_port()
        self.peer_port = free_port()
        self.env["CLOUDAI_MASTER"] = f"127.0.0.1:{self.port}"
        self.db_url = db_url or f"sqlite:///{tmp / 'master.db'}"
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.worker_ports: dict[str, int] = {}
        if secure:
            done = self.cli("certs", "init")
            assert done.returncode == 0, done.stderr
        self.token = (self.home / "token").read_text().strip() if secure else ""
        self.client = self.new_client()
        self.start_master()

    def admin_channel(self, options: list[tuple[str, Any]] | None = None) -> Any:
        """A raw channel to the master's client port as the admin (TLS, the token sent)."""
        from cloudai.security.pki import Pki

        pki = Pki(self.home / "pki") if self.secure else None
        return _admin_channel(f"127.0.0.1:{self.port}", self.token, pki, options)

    def new_client(self, token: str | None = None) -> Client:
        """A client of this cluster, as the admin (or with `token`)."""
        ca = (self.home / "pki" / "ca.crt").read_bytes() if self.secure else None
        creds = Credentials(self.token if token is None else token, ca)
        return Client(f"127.0.0.1:{self.port}", credentials=creds)

    def __enter__(self) -> ProcCluster:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        """Print the processes' logs when something failed on the way (a setup that broke),
        then stop them all."""
        if exc_type is not None:
            print(self.logs())
        self.close()

    @property
    def security_args(self) -> list[str]:
        return [] if self.secure else ["--insecure"]

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / log_name, "ab")  # noqa: SIM115 - the child owns it
        return subprocess.Popen(
            [sys.executable, "-m", "cloudai.cli.main", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def start_master(self) -> None:
        self.master = self._spawn(
            [
                "master",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--db",
                self.db_url,
                "--heartbeat-interval",
                str(HEARTBEAT),
                "--worker-listen",
                f"127.0.0.1:{self.peer_port}",
                *self.security_args,
                *self.master_args,
            ],
            "master.log",
        )
        eventually(self.client.health, timeout=30, what="the master to serve")

    def kill_master(self, sig: int = signal.SIGKILL) -> None:
        assert self.master is not None
        self.master.send_signal(sig)
        self.master.wait(10)
        self.master = None

    def add_worker(
        self,
        worker_id: str,
        runtime: str = "docker",
        cpu: float = 2,
        mem: float = 2,
        extra: tuple[str, ...] = (),
    ) -> None:
        port = self.worker_ports.get(worker_id) or free_port()
        self.worker_ports[worker_id] = port
        if self.secure and not (self.home / "pki" / f"worker-{worker_id}.crt").exists():
            done = self.cli("certs", "worker", worker_id)
            assert done.returncode == 0, done.stderr
        self.workers[worker_id] = self._spawn(
            [
                "worker",
                "--id",
                worker_id,
                "--master",
                f"127.0.0.1:{self.port}",
                "--listen",
                f"127.0.0.1:{port}",
                "--runtime",
                runtime,
                "--cpu",
                str(cpu),
                "--mem",
                str(mem),
                "--storage",
                "10",
                "--heartbeat-interval",
                str(HEARTBEAT),
                *self.security_args,
                *extra,
            ],
            f"worker-{worker_id}.log",
        )
        eventually(
            lambda: any(
                w.worker_id == worker_id and w.state == "healthy"
                for w in self.client.list_workers()
            ),
            timeout=30,
            what=f"worker {worker_id} to register",
        )

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cloudai.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli_json(self, *args: str) -> Any:
        res = self.cli(*args, "-o", "json")
        assert res.returncode == 0, f"cloudai {' '.join(args)} failed: {res.stderr}"
        return json.loads(res.stdout)

    def wait_status(self, task_id: str, *statuses: str, timeout: float = 60.0) -> Any:
        return eventually(
            lambda: (t := self.cli_json("task", "show", task_id))["status"] in statuses and t,
            timeout=timeout,
            interval=0.2,
            what=f"task {task_id} to be {'/'.join(statuses)}",
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.tmp.glob("*.log")
        )

    def close(self) -> None:
        procs = [*self.workers.values(), *([self.master] if self.master else [])]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.client.close()
