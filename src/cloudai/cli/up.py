"""`cloudai up`: a master on SQLite, one local worker and the master> shell, in one process.

The servers run on an event loop in a background thread; the shell runs in the main thread and
talks to them over gRPC like any other client. Server logs go to $CLOUDAI_HOME/logs/up.log."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import threading
import time

from rich.console import Console

from cloudai.cli.render import Renderer
from cloudai.client import Client, Credentials
from cloudai.config import (
    LOCAL_HTTP,
    LOCAL_MASTER_METRICS,
    LOCAL_WORKER_METRICS,
    home,
    metrics_address,
)
from cloudai.core.models import validate_address
from cloudai.errors import CloudAIError, InvalidArgument, Unavailable
from cloudai.logsetup import setup_logging

__all__ = ["run_up"]

log = logging.getLogger("cloudai.up")


async def _pick_runtime(wanted: str, worker_id: str, console: Console) -> str:
    if wanted != "auto":
        return wanted
    from cloudai.runtime.docker import DockerRuntime

    try:
        rt = DockerRuntime(worker_id)
        try:
            await rt.ping()
        finally:
            await rt.close()
        return "docker"
    except CloudAIError as exc:
        console.print(
            f"[yellow]⚠ No Docker engine answered ({exc.message.splitlines()[0][:120]}).[/]\n"
            "[yellow]  Falling back to the process runtime: tasks run as local processes, "
            "without isolation or limits, and need a command.[/]"
        )
        return "process"


class _Servers:
    """The master and the worker on their own event loop thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cloudai-up", daemon=True)
        self.stopper: list[object] = []

    def start(self) -> None:
        self.thread.start()

    def run(self, coro, timeout: float = 60.0):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def run_up(args: argparse.Namespace) -> int:
    from cloudai.cli.secure import init_pki, pki_of
    from cloudai.master.app import MasterSecurity, serve_master, shutdown_master
    from cloudai.master.config import MasterConfig
    from cloudai.security.tls import Tls
    from cloudai.store import default_sqlite_url
    from cloudai.store.engine import masked_url
    from cloudai.worker.app import WorkerConfig, serve_worker
    from cloudai.worker.telemetry import machine_capacity

    for addr in (args.listen, args.worker_listen):
        if (problem := validate_address(addr)) is not None:
            raise InvalidArgument(problem)
    if args.http_listen not in (None, "off", "none", ""):
        from cloudai.web.server import check_listen

        check_listen(args.http_listen)
    console = Console(highlight=False)
    data = home()
    log_path = data / "logs" / "up.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run
    setup_logging(args.log_level, args.log_format, stream=log_file)
    db = args.db or default_sqlite_url(data)
    master_port = int(args.listen.rpartition(":")[2])
    master_addr = f"127.0.0.1:{master_port}"
    pki = pki_of(data)
    security, tls, token = None, None, ""
    if not args.insecure:  # the PKI, the admin's token and the local worker's certificate
        if not pki.exists():
            init_pki(data, [])
            console.print(
                f"✓ cluster PKI created in {pki.dir}; the admin's token is in {data / 'token'}"
            )
        if not pki.has_worker(args.worker_id):
            pki.issue_worker(args.worker_id)
        security = MasterSecurity(pki, f"{args.listen.rpartition(':')[0]}:0")
        tls = Tls.for_worker(pki, args.worker_id)
        token = (data / "token").read_text().strip()

    servers = _Servers()
    servers.start()
    try:
        runtime = servers.run(_pick_runtime(args.runtime, args.worker_id, console))
        mlisten, mrequired = metrics_address(args.metrics_listen, LOCAL_MASTER_METRICS)
        wlisten, wrequired = metrics_address(args.worker_metrics_listen, LOCAL_WORKER_METRICS)
        hlisten, hrequired = metrics_address(args.http_listen, LOCAL_HTTP)
        master_cfg = MasterConfig(
            metrics_listen=mlisten,
            metrics_required=mrequired,
            http_listen=hlisten,
            http_required=hrequired,
            journal_dir=str(data),
        )
        cluster, served, _ = servers.run(serve_master(args.listen, db, master_cfg, security))
        state_dir = data / f"worker-{args.worker_id}"
        worker = servers.run(
            serve_worker(
                WorkerConfig(
                    worker_id=args.worker_id,
                    master=master_addr,
                    listen=args.worker_listen,
                    runtime=runtime,
                    capacity=machine_capacity(state_dir),
                    state_dir=str(state_dir),
                    advertise=args.worker_listen,
                    metrics_listen=wlisten,
                    metrics_required=wrequired,
                    tls=tls,
                )
            )
        )
    except CloudAIError:
        servers.stop()
        raise
    except Exception as exc:  # a bind failure and the like: say it in one line
        servers.stop()
        raise Unavailable(f"cannot start the local cluster: {exc}") from exc

    for loops in (cluster.loops, worker.loops):
        # A loop given up: end the shell (or the wait) as Ctrl-C would; the failure is raised
        # once both servers have stopped.
        loops.when_failed(lambda _: os.kill(os.getpid(), signal.SIGINT))
    ca = pki.ca_cert.read_bytes() if security else None
    client = Client(master_addr, credentials=Credentials(token, ca))
    deadline = time.monotonic() + 15
    while not any(
        w.worker_id == args.worker_id and w.state == "healthy" for w in client.list_workers()
    ):
        if time.monotonic() > deadline:
            console.print("[yellow]⚠ the local worker has not registered yet; see the log[/]")
            break
        time.sleep(0.1)
    how = (
        "[red]INSECURE: plaintext, no authentication[/]"
        if args.insecure
        else "TLS; the CLI uses the admin token in $CLOUDAI_HOME/token"
    )
    console.print(
        f"[green]✓ cloudai is up[/]: master on {args.listen} (store: {masked_url(db)}; {how}), "
        f"worker [bold]{args.worker_id}[/] on {args.worker_listen} (runtime: {runtime}).\n"
        f"  Logs: {log_path}.  From another terminal: "
        f"[bold]CLOUDAI_HOME={data} CLOUDAI_MASTER={master_addr} cloudai workers[/]"
    )
    if cluster.web_server is not None:
        console.print(
            f"  Web console: [bold]{cluster.web_server.url}[/]"
            + (f" (log in with the admin token: {token})" if token else ""),
            soft_wrap=True,
        )
    elif hlisten:  # the default address was taken: said, and the cluster runs without it
        console.print(
            f"[yellow]⚠ no web console: {hlisten} is in use (--http-listen ADDR to move it)[/]"
        )
    try:
        if args.no_shell:
            _wait_for_signal()
        else:
            from cloudai.cli.main import _shell_dispatcher, build_parser
            from cloudai.cli.shell import run_shell

            out = Renderer("text", console)
            run_shell(client, out, _shell_dispatcher(build_parser(), client, out))
    finally:
        console.print(
            "Stopping the local cluster (running tasks keep running; a restart re-adopts them)."
        )
        client.close()
        try:
            servers.run(worker.shutdown(), timeout=20)
            servers.run(shutdown_master(cluster, served), timeout=20)
        finally:
            servers.stop()
            log_file.close()
    for failure in (cluster.loops.failure, worker.loops.failure):
        if failure is not None:
            raise failure
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
