"""Proxies that break the wire for fault tests, on loopback and on a unix socket only:

- `TcpProxy`: forwards connections on another loopback address to the same ports on
  127.0.0.1 (a worker told `--master 127.0.0.2:PORT` reaches the master through it, TLS and
  all: certificate names are pinned by name, not by address). It can drop what goes one way or
  both, then cut every connection: a message lost on the way.
- `EngineProxy`: a unix socket in front of the Docker engine (a worker's DOCKER_HOST) that
  passes every request through, but holds the ones whose request line matches a pattern: never
  forwarded, never answered, a hung engine call.

Both run on threads, stop with `close()`, and touch nothing outside this machine."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from collections.abc import Iterable

__all__ = ["EngineProxy", "TcpProxy", "engine_socket"]

_CHUNK = 65536


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()


class _Conn:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.cut = False


class TcpProxy:
    """`listen_host:port` -> `target_host:port` for each port. `mode`: "pass" forwards both
    ways, "drop_replies" forwards what the client sends and drops what comes back,
    "drop_all" drops both ways. `cut()` closes every connection open now (their peers see
    the connection broken) and passes again; new connections pass."""

    def __init__(
        self, ports: Iterable[int], listen_host: str = "127.0.0.2", target: str = "127.0.0.1"
    ) -> None:
        self.target = target
        self.mode = "pass"
        self.dropped = {"up": 0, "down": 0}  # bytes dropped, client->target and back
        self.accepted = 0
        self._lock = threading.Lock()
        self._conns: list[_Conn] = []
        self._listeners: list[socket.socket] = []
        self._closed = False
        for port in ports:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((listen_host, port))
            sock.listen(64)
            self._listeners.append(sock)
            threading.Thread(target=self._accept, args=(sock, port), daemon=True).start()

    def _accept(self, listener: socket.socket, port: int) -> None:
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.target, port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            conn = _Conn(client, upstream)
            with self._lock:
                self._conns.append(conn)
                self.accepted += 1
            for src, dst, way in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=self._pipe, args=(conn, src, dst, way), daemon=True).start()

    def _pipe(self, conn: _Conn, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while data := src.recv(_CHUNK):
                with self._lock:
                    drop = conn.cut or self.mode == "drop_all"
                    drop = drop or (self.mode == "drop_replies" and way == "down")
                    if drop:
                        self.dropped[way] += len(data)
                if not drop:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(conn.client, conn.upstream)

    def cut(self) -> int:
        """Break every open connection, then pass again; how many were broken."""
        with self._lock:
            conns, self._conns = self._conns, []
            for conn in conns:
                conn.cut = True  # whatever is in flight on them now is lost
            self.mode = "pass"
        for conn in conns:
            _close(conn.client, conn.upstream)
        return len(conns)

    def close(self) -> None:
        self._closed = True
        _close(*self._listeners)
        self.cut()


def engine_socket() -> str:
    """The path of the Docker engine's unix socket this test run uses."""
    host = os.environ.get("DOCKER_HOST", "")
    return host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"


class EngineProxy:
    """A unix socket at `path` forwarding HTTP/1.1 to the engine's socket, request by request.
    A request whose request line (`POST /v1.45/containers/ID/kill?signal=SIGTERM HTTP/1.1`)
    matches `hold` is kept: not forwarded, not answered, its connection left open until
    `close()`. `held` lists the request lines held so far."""

    def __init__(self, path: str, hold: str, engine: str | None = None) -> None:
        self.path = path
        self.engine = engine or engine_socket()
        self.hold = re.compile(hold)
        self.held: list[str] = []
        self.forwarded = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._closed = False
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(path)
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(self.engine)
            except OSError:
                _close(client, upstream)
                continue
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client -> engine, one request at a time: its head, then its body by Content-Length.
        A request this proxy cannot frame (a chunked body) switches the connection to plain
        forwarding; the worker's calls all have a length or no body."""
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = client.recv(_CHUNK)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                headers = head.lower()
                if b"transfer-encoding: chunked" in headers:
                    upstream.sendall(buf)
                    while data := client.recv(_CHUNK):
                        upstream.sendall(data)
                    return
                length = 0
                if m := re.search(rb"content-length:\s*(\d+)", headers):
                    length = int(m.group(1))
                while len(rest) < length:
                    data = client.recv(_CHUNK)
                    if not data:
                        return
                    rest += data
                body, buf = rest[:length], rest[length:]
                if self.hold.search(line):
                    with self._lock:
                        self.held.append(line)
                    client.recv(_CHUNK)  # held: wait here until either side closes
                    return
                upstream.sendall(head + b"\r\n\r\n" + body)
                with self._lock:
                    self.forwarded += 1
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _replies(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(_CHUNK):
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        with self._lock:
            socks, self._socks = self._socks, []
        _close(*socks)
        with contextlib.suppress(OSError):
            os.unlink(self.path)
