"""User tokens and join tokens: made here, stored only as hashes, parsed strictly.

A user token is `cloudai_` and 43 URL-safe characters (256 random bits). A join token is
`cloudai-join.ID.SECRET.CAHASH`: ID names its stored row, SECRET is checked against the row's
hash, CAHASH is the sha256 of the cluster CA's certificate, which the joining worker checks the
master against before it trusts it (kubeadm's discovery-token-ca-cert-hash, in the token)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cloudai.errors import InvalidArgument

__all__ = [
    "JoinToken",
    "hash_secret",
    "new_join_token",
    "new_user_token",
    "parse_join_token",
    "validate_user_name",
]

_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_TOKEN_RE = re.compile(r"^cloudai_[A-Za-z0-9_-]{43}$")
_JOIN_RE = re.compile(r"^cloudai-join\.([0-9a-f]{12})\.([A-Za-z0-9_-]{43})\.([0-9a-f]{64})$")


def validate_user_name(name: str) -> str | None:
    if not _USER_RE.fullmatch(name or ""):
        return (
            f"invalid user name {name[:40]!r}: use 1-32 lower-case letters, digits, '_', '.' "
            "or '-', starting with a letter or '_'"
        )
    return None


def hash_secret(secret: str) -> str:
    """Tokens carry 256 random bits, so one round of sha256 is enough (no dictionary)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_user_token() -> str:
    return "cloudai_" + secrets.token_urlsafe(32)


def looks_like_user_token(token: str) -> bool:
    return bool(_TOKEN_RE.fullmatch(token))


@dataclass(frozen=True, slots=True)
class JoinToken:
    token_id: str
    secret: str
    ca_hash: str

    def __str__(self) -> str:
        return f"cloudai-join.{self.token_id}.{self.secret}.{self.ca_hash}"

    def matches(self, secret_hash: str) -> bool:
        return hmac.compare_digest(hash_secret(self.secret), secret_hash)


def new_join_token(ca_hash: str) -> JoinToken:
    return JoinToken(secrets.token_hex(6), secrets.token_urlsafe(32), ca_hash)


def parse_join_token(text: str) -> JoinToken:
    m = _JOIN_RE.fullmatch(text.strip())
    if m is None:
        raise InvalidArgument("not a join token (expected cloudai-join.ID.SECRET.CAHASH)")
    return JoinToken(m[1], m[2], m[3])
