"""Security commands: `certs init`, `certs worker`, `user add/ls/rm`, `join-token`, `whoami`,
and what `master`, `worker` and `up` need to start secure (the PKI, a worker joining).

`certs` works on the files under $CLOUDAI_HOME/pki (no master needed); the others ask the
master, as an admin."""

from __future__ import annotations

import os
import pathlib
import re
import socket
import ssl
from typing import Any

import grpc

from cloudai.api.v1 import master_pb2, master_pb2_grpc
from cloudai.cli.render import Renderer
from cloudai.client import Client
from cloudai.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from cloudai.rpc.errors import from_rpc_error
from cloudai.security.pki import Pki, fingerprint, new_csr
from cloudai.security.tls import Tls, master_target_options
from cloudai.security.tokens import new_user_token, parse_join_token

__all__ = [
    "ADMIN",
    "certs_init",
    "certs_worker",
    "join",
    "join_token",
    "master_security",
    "parse_duration",
    "pki_of",
    "user_add",
    "user_ls",
    "user_rm",
    "whoami",
    "worker_tls",
]

ADMIN = "admin"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def pki_of(home: pathlib.Path) -> Pki:
    return Pki(home / "pki")


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `1h`, `2d`, or plain seconds; more than 0. A ValueError says why (an
    argparse type: see main's `_checked`)."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"invalid duration {text[:32]!r}: use e.g. 90s, 15m, 1h, 2d")
    seconds = float(m[1]) * _UNIT[m[2]]
    if seconds <= 0:  # 0 would mean "the default" on the wire
        raise ValueError(f"a duration must be more than 0, got {text[:32]!r}")
    return seconds


def _write_secret(path: pathlib.Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)


def init_pki(home: pathlib.Path, sans: list[str]) -> str:
    """A new CA, the master's certificate and the first admin; returns its token."""
    from cloudai.master.accounts import write_bootstrap  # the store's modules: only here

    pki = pki_of(home)
    pki.init(sans)
    token = new_user_token()
    write_bootstrap(pki.dir, ADMIN, token)
    _write_secret(home / "token", token)
    return token


def certs_init(home: pathlib.Path, out: Renderer, sans: list[str]) -> int:
    token = init_pki(home, sans)
    pki = pki_of(home)
    if out.json_mode:
        out.emit_json(
            {
                "pki": str(pki.dir),
                "ca_fingerprint": pki.ca_fingerprint(),
                "admin": ADMIN,
                "token": token,
                "token_file": str(home / "token"),
            }
        )
        return 0
    out.console.print(
        f"✓ cluster CA and master certificate in {pki.dir}\n"
        f"  CA fingerprint (sha256): {pki.ca_fingerprint()}\n"
        f"✓ first admin user {ADMIN!r}; its token (shown once, also in {home / 'token'}, "
        f"mode 0600):\n{token}",
        highlight=False,
        soft_wrap=True,
    )
    return 0


def certs_worker(home: pathlib.Path, out: Renderer, worker_id: str, dest: str | None) -> int:
    written = pki_of(home).issue_worker(worker_id, pathlib.Path(dest) if dest else None)
    out.ok(
        f"certificate for worker {worker_id} in {written}",
        {"worker_id": worker_id, "dir": str(written)},
    )
    return 0


def master_security(home: pathlib.Path, worker_listen: str) -> Any:
    from cloudai.master.app import MasterSecurity

    pki = pki_of(home)
    if not pki.has_master():
        raise NotFound(
            f"no cluster PKI in {pki.dir}: run `cloudai certs init` first "
            "(or --insecure for plaintext, development only)"
        )
    return MasterSecurity(pki, worker_listen)


def worker_tls(home: pathlib.Path, worker_id: str) -> Tls:
    pki = pki_of(home)
    if not pki.has_worker(worker_id):
        raise NotFound(
            f"no certificate for worker {worker_id} in {pki.dir}: run `cloudai certs init` and "
            f"`cloudai certs worker {worker_id}` where the CA is, or join with --join TOKEN "
            "(or --insecure for plaintext, development only)"
        )
    return Tls.for_worker(pki, worker_id)


# ---- joining ---------------------------------------------------------------------------------


def _presented_chain(master: str) -> list[bytes]:
    """The certificates the master presents (PEM), unverified: checked against the join
    token's CA fingerprint before anything is trusted."""
    host, _, port = master.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname="master.cloudai") as tls,
        ):
            chain = tls._sslobj.get_unverified_chain() or []  # type: ignore[attr-defined]
            return [_pem(c) for c in chain]
    except (OSError, ValueError) as exc:
        raise Unavailable(f"cannot reach master at {master} over TLS: {exc}") from exc


def _pem(cert: Any) -> bytes:
    """A certificate from `get_unverified_chain` (an object on 3.11/3.12, DER bytes on 3.13)."""
    if isinstance(cert, bytes):
        return ssl.DER_cert_to_PEM_cert(cert).encode()
    pem = cert.public_bytes(ssl._ssl.ENCODING_PEM)  # type: ignore[attr-defined]
    return pem.encode() if isinstance(pem, str) else bytes(pem)


def join(home: pathlib.Path, master: str, worker_id: str, text: str) -> bool:
    """Join as `worker_id` with a join token: check the master against the token's CA
    fingerprint, send a CSR, and keep the certificate under $CLOUDAI_HOME/pki. False when
    this worker joined this cluster before (a restart with the same `--join`): nothing to do."""
    token = parse_join_token(text)
    pki = pki_of(home)
    if pki.has_worker(worker_id):
        if pki.ca_fingerprint() == token.ca_hash:
            return False
        raise AlreadyExists(
            f"worker {worker_id} has a certificate of another cluster in {pki.dir} already"
        )
    ca = next((p for p in _presented_chain(master) if fingerprint(p) == token.ca_hash), None)
    if ca is None:
        raise PermissionDenied(
            f"the master at {master} does not present the CA this join token pins: not joining"
        )
    key, csr = new_csr(worker_id)
    with grpc.secure_channel(
        master, grpc.ssl_channel_credentials(ca), options=master_target_options()
    ) as channel:
        try:
            reply = master_pb2_grpc.MasterStub(channel).JoinCluster(
                master_pb2.JoinRequest(token=text.strip(), worker_id=worker_id, csr_pem=csr),
                timeout=30,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, f"master at {master}") from exc
    if fingerprint(reply.ca_pem) != token.ca_hash:
        raise PermissionDenied("the master answered with another CA than the token pins")
    pki.store_worker(worker_id, reply.ca_pem, reply.cert_pem, key)
    return True


# ---- users and join tokens (ask the master) ----------------------------------------------


def user_add(client: Client, out: Renderer, name: str, admin: bool) -> int:
    reply = client.add_user(name, admin)
    if out.json_mode:
        out.emit_json({"name": reply.name, "token": reply.token, "admin": reply.admin})
    else:
        out.console.print(
            f"✓ user {reply.name} added{' (admin)' if reply.admin else ''}; its token "
            f"(shown once):\n{reply.token}",
            highlight=False,
            soft_wrap=True,
        )
    return 0


def _user_json(u: master_pb2.UserInfo) -> dict[str, Any]:
    return {
        "name": u.name,
        "admin": u.admin,
        "created_at": u.created_at or None,
        "created_by": u.created_by,
    }


def user_ls(client: Client, out: Renderer) -> int:
    found = client.list_users()
    if out.json_mode:
        out.emit_json([_user_json(u) for u in found])
        return 0
    for u in found:
        out.console.print(f"{u.name:<32} {'admin' if u.admin else 'user':<6} by {u.created_by}")
    return 0


def user_rm(client: Client, out: Renderer, name: str) -> int:
    removed = client.remove_user(name)
    out.ok(f"user {removed.name} removed: its token no longer works", _user_json(removed))
    return 0


def join_token(client: Client, out: Renderer, ttl: float) -> int:
    reply = client.join_token(ttl)
    if out.json_mode:
        out.emit_json({"token": reply.token, "expires_at": reply.expires_at})
    else:
        out.console.print(reply.token, highlight=False, soft_wrap=True)
    return 0


def whoami(client: Client, out: Renderer) -> int:
    me = client.whoami()
    out.ok(f"{me.name}{' (admin)' if me.admin else ''}", {"name": me.name, "admin": me.admin})
    return 0
