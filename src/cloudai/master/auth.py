"""Who is calling the master, and may they.

Users come with a token (`authorization: Bearer TOKEN` metadata), looked up by its hash in the
store (a short cache; `forget` drops a removed user's entry at once; while the store does not
answer, a token verified before is still taken: docs/reliability.md). Workers come with their
certificate, checked by TLS against the cluster CA; its ID must be the worker the call speaks
for. Per-user rate limits on submit and cancel are token buckets in memory.

With `--insecure` there is no TLS and so no way to know anyone: every caller is an admin named
by its `cloudai-user` metadata. The master says so loudly at start."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from cloudai.errors import PermissionDenied, RateLimited, StoreUnavailable, Unauthenticated
from cloudai.security.tls import peer_identity
from cloudai.security.tokens import hash_secret, looks_like_user_token
from cloudai.store import Store, users

__all__ = ["Auth", "Caller", "RateLimit"]

log = logging.getLogger("cloudai.master.auth")
_CACHE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    admin: bool

    def may_touch(self, owner: str) -> bool:
        """Cancel, show, read logs: the task's owner or an admin."""
        return self.admin or owner == self.name


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: `rate` per second on average, bursts of `burst`. rate 0: no limit."""

    rate: float
    burst: float


class _Buckets:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._state: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)

    def take(self, user: str, n: float = 1.0) -> float:
        """0 when allowed; else the seconds until `n` requests would be."""
        if self.limit.rate <= 0:
            return 0.0
        n = min(n, self.limit.burst)  # a bulk request as large as a burst may always pass
        now = time.monotonic()
        tokens, at = self._state.get(user, (self.limit.burst, now))
        tokens = min(self.limit.burst, tokens + (now - at) * self.limit.rate)
        if tokens >= n:
            self._state[user] = (tokens - n, now)
            return 0.0
        self._state[user] = (tokens, now)
        return (n - tokens) / self.limit.rate


def _sanitize(name: str) -> str:
    name = "".join(c for c in name if c.isascii() and c.isprintable())[:32]
    return name or "anonymous"


class Auth:
    def __init__(
        self,
        store: Store,
        secure: bool,
        submit_limit: RateLimit = RateLimit(0, 0),
        cancel_limit: RateLimit = RateLimit(0, 0),
    ) -> None:
        self.store = store
        self.secure = secure
        self._cache: dict[str, tuple[Caller | None, float]] = {}
        self._submits = _Buckets(submit_limit)
        self._cancels = _Buckets(cancel_limit)

    async def user(self, context: Any) -> Caller:
        """The authenticated user making this call, or UNAUTHENTICATED."""
        meta = dict(context.invocation_metadata() or ())
        return await self.bearer(
            str(meta.get("authorization", "")), str(meta.get("cloudai-user", ""))
        )

    async def bearer(self, header: str, insecure_name: str = "") -> Caller:
        """The user an `authorization` value (`Bearer TOKEN`) names, or UNAUTHENTICATED; the
        gRPC API and the web console (master/../web) both ask here. Insecure: an admin named
        by `insecure_name`."""
        if not self.secure:
            return Caller(_sanitize(insecure_name), admin=True)
        scheme, _, token = header.partition(" ")
        if not header:
            raise Unauthenticated(
                "no token: pass --token, set CLOUDAI_TOKEN, or keep it in $CLOUDAI_HOME/token"
            )
        if scheme.lower() != "bearer" or not looks_like_user_token(token.strip()):
            raise Unauthenticated("invalid token")
        caller = await self._lookup(hash_secret(token.strip()))
        if caller is None:
            raise Unauthenticated("invalid token (unknown or revoked)")
        return caller

    async def _lookup(self, token_hash: str) -> Caller | None:
        now = time.monotonic()
        hit = self._cache.get(token_hash)
        if hit is not None and now - hit[1] < _CACHE_SECONDS:
            return hit[0]
        try:
            found = await self.store.tx(users.by_token_hash, token_hash)
        except StoreUnavailable:
            if hit is None:
                raise
            return hit[0]  # verified before: trusted while the store is away (it cannot change)
        caller = Caller(found.name, found.admin) if found is not None else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token_hash] = (caller, now)
        return caller

    def forget(self, name: str) -> None:
        """Drop a user's cached entries (removed: its token stops working at once)."""
        for key, (caller, _) in list(self._cache.items()):
            if caller is not None and caller.name == name:
                del self._cache[key]

    async def admin(self, context: Any, action: str) -> Caller:
        return self.require_admin(await self.user(context), action)

    @staticmethod
    def require_admin(caller: Caller, action: str) -> Caller:
        if not caller.admin:
            log.warning("⛔ %s may not %s: admin only", caller.name, action)
            raise PermissionDenied(f"{action} is for admins only ({caller.name} is not one)")
        return caller

    def worker(self, context: Any, worker_id: str) -> None:
        """A worker call: the peer's certificate must be worker `worker_id`'s."""
        if not self.secure:
            return
        who = peer_identity(context)
        if who is None:
            raise Unauthenticated(
                "worker calls need the worker's certificate (on the master's worker port)"
            )
        if who.role != "worker" or who.name != worker_id:
            log.warning("⛔ a peer with %s's certificate spoke for worker %s", who, worker_id)
            raise PermissionDenied(f"this certificate is not worker {worker_id[:64]!r}'s")

    def limit_submit(self, caller: Caller) -> None:
        self._limit(self._submits, caller, "submits")

    def limit_cancel(self, caller: Caller, n: int) -> None:
        self._limit(self._cancels, caller, "cancels", float(n))

    @staticmethod
    def _limit(buckets: _Buckets, caller: Caller, what: str, n: float = 1.0) -> None:
        wait = buckets.take(caller.name, n)
        if wait > 0:
            raise RateLimited(
                f"too many {what} from {caller.name}: retry in {wait:.1f}s", retry_after=wait
            )
