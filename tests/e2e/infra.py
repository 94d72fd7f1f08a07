"""Private infrastructure that the infrastructure fault tests break on purpose, never the shared
services: a firewall partition of this test's own loopback ports, a small tmpfs, a private
PostgreSQL server and a private Docker engine. Each needs root (CI runs as root): missing, it
skips locally and fails under CI=true (`need`)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

from tests.cluster import free_port
from tests.helpers import TEST_IMAGE, eventually, need

__all__ = ["PrivateDocker", "PrivatePostgres", "fill", "partitioned", "tmpfs"]


def _root(what: str) -> None:
    if os.geteuid() != 0:
        need(what, "needs root")


def _iptables() -> str:
    """The iptables that works here (dockerd may have left the legacy one in charge)."""
    for tool in ("iptables", "iptables-legacy", "iptables-nft"):
        path = shutil.which(tool)
        if path and subprocess.run([path, "-L", "-n"], capture_output=True).returncode == 0:
            return path
    need("iptables", "no working iptables")
    raise AssertionError("unreachable")


@contextlib.contextmanager
def partitioned(*ports: int) -> Iterator[None]:
    """Drop every loopback TCP packet to or from `ports` (the test's own master and worker
    ports, nothing else), both ways; the rules are removed on the way out, whatever happens."""
    _root("a network partition")
    tool = _iptables()
    rules = [
        ["INPUT", "-i", "lo", "-p", "tcp", "-s", "127.0.0.1", "-d", "127.0.0.1", way, str(p)]
        for p in ports
        for way in ("--dport", "--sport")
    ]
    added: list[list[str]] = []
    try:
        for rule in rules:
            subprocess.run([tool, "-I", *rule, "-j", "DROP"], check=True, capture_output=True)
            added.append(rule)
        yield
    finally:
        for rule in added:
            subprocess.run([tool, "-D", *rule, "-j", "DROP"], check=True, capture_output=True)


@contextlib.contextmanager
def tmpfs(where: pathlib.Path, size: str) -> Iterator[pathlib.Path]:
    """A small tmpfs mounted at `where` (unmounted on the way out)."""
    _root("a tmpfs mount")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        need("a tmpfs mount", done.stderr.decode(errors="replace").strip())
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(where: pathlib.Path) -> pathlib.Path:
    """A filler file taking every free byte of the filesystem at `where`."""
    filler = where / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    return filler


class PrivatePostgres:
    """A PostgreSQL server of this test's own (scripts/lib.sh's start_postgres, in Python):
    initdb into a temporary directory, started on a free loopback port, as the postgres user
    when root (initdb refuses root). It can be stopped and started again on the same port."""

    def __init__(self) -> None:
        found = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"))
        pg_bin = found[-1] if found else None
        if pg_bin is None or not (pg_bin / "pg_ctl").exists():
            need("PostgreSQL", "no /usr/lib/postgresql/*/bin/pg_ctl")
        self.bin = pg_bin
        # Its own directory under /tmp: the postgres user cannot reach into pytest's tmp_path.
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="cloudai-pg-"))
        self.port = free_port()
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            self.run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres")
        self._pg("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust")
        self.start()
        self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "cloudai")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/cloudai"

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.run_as, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise AssertionError(f"{tool} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=50"
        self._pg("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "server.log"),
                 "-w", "-t", "60", "-o", opts, "start")  # fmt: skip

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(AssertionError):  # stopped already
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateDocker:
    """A Docker engine of this test's own (its socket, data root, exec root), with the test
    image loaded from the shared engine; `restart()` stops (SIGTERM) and starts it again."""

    def __init__(self, *extra: str) -> None:
        _root("a private Docker engine")
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            need("dockerd", "not installed")
        # Short paths: a unix socket path is limited to 108 bytes.
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="cai-dk-"))
        self.host = f"unix://{self.dir}/docker.sock"
        # A bridge of its own. Never `--bridge none`: a dockerd started so deletes the host's
        # docker0, the shared engine's bridge, on its way up.
        self.bridge = f"cai{secrets.token_hex(4)}"
        subnet = f"10.{random.randrange(100, 250)}.{random.randrange(0, 250)}"
        for step in (
            ["link", "add", self.bridge, "type", "bridge"],
            ["addr", "add", f"{subnet}.1/24", "dev", self.bridge],
            ["link", "set", self.bridge, "up"],
        ):
            subprocess.run(["ip", *step], check=True, capture_output=True)
        self.args = [
            str(dockerd), "--host", self.host, "--data-root", str(self.dir / "root"),
            "--exec-root", str(self.dir / "exec"), "--pidfile", str(self.dir / "docker.pid"),
            "--bridge", self.bridge, "--iptables=false", "--ip-masq=false", *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.start()
            self._load_test_image()
        except BaseException:
            self.close()  # its bridge and its process too
            raise

    def _load_test_image(self) -> None:
        save = subprocess.Popen(["docker", "save", TEST_IMAGE], stdout=subprocess.PIPE)
        load = subprocess.run(
            ["docker", "-H", self.host, "load"], stdin=save.stdout, capture_output=True, timeout=120
        )
        save.wait(120)
        if load.returncode != 0 or save.returncode != 0:
            raise AssertionError(f"loading {TEST_IMAGE} failed: {load.stderr!r}")

    def client(self) -> object:
        import docker

        return docker.DockerClient(base_url=self.host, timeout=30)

    def start(self) -> None:
        log = open(self.dir / "dockerd.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        eventually(self._pings, timeout=60, interval=0.2, what="the private dockerd to serve")

    def _pings(self) -> bool:
        done = subprocess.run(["docker", "-H", self.host, "version"], capture_output=True)
        return done.returncode == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.proc = None

    def close(self) -> None:
        """Stop it with every container it has; nothing of it is left behind."""
        if self.proc is not None:
            subprocess.run(
                f"docker -H {self.host} ps -aq | xargs -r docker -H {self.host} rm -f",
                shell=True,
                capture_output=True,
                timeout=120,
            )
        self.stop()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # its data root holds mounts until it is gone
            done = subprocess.run(["rm", "-rf", str(self.dir)], capture_output=True)
            if done.returncode == 0:
                return
            subprocess.run(
                f"grep -o ' {self.dir}[^ ]*' /proc/mounts | xargs -r -n1 umount -l",
                shell=True,
                capture_output=True,
            )
            time.sleep(0.2)
