"""The secure path for sections M and K: TLS material for the simulated workers, G1's server
and M2's client, from the cluster PKI that `cloudai certs init` made in the bench's temporary
CLOUDAI_HOME (bench/procs.py).

- Each simulated worker gets its OWN worker certificate, issued in-process with
  `cloudai.security.pki` (`Pki.issue_worker`, what `cloudai certs worker ID` does, without
  5,000 CLI calls), and calls the master's worker port with mutual TLS, pinning
  `master.cloudai`, as a real worker does (src/cloudai/worker/link.py).
- A load generator's one Worker server answers for all its workers; the master dials each as
  `ID.worker.cloudai`, so that server presents one certificate of the cluster CA for
  `*.worker.cloudai` (made here, for the bench only).
- M2's client speaks TLS to the master's client port with the admin token."""

from __future__ import annotations

import datetime
import pathlib
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloudai.rpc.server import CHANNEL_OPTIONS
from cloudai.security.pki import MASTER_NAME, Pki
from cloudai.security.tls import master_target_options

__all__ = ["Peer", "admin_channel", "master_channel", "worker_server_credentials"]

WILDCARD = "*.worker.cloudai"


@dataclass(frozen=True)
class Peer:
    """Where the simulated callers call, and how: `pki_dir` None is plaintext (--insecure)."""

    address: str
    pki_dir: str | None = None
    token: str = ""

    @property
    def secure(self) -> bool:
        return self.pki_dir is not None


def _worker_tls(pki: Pki, worker_id: str) -> tuple[bytes, bytes, bytes]:
    """(CA, key, certificate) of worker `worker_id`, issued on first use."""
    if not pki.has_worker(worker_id):
        pki.issue_worker(worker_id)
    return (
        pki.ca_cert.read_bytes(),
        pki.worker_key(worker_id).read_bytes(),
        pki.worker_cert(worker_id).read_bytes(),
    )


def master_channel(peer: Peer, worker_id: str) -> grpc.aio.Channel:
    """A simulated worker's own channel to the master (its worker port, mutual TLS)."""
    if peer.pki_dir is None:
        return grpc.aio.insecure_channel(peer.address, options=CHANNEL_OPTIONS)
    ca, key, cert = _worker_tls(Pki(pathlib.Path(peer.pki_dir)), worker_id)
    creds = grpc.ssl_channel_credentials(ca, key, cert)
    options = [*CHANNEL_OPTIONS, *master_target_options()]
    return grpc.aio.secure_channel(peer.address, creds, options=options)


def admin_channel(peer: Peer) -> grpc.aio.Channel:
    """M2's client: the master's client port, TLS, the admin token."""
    if peer.pki_dir is None:
        return grpc.aio.insecure_channel(peer.address, options=CHANNEL_OPTIONS)
    ca = Pki(pathlib.Path(peer.pki_dir)).ca_cert.read_bytes()
    creds = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(ca), grpc.access_token_call_credentials(peer.token)
    )
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", MASTER_NAME)]
    return grpc.aio.secure_channel(peer.address, creds, options=options)


def worker_server_credentials(pki_dir: str) -> grpc.ServerCredentials:
    """A load generator's Worker server: a `*.worker.cloudai` certificate of the cluster CA."""
    pki = Pki(pathlib.Path(pki_dir))
    ca_pem = pki.ca_cert.read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key: Any = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-loadgen")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(WILDCARD)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    return grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem)
