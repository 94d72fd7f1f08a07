"""Who is calling over HTTP: a `Authorization: Bearer TOKEN` header (scripts), or the console's
session cookie (the browser). The cookie holds the user's token, HttpOnly and SameSite=Strict;
a state-changing request made with the cookie must also carry the CSRF token that only a page
of this console knows (derived from the user's token: a forger has neither)."""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from cloudai.errors import PermissionDenied, Unauthenticated
from cloudai.master.auth import Auth, Caller

__all__ = ["COOKIE", "CSRF_HEADER", "caller_of", "csrf_of", "session_token"]

COOKIE = "cloudai_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_of(token: str) -> str:
    return hashlib.sha256(b"cloudai-console-csrf\0" + token.encode()).hexdigest()[:40]


def session_token(request: web.Request) -> str:
    return request.cookies.get(COOKIE, "")


async def caller_of(request: web.Request, auth: Auth) -> Caller:
    """The caller, or UNAUTHENTICATED / PERMISSION_DENIED (a cookie POST without the CSRF
    token). `--insecure`: anyone is an admin, but a POST still needs a header a cross-site
    form cannot send (Authorization, or the CSRF token)."""
    header = request.headers.get("Authorization", "")
    if header:
        return await auth.bearer(header, insecure_name=header.partition(" ")[2])
    token = session_token(request)
    if not token and auth.secure:
        raise Unauthenticated(
            "no token: send `Authorization: Bearer TOKEN` (the CLI's user token) or log in"
        )
    caller = await auth.bearer(f"Bearer {token}", insecure_name=token)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), csrf_of(token).encode()):
            raise PermissionDenied(
                f"the request has no valid {CSRF_HEADER}: reload the console and try again"
            )
    return caller
