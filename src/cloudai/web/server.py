"""The console's HTTP server: aiohttp on the master's event loop, HTTPS with the cluster's
master certificate when the PKI is there."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from cloudai.core.limits import quote
from cloudai.errors import InvalidArgument, Unavailable
from cloudai.master.auth import Auth
from cloudai.master.cluster import Cluster
from cloudai.security.pki import Pki
from cloudai.web.api import add_api_routes
from cloudai.web.errors import error_middleware
from cloudai.web.feed import Feed
from cloudai.web.pages import add_page_routes

__all__ = ["WebServer", "check_listen", "start_web"]

log = logging.getLogger("cloudai.web")
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@web.middleware
async def _headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    # The script and stylesheet may be kept, and revalidated (304) at each use; the rest,
    # which carries the cluster's state, is never stored.
    cache = "no-cache" if request.path.startswith("/static/") else "no-store"
    try:
        resp = await handler(request)
    except web.HTTPException as exc:  # redirects and the like keep the headers too
        _secure_headers(exc, cache)
        raise
    _secure_headers(resp, cache)
    return resp


def _secure_headers(resp: web.StreamResponse, cache: str) -> None:
    if resp.prepared:  # a stream already under way
        return
    resp.headers.setdefault("Content-Security-Policy", _CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Cache-Control", cache)


@dataclass
class WebServer:
    runner: web.AppRunner
    feed: Feed
    port: int
    url: str

    async def stop(self) -> None:
        await self.feed.close()
        await self.runner.cleanup()
        log.info("web console stopped")


def check_listen(listen: str) -> None:
    """HOST:PORT (port 0: any free one), or INVALID_ARGUMENT."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"--http-listen: invalid address {quote(listen)}: expected HOST:PORT")


def _ssl_context(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(pki.master_cert), str(pki.master_key))
    return ctx


def build_app(cluster: Cluster, auth: Auth, https: bool) -> tuple[web.Application, Feed]:
    app = web.Application(middlewares=[_headers, error_middleware], client_max_size=1024**2)
    feed = Feed(cluster)
    add_api_routes(app, cluster, auth, feed)
    add_page_routes(app, auth, https)
    return app, feed


async def start_web(cluster: Cluster, auth: Auth, listen: str, pki: Pki | None) -> WebServer:
    """Serve the console on `listen` (HOST:PORT; port 0: any free one)."""
    check_listen(listen)
    host, _, port = listen.rpartition(":")
    app, feed = build_app(cluster, auth, https=pki is not None)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(
        runner, host.strip("[]"), int(port), ssl_context=_ssl_context(pki) if pki else None
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise Unavailable(f"cannot serve the web console on {listen}: {exc}") from exc
    bound = int(runner.addresses[0][1]) if runner.addresses else int(port)
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    url = f"{'https' if pki else 'http'}://{shown}:{bound}/"
    log.info("web console on %s%s", url, "" if pki else " (plain HTTP: --insecure)")
    return WebServer(runner, feed, bound, url)
