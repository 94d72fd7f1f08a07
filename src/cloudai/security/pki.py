"""The cluster PKI, made with `cryptography`: a CA, the master's certificate, one per worker.

Each certificate names its holder's role in a URI SAN (`cloudai://master`,
`cloudai://worker/ID`) and in a DNS SAN that peers check as the TLS name:

- the master's certificate holds `master.cloudai` (plus localhost, 127.0.0.1, ::1, the host
  name and every `--san`), so a worker or the CLI that dials the master at any address checks
  it with the name `master.cloudai`: only the master's certificate of this cluster's CA has it;
- worker ID's certificate holds `ID.worker.cloudai`, so the master that dials worker ID checks
  the name `ID.worker.cloudai`: an impostor at that address without ID's key fails the
  handshake.

Files live under `$CLOUDAI_HOME/pki/`; keys are written 0600."""

from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import pathlib
import socket
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloudai.core.models import validate_worker_id
from cloudai.errors import AlreadyExists, InvalidArgument, NotFound

__all__ = [
    "MASTER_NAME",
    "Identity",
    "Pki",
    "identity_of",
    "issue_from_csr",
    "new_csr",
    "worker_name",
]

MASTER_NAME = "master.cloudai"
_WORKER_DOMAIN = "worker.cloudai"
_CA_DAYS = 3650
_LEAF_DAYS = 825


def worker_name(worker_id: str) -> str:
    """The TLS name the master checks when it dials worker `worker_id`."""
    return f"{worker_id.lower()}.{_WORKER_DOMAIN}"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who holds a certificate: role "master" or "worker" (with its ID)."""

    role: str
    name: str = ""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: pathlib.Path, data: bytes, secret: bool = False) -> None:
    """Write atomically; a secret is created 0600 (never readable by others, even briefly)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_usage(ca: bool) -> x509.KeyUsage:
    """A CA signs certificates; a leaf signs handshakes and agrees keys (ECDHE)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _san(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):  # in order, once each
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _valid_san(name: str) -> str:
    name = name.strip()
    try:
        ipaddress.ip_address(name)
        return name
    except ValueError:
        pass
    labels = name.split(".")
    if (
        not name
        or len(name) > 253
        or not all(
            label
            and len(label) <= 63
            and label.replace("-", "").replace("*", "").isalnum()
            and label.isascii()
            for label in labels
        )
    ):
        raise InvalidArgument(f"--san {name[:64]!r}: not a host name or IP address")
    return name


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    common_name: str,
    role_uri: str,
    dns: list[str],
) -> x509.Certificate:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(role_uri), *_san(dns)]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def new_csr(worker_id: str) -> tuple[bytes, bytes]:
    """(key PEM, CSR PEM) for joining as `worker_id`."""
    key = _new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, worker_id)]))
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key), csr.public_bytes(serialization.Encoding.PEM)


@functools.lru_cache(maxsize=4096)
def identity_of(cert_pem: bytes) -> Identity | None:
    """The role a peer's certificate (already verified against the CA by TLS) names."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        if uri == "cloudai://master":
            return Identity("master")
        if uri.startswith("cloudai://worker/"):
            return Identity("worker", uri.removeprefix("cloudai://worker/"))
    return None


def fingerprint(cert_pem: bytes) -> str:
    """sha256 of the certificate's DER, hex: what a join token pins."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex()


class Pki:
    """The PKI files under one directory (`$CLOUDAI_HOME/pki`)."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.dir = directory

    @property
    def ca_cert(self) -> pathlib.Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> pathlib.Path:
        return self.dir / "ca.key"

    @property
    def master_cert(self) -> pathlib.Path:
        return self.dir / "master.crt"

    @property
    def master_key(self) -> pathlib.Path:
        return self.dir / "master.key"

    def worker_cert(self, worker_id: str) -> pathlib.Path:
        return self.dir / f"worker-{worker_id}.crt"

    def worker_key(self, worker_id: str) -> pathlib.Path:
        return self.dir / f"worker-{worker_id}.key"

    def exists(self) -> bool:
        return self.ca_cert.exists()

    def has_master(self) -> bool:
        return self.ca_cert.exists() and self.master_cert.exists() and self.master_key.exists()

    def has_worker(self, worker_id: str) -> bool:
        return (
            self.ca_cert.exists()
            and self.worker_cert(worker_id).exists()
            and self.worker_key(worker_id).exists()
        )

    def ca_fingerprint(self) -> str:
        return fingerprint(self.ca_cert.read_bytes())

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if not self.ca_key.exists():
            raise NotFound(f"no cluster CA key at {self.ca_key}: run `cloudai certs init` first")
        cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidArgument(f"{self.ca_key} is not an EC key")
        return cert, key

    def init(self, sans: list[str]) -> None:
        """A new CA and the master's certificate. Refuses to replace an existing CA."""
        if self.ca_cert.exists():
            raise AlreadyExists(
                f"a cluster CA already exists in {self.dir} (remove the directory to start anew)"
            )
        extra = [_valid_san(s) for s in sans]
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudai cluster CA")])
        now = _now()
        ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write(self.ca_key, _key_pem(key), secret=True)
        _write(self.ca_cert, _cert_pem(ca))
        master_key = _new_key()
        dns = [MASTER_NAME, "localhost", "127.0.0.1", "::1", socket.gethostname(), *extra]
        cert = _leaf(ca, key, master_key.public_key(), "cloudai-master", "cloudai://master", dns)
        _write(self.master_key, _key_pem(master_key), secret=True)
        _write(self.master_cert, _cert_pem(cert))

    def issue_worker(self, worker_id: str, out: pathlib.Path | None = None) -> pathlib.Path:
        """A certificate and key for worker `worker_id`, into `out` (default: this directory,
        which holds the CA too). Returns the directory written."""
        if problem := validate_worker_id(worker_id):
            raise InvalidArgument(problem)
        ca, ca_key = self._load_ca()
        key = _new_key()
        cert = _leaf_for_worker(ca, ca_key, key.public_key(), worker_id)
        target = Pki(out) if out is not None else self
        target.dir.mkdir(parents=True, exist_ok=True)
        if target is not self:
            _write(target.ca_cert, _cert_pem(ca))
        _write(target.worker_key(worker_id), _key_pem(key), secret=True)
        _write(target.worker_cert(worker_id), _cert_pem(cert))
        return target.dir

    def sign_worker_csr(self, worker_id: str, csr_pem: bytes) -> bytes:
        """The certificate (PEM) for a joining worker's CSR, bound to `worker_id`."""
        ca, ca_key = self._load_ca()
        return issue_from_csr(ca, ca_key, worker_id, csr_pem)

    def store_worker(self, worker_id: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        _write(self.ca_cert, ca_pem)
        _write(self.worker_key(worker_id), key_pem, secret=True)
        _write(self.worker_cert(worker_id), cert_pem)


def _leaf_for_worker(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    worker_id: str,
) -> x509.Certificate:
    return _leaf(
        ca, ca_key, public_key, worker_id, f"cloudai://worker/{worker_id}", [worker_name(worker_id)]
    )


def issue_from_csr(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, worker_id: str, csr_pem: bytes
) -> bytes:
    """Only the CSR's key is taken (its signature checked); names come from `worker_id`."""
    if problem := validate_worker_id(worker_id):
        raise InvalidArgument(problem)
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise InvalidArgument("the certificate request is not a PEM CSR") from None
    if not csr.is_signature_valid:
        raise InvalidArgument("the certificate request's signature does not verify")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise InvalidArgument("the certificate request must carry an EC P-256 key")
    return _cert_pem(_leaf_for_worker(ca, ca_key, public_key, worker_id))
