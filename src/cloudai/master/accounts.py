"""Users and joining workers: the admin's side of the master's security.

- Users: add (the token is returned once; only its hash is stored), list, remove (its token
  stops working at once). The first admin comes from `cloudai certs init`, which leaves its
  token's hash in `pki/bootstrap-admin` for the master to take when it has no user yet.
- Join tokens: one-time, expiring, pinned to the CA; the master signs a joining worker's CSR
  with the CA key, for the worker ID given, and only if that ID is not a known worker."""

from __future__ import annotations

import logging
import pathlib
import time

from cloudai.core.models import validate_worker_id
from cloudai.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from cloudai.master.auth import Auth, Caller
from cloudai.security.pki import Pki
from cloudai.security.tokens import (
    hash_secret,
    new_join_token,
    new_user_token,
    parse_join_token,
    validate_user_name,
)
from cloudai.store import Store, users, workers

__all__ = ["Accounts", "BOOTSTRAP_FILE", "MAX_JOIN_TTL"]

log = logging.getLogger("cloudai.master.accounts")
BOOTSTRAP_FILE = "bootstrap-admin"
MAX_JOIN_TTL = 7 * 24 * 3600.0
DEFAULT_JOIN_TTL = 3600.0


class Accounts:
    def __init__(self, store: Store, auth: Auth, pki: Pki | None) -> None:
        self.store = store
        self.auth = auth
        self.pki = pki

    async def bootstrap(self) -> None:
        """Take the first admin from `pki/bootstrap-admin` when the store has no user."""
        if self.pki is None:
            return
        path = self.pki.dir / BOOTSTRAP_FILE
        if not path.exists():
            return
        name, _, token_hash = path.read_text().strip().partition(" ")
        if await self.store.tx(users.count) == 0:
            await self.store.tx(users.add, name, token_hash, True, time.time(), "certs init")
            log.info("first admin %r taken from %s", name, path)

    async def add_user(self, caller: Caller, name: str, admin: bool) -> str:
        if problem := validate_user_name(name):
            raise InvalidArgument(problem)
        token = new_user_token()
        added = await self.store.tx(
            users.add, name, hash_secret(token), admin, time.time(), caller.name
        )
        if not added:
            raise AlreadyExists(f"user {name!r} already exists")
        log.info("user %s added by %s%s", name, caller.name, " (admin)" if admin else "")
        return token

    async def list_users(self) -> list[users.User]:
        return await self.store.tx(users.list_all)

    async def remove_user(self, caller: Caller, name: str) -> users.User:
        if problem := validate_user_name(name):
            raise InvalidArgument(problem)
        found = await self.store.tx(self._remove_tx, caller, name)
        self.auth.forget(name)
        log.info("user %s removed by %s: its token no longer works", name, caller.name)
        return found

    @staticmethod
    def _remove_tx(conn, caller: Caller, name: str) -> users.User:  # type: ignore[no-untyped-def]
        found = users.get(conn, name)
        if found is None:
            raise NotFound(f"user {name!r} not found")
        if found.admin and users.admins(conn) == 1:
            raise PermissionDenied(f"{name} is the last admin: add another admin first")
        users.remove(conn, name)
        return found

    async def create_join_token(self, caller: Caller, ttl: float) -> tuple[str, float]:
        if self.pki is None:
            raise InvalidArgument("this master runs --insecure: there is no PKI to join")
        ttl = ttl or DEFAULT_JOIN_TTL
        if not 0 < ttl <= MAX_JOIN_TTL:
            raise InvalidArgument(f"--ttl must be between 1s and {MAX_JOIN_TTL / 86400:g} days")
        token = new_join_token(self.pki.ca_fingerprint())
        now = time.time()
        await self.store.tx(
            users.save_join_token,
            token.token_id,
            hash_secret(token.secret),
            caller.name,
            now,
            now + ttl,
        )
        log.info("join token %s created by %s (valid %gs)", token.token_id, caller.name, ttl)
        return str(token), now + ttl

    async def join(self, text: str, worker_id: str, csr_pem: bytes) -> tuple[bytes, bytes]:
        """(certificate, CA certificate) for a worker joining with a join token."""
        if self.pki is None:
            raise InvalidArgument("this master runs --insecure: there is no PKI to join")
        if problem := validate_worker_id(worker_id):
            raise InvalidArgument(problem)
        token = parse_join_token(text)
        if len(csr_pem) > 16_384:
            raise InvalidArgument("the certificate request is too large")
        cert = self.pki.sign_worker_csr(worker_id, csr_pem)  # checks the CSR before the token
        await self.store.tx(self._consume_tx, token, worker_id, time.time())
        log.info("worker %s joined with join token %s", worker_id, token.token_id)
        return cert, self.pki.ca_cert.read_bytes()

    @staticmethod
    def _consume_tx(conn, token, worker_id: str, now: float) -> None:  # type: ignore[no-untyped-def]
        stored = users.join_token_hash(conn, token.token_id)
        if stored is None or not token.matches(stored[0]):
            raise PermissionDenied("invalid join token")
        if stored[2] is not None:
            raise PermissionDenied("this join token was used already: ask for a new one")
        if stored[1] <= now:
            raise PermissionDenied("this join token has expired: ask for a new one")
        wanted = worker_id.lower()
        # Case-blind: the TLS name the master checks when it dials a worker is a DNS name
        # (`w1.worker.cloudai`), so a joiner named `W1` would get a certificate for w1's name.
        known = next(
            (r["worker_id"] for r in workers.all_rows(conn) if r["worker_id"].lower() == wanted),
            None,
        )
        if known is not None:
            raise AlreadyExists(
                f"worker {known!r} is known already: pick another ID "
                "(or issue its certificate with `cloudai certs worker`)"
            )
        if not users.consume_join_token(conn, token.token_id, worker_id, now):
            raise PermissionDenied("this join token was used already: ask for a new one")


def write_bootstrap(pki_dir: pathlib.Path, name: str, token: str) -> None:
    path = pki_dir / BOOTSTRAP_FILE
    path.write_text(f"{name} {hash_secret(token)}\n")
    path.chmod(0o600)
