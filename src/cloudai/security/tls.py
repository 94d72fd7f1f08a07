"""gRPC credentials from the cluster PKI, and who a peer is.

- The master serves TLS and asks for a client certificate without requiring one: the CLI
  comes with a token, a worker with its certificate. Worker calls check the certificate.
- A worker serves mutual TLS: only a certificate of the cluster CA gets through the handshake,
  and its calls then accept only the master's.
- Every dialer pins the peer by name: `master.cloudai` for the master, `ID.worker.cloudai` for
  worker ID (see pki.py), so the address dialled does not need to be in the certificate."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc

from cloudai.security.pki import MASTER_NAME, Identity, Pki, identity_of, worker_name

__all__ = ["Tls", "peer_identity"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tls:
    """One process's TLS material: the CA, and its own certificate and key (none for the CLI)."""

    ca: bytes
    cert: bytes = b""
    key: bytes = b""

    @classmethod
    def for_master(cls, pki: Pki) -> Tls:
        """The master presents its chain (its certificate, then the CA's), so that a worker
        joining with a join token can check the CA against the token's fingerprint."""
        ca = pki.ca_cert.read_bytes()
        return cls(ca, pki.master_cert.read_bytes() + ca, pki.master_key.read_bytes())

    @classmethod
    def for_worker(cls, pki: Pki, worker_id: str) -> Tls:
        return cls(
            pki.ca_cert.read_bytes(),
            pki.worker_cert(worker_id).read_bytes(),
            pki.worker_key(worker_id).read_bytes(),
        )

    def server_credentials(self, require_client_cert: bool) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.ca,
            require_client_auth=require_client_cert,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        if self.cert:
            return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)
        return grpc.ssl_channel_credentials(self.ca)


def master_target_options() -> list[tuple[str, Any]]:
    return [("grpc.ssl_target_name_override", MASTER_NAME)]


def worker_target_options(worker_id: str) -> list[tuple[str, Any]]:
    return [("grpc.ssl_target_name_override", worker_name(worker_id))]


def peer_identity(context: Any) -> Identity | None:
    """The role named by the peer's verified certificate; None without one."""
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        return None
    return identity_of(bytes(pems[0]))
