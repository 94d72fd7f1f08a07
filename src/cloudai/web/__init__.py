"""The web console: an HTTP JSON API under /api/v1/ and the pages that use it, served by the
master on its own event loop (`cloudai master --http-listen ADDR`)."""

from cloudai.web.server import WebServer, start_web

__all__ = ["WebServer", "start_web"]
