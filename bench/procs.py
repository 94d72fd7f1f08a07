"""cloudai processes for a section: a master and workers as real `cloudai` subprocesses, in a
temporary CLOUDAI_HOME, stopped and removed when the section ends."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO

from cloudai.client import Client, Credentials

__all__ = ["Procs", "free_port", "wait_serving"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_serving(
    port: int,
    proc: subprocess.Popen[bytes],
    timeout: float = 120.0,
    credentials: Credentials | None = None,
) -> tuple[float, float]:
    """Wait until the master on `port` serves: its health check says SERVING, and then a
    ListWorkers call is answered. Returns the monotonic times of both.

    The port is polled first with plain sockets, so the gRPC channel is made only once the
    server listens (a channel that failed to connect backs off for a second or more)."""
    deadline = time.monotonic() + timeout

    def check() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"the master exited with {proc.returncode} before serving")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the master on port {port} did not serve in {timeout:g}s")

    while not _port_open(port):
        check()
        time.sleep(0.005)
    with Client(f"127.0.0.1:{port}", user="bench", credentials=credentials) as client:
        while not client.health(timeout=5.0):
            check()
            time.sleep(0.005)
        healthy = time.monotonic()
        while True:
            with contextlib.suppress(Exception):
                client.list_workers()
                return healthy, time.monotonic()
            check()
            time.sleep(0.005)


# Sections C and S, and M3/M4, run the master and workers --insecure: those figures leave out
# TLS and token checks (see docs/performance.md). M1/M2, G1 and K run secure (Procs(secure=True)).
INSECURE = "--insecure"


class Procs:
    """Starts and stops cloudai processes; everything lives under one temporary directory.
    `secure`: `cloudai certs init` in its CLOUDAI_HOME first, and masters serve TLS (clients
    with the admin token, workers with mutual TLS on --worker-listen)."""

    def __init__(self, keep_dir: pathlib.Path | None = None, secure: bool = False) -> None:
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="cloudai-bench-"))
        self.keep_dir = keep_dir  # copy the logs here on failure
        self.home = self.tmp / "home"
        self.env = {
            **os.environ,
            "CLOUDAI_HOME": str(self.home),
            "PYTHONUNBUFFERED": "1",
            "CLOUDAI_USER": "bench",
        }
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self.secure = secure
        self.token = ""
        if secure:
            subprocess.run(
                [sys.executable, "-m", "cloudai.cli.main", "certs", "init"],
                env=self.env,
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.token = (self.home / "token").read_text().strip()

    @property
    def pki_dir(self) -> pathlib.Path | None:
        return self.home / "pki" if self.secure else None

    def credentials(self) -> Credentials | None:
        """The admin's, for a Client of a secure master (None: plaintext)."""
        if not self.secure:
            return None
        return Credentials(self.token, (self.home / "pki" / "ca.crt").read_bytes())

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / log_name, "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._procs.append(proc)
        return proc

    def master(
        self,
        port: int,
        db_url: str,
        extra: tuple[str, ...] = (),
        profile_to: pathlib.Path | None = None,
        log_name: str = "master.log",
        worker_port: int = 0,
    ) -> subprocess.Popen[bytes]:
        """A master on 127.0.0.1:port (not waited for: see `wait_serving`), taking workers'
        calls on 127.0.0.1:worker_port when secure. With `profile_to`, it runs under cProfile
        (every thread) and writes its stats there when it stops."""
        if self.secure and not worker_port:
            raise ValueError("a secure master needs its worker port")
        security = ["--worker-listen", f"127.0.0.1:{worker_port}"] if self.secure else [INSECURE]
        args = [
            "master",
            "--listen",
            f"127.0.0.1:{port}",
            "--db",
            db_url,
            "--metrics-listen",
            "off",
            *security,
            *extra,
        ]
        if profile_to is not None:
            return self.spawn(["-m", "bench.profmaster", str(profile_to), *args], log_name)
        return self.spawn(["-m", "cloudai.cli.main", *args], log_name)

    def worker(
        self, worker_id: str, master_port: int, port: int, cpu: float = 2, mem: float = 4
    ) -> subprocess.Popen[bytes]:
        """A Docker worker, waited for until the master lists it healthy."""
        proc = self.spawn(
            [
                "-m",
                "cloudai.cli.main",
                "worker",
                "--id",
                worker_id,
                "--master",
                f"127.0.0.1:{master_port}",
                "--listen",
                f"127.0.0.1:{port}",
                "--runtime",
                "docker",
                "--cpu",
                str(cpu),
                "--mem",
                str(mem),
                "--metrics-listen",
                "off",
                INSECURE,
            ],
            f"worker-{worker_id}.log",
        )
        deadline = time.monotonic() + 60
        with Client(f"127.0.0.1:{master_port}", user="bench") as client:
            while not any(
                w.worker_id == worker_id and w.state == "healthy" for w in client.list_workers()
            ):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {worker_id} did not register:\n{self.tail(proc)}")
                time.sleep(0.1)
        return proc

    def tail(self, proc: subprocess.Popen[bytes] | None = None, chars: int = 3000) -> str:
        out = []
        for path in sorted(self.tmp.glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        """SIGCONT (in case it was stopped), SIGTERM, then SIGKILL after `timeout`."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc in self._procs:
            self._procs.remove(proc)

    def close(self) -> None:
        for proc in list(reversed(self._procs)):
            self.stop(proc)
        for log in self._logs:
            log.close()
        if self.keep_dir is not None:
            self.keep_dir.mkdir(parents=True, exist_ok=True)
            for path in self.tmp.glob("*.log"):
                shutil.copy(path, self.keep_dir / path.name)
        shutil.rmtree(self.tmp, ignore_errors=True)
