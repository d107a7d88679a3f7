"""Serve a built site as static files (what an intranet web server would do).

The standard library's threaded HTTP server is enough for a reader or a test; in production any
web server (nginx, the hub's proxy) can serve the same folder.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".ipynb": "application/x-ipynb+json",
        ".woff2": "font/woff2",
        ".woff": "font/woff",
        ".js": "text/javascript",
        ".json": "application/json",
    }

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
        if getattr(self.server, "quiet", False):
            return
        super().log_message(format, *args)


def make_server(
    site_dir: Path, host: str = "127.0.0.1", port: int = 8001, quiet: bool = False
) -> ThreadingHTTPServer:
    """An HTTP server for ``site_dir`` bound to ``host:port`` (port 0 picks a free one)."""
    handler = functools.partial(_Handler, directory=str(site_dir))
    server = ThreadingHTTPServer((host, port), handler)
    server.quiet = quiet  # type: ignore[attr-defined]
    server.daemon_threads = True
    return server


def serve_in_thread(site_dir: Path, host: str = "127.0.0.1") -> tuple[ThreadingHTTPServer, str]:
    """Start a quiet server on a free port in a daemon thread; return it and its base URL."""
    server = make_server(site_dir, host=host, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/"
