"""Building a grpc.aio server with the standard health service."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cloudai.core.limits import MAX_REPLY_BYTES, MAX_REQUEST_BYTES
from cloudai.errors import InvalidArgument
from cloudai.security.tls import Tls

__all__ = ["CHANNEL_OPTIONS", "Served", "new_server"]

# A request over MAX_REQUEST_BYTES is refused (RESOURCE_EXHAUSTED) before it is parsed; a
# client refuses to send one. Replies (a long task list) may be larger.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_REQUEST_BYTES),
    ("grpc.max_receive_message_length", MAX_REPLY_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
_SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_REPLY_BYTES),
    ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
    *(o for o in CHANNEL_OPTIONS if not o[0].endswith("_message_length")),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.so_reuseport", 0),
]


@dataclass
class Served:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    peer_port: int = 0  # the master's port for workers (mutual TLS); 0: `port`

    async def set_serving(self, service_names: list[str], serving: bool = True) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *service_names]:
            await self.health.set(name, status)


def new_server(
    listen: str, tls: Tls | None = None, *, clients_need_cert: bool, peer_listen: str = ""
) -> Served:
    """A server bound to `listen` (HOST:PORT; port 0 picks one) with grpc.health.v1, which
    answers NOT_SERVING until `set_serving`. The server is not started yet.

    With `tls`: TLS on `listen`, where a client certificate is required when
    `clients_need_cert` (a worker's port) and not asked for otherwise (the master's port for
    tokens); and mutual TLS on `peer_listen` when given (the master's port for workers).
    Without: plaintext (`--insecure`)."""
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = _bind(server, listen, tls, clients_need_cert)
    peer_port = _bind(server, peer_listen, tls, True) if tls and peer_listen else 0
    return Served(server, port, health_servicer, peer_port)


def _bind(server: grpc.aio.Server, listen: str, tls: Tls | None, need_cert: bool) -> int:
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, tls.server_credentials(need_cert))
    except RuntimeError as exc:
        raise InvalidArgument(f"cannot listen on {listen}: {exc}") from exc
    if port == 0:
        raise InvalidArgument(f"cannot listen on {listen}: address in use or invalid")
    return int(port)
