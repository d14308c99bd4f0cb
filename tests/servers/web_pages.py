"""A real web site on loopback for fetcher tests: pages, redirects and hostile replies.

``WebSiteServer`` is a threaded ``http.server`` on ``127.0.0.1`` (or ``::1``). Routes map a path to
a function ``handler -> None`` that writes the whole reply; ``add_page`` serves fixed bytes. The
built-in routes cover what the fetcher must survive: redirect chains and loops, a redirect to a
private address, a huge page, a slow drip, a gzip bomb, binary junk. Every request is recorded.

    with WebSiteServer() as site:
        site.add_page("/a", b"<html>...</html>", "text/html")
        url = site.url("/a")
"""

from __future__ import annotations

import gzip
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["QuietServer", "WebSiteServer"]

Route = Callable[[BaseHTTPRequestHandler], None]


class QuietServer(ThreadingHTTPServer):
    """A threaded loopback server that does not print a traceback for a client hanging up."""

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-reply (a cap reached, a timeout) is what the tests provoke.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Server6(QuietServer):
    address_family = socket.AF_INET6


class WebSiteServer:
    """A loopback web site with hostile routes built in (see the module docstring)."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests: list[dict[str, Any]] = []
        self.routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        server_class = _Server6 if ":" in host else QuietServer
        self._httpd = server_class((host, 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        daemon=True)
        self._builtin()

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> WebSiteServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> WebSiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def hits(self, path: str) -> int:
        """How many requests asked for ``path``."""
        with self._lock:
            return sum(1 for r in self.requests if r["path"] == path)

    # -- routes ----------------------------------------------------------------------------------

    def add_page(self, path: str, body: bytes, content_type: str | None = "text/html",
                 *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """Serve ``body`` at ``path`` (``content_type=None``: no Content-Type header at all)."""

        def route(h: BaseHTTPRequestHandler) -> None:
            extra = dict(headers or {})
            if content_type is not None:
                extra["Content-Type"] = content_type
            _reply(h, status, body, extra)

        self.routes[path] = route

    def add_redirect(self, path: str, location: str, status: int = 302) -> None:
        self.routes[path] = lambda h: _reply(h, status, b"", {"Location": location})

    def _builtin(self) -> None:
        # /hop/N redirects to /hop/N-1 ... /hop/0 is a page; /loop redirects to itself.
        self.add_redirect("/loop", "/loop")
        # Bytes trickle in, one every 0.1 s: no read ever times out, the total time does.
        self.routes["/drip"] = _drip
        self.routes["/huge"] = _huge
        self.routes["/bomb"] = _gzip_bomb

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with site._lock:
                    site.requests.append({"path": path, "headers": dict(self.headers.items())})
                route = site.routes.get(path)
                if route is None and path.startswith("/hop/"):
                    n = int(path.rsplit("/", 1)[1])
                    if n > 0:
                        route = lambda h: _reply(h, 302, b"", {"Location": f"/hop/{n - 1}"})  # noqa: E731
                    else:
                        route = lambda h: _reply(  # noqa: E731
                            h, 200, b"<html><body><p>The end of the chain.</p></body></html>",
                            {"Content-Type": "text/html"})
                if route is None:
                    _reply(self, 404, b"not found", {"Content-Type": "text/plain"})
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _reply(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
    h.send_response(status)
    for key, value in headers.items():
        h.send_header(key, value)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def _drip(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    for _ in range(600):  # at most a minute, whatever the client does
        h.wfile.write(b"<p>x</p>")
        h.wfile.flush()
        time.sleep(0.1)


def _huge(h: BaseHTTPRequestHandler) -> None:
    """A 64 MiB page without a Content-Length (chunked would be honest; close-delimited here)."""
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Connection", "close")
    h.end_headers()
    h.close_connection = True
    block = b"<p>" + b"lorem ipsum " * 85 + b"</p>\n"
    for _ in range((64 << 20) // len(block)):
        h.wfile.write(block)


_BOMB: bytes | None = None


def _gzip_bomb(h: BaseHTTPRequestHandler) -> None:
    """About 64 KB on the wire that inflate to 64 MiB of spaces."""
    global _BOMB
    if _BOMB is None:
        _BOMB = gzip.compress(b" " * (64 << 20), compresslevel=6)
    _reply(h, 200, _BOMB, {"Content-Type": "text/html", "Content-Encoding": "gzip"})
