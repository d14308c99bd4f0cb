"""Compressed bodies from a hostile server on loopback: the byte cap holds on decoded bytes, for
every coding, counted as they are decoded, and codings that were not asked for are refused."""

from __future__ import annotations

import asyncio
import gzip
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from deepresearcher.errors import (
    FetchError,
    FetchNetworkError,
    FetchTooLarge,
    FetchUnsupportedEncoding,
)
from deepresearcher.tools.http import ACCEPT_ENCODING
from deepresearcher.tools.netguard import AddressGuard
from deepresearcher.tools.web_fetch import WebFetcher
from servers.web_pages import WebSiteServer

LOOPBACK = AddressGuard.build(allow_hosts=["127.0.0.1"])
CAP = 2 << 20  # the fetcher's cap in these tests: 2 MiB
GIB = 1 << 30
PAGE = b"<html><head><title>Fine</title></head><body><article><p>" + b"A calm page. " * 400 + (
    b"</p></article></body></html>")


def _deflate_stream(total: int, *, wbits: int, level: int = 9) -> bytes:
    """``total`` zero bytes compressed with zlib (gzip, zlib or raw deflate by ``wbits``),
    built a MiB at a time so that the test never holds the decoded body itself."""
    packer = zlib.compressobj(level, zlib.DEFLATED, wbits)
    block = b"\0" * (1 << 20)
    parts = [packer.compress(block) for _ in range(total // len(block))]
    parts.append(packer.flush())
    return b"".join(parts)


GZIP, ZLIB, RAW = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    one_gib_gzip = _deflate_stream(GIB, wbits=GZIP)
    return {
        "gzip": one_gib_gzip,  # ~1 MB on the wire, 1 GiB decoded
        "deflate": _deflate_stream(256 << 20, wbits=ZLIB),
        "raw-deflate": _deflate_stream(256 << 20, wbits=RAW),
        # gzip of the gzip bomb: a few KB on the wire, the inner layer 1 MB, then 1 GiB
        "gzip, gzip": gzip.compress(one_gib_gzip, compresslevel=9),
        # 64 concatenated members of 16 MiB each: one body of 1 GiB
        "members": _deflate_stream(16 << 20, wbits=GZIP) * 64,
    }


def _send(status: int, headers: dict[str, str], body: bytes, *, chunked: bool = False
          ) -> Callable[[BaseHTTPRequestHandler], None]:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for start in range(0, len(body), 16384):
                piece = body[start : start + 16384]
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            h.wfile.write(b"0\r\n\r\n")
        else:
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

    return route


@pytest.fixture
def site() -> Iterator[WebSiteServer]:
    with WebSiteServer() as server:
        yield server


def _fetch_measured(url: str, **options: object) -> tuple[BaseException | None, float, int]:
    """Fetch ``url``: the error raised (or None), seconds, and peak Python memory in bytes."""
    fetcher = WebFetcher(guard=LOOPBACK, max_bytes=CAP, failure_ttl_s=0, **options)  # type: ignore[arg-type]
    tracemalloc.start()
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        asyncio.run(fetcher.fetch(url))
    except BaseException as exc:  # returned to the test
        error = exc
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, seconds, peak


@pytest.mark.parametrize("name", ["gzip", "deflate", "raw-deflate", "gzip, gzip", "members"])
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_a_bomb_stops_at_the_cap_with_memory_near_the_cap(
    site: WebSiteServer, bombs: dict[str, bytes], name: str, chunked: bool
) -> None:
    coding = {"members": "gzip", "raw-deflate": "deflate"}.get(name, name)
    site.routes["/bomb"] = _send(200, {"Content-Type": "text/html", "Content-Encoding": coding},
                                 bombs[name], chunked=chunked)
    error, seconds, peak = _fetch_measured(site.url("/bomb"))
    assert isinstance(error, FetchError), error
    assert isinstance(error, FetchTooLarge)
    # What is held is the cap plus one decoding step, not the decoded body (1 GiB or 256 MiB).
    assert peak < CAP * 2 + (4 << 20), f"peak {peak:,} bytes"
    assert seconds < 10


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, br", "x-bogus",
                                    "gzip, gzip, gzip"])
def test_codings_that_were_not_asked_for_are_refused_unread(site: WebSiteServer,
                                                            coding: str) -> None:
    body = gzip.compress(PAGE)
    try:  # a real brotli bomb where the library is installed: refused all the same
        import brotli

        if coding == "br":
            body = brotli.compress(b"\0" * (64 << 20), quality=5)
    except ImportError:
        pass
    site.routes["/enc"] = _send(200, {"Content-Type": "text/html", "Content-Encoding": coding},
                                body)
    error, _, peak = _fetch_measured(site.url("/enc"))
    assert isinstance(error, FetchError), error
    assert isinstance(error, FetchUnsupportedEncoding)
    assert peak < 4 << 20
    assert site.requests[-1]["headers"]["Accept-Encoding"] == ACCEPT_ENCODING


@pytest.mark.parametrize("coding,body", [
    ("gzip", gzip.compress(PAGE)),
    ("x-gzip", gzip.compress(PAGE)),
    ("deflate", zlib.compress(PAGE)),
    ("deflate", zlib.compress(PAGE)[2:-4]),  # raw deflate, as some servers send it
    ("gzip, gzip", gzip.compress(gzip.compress(PAGE))),
    ("gzip", gzip.compress(PAGE[:3000]) + gzip.compress(PAGE[3000:])),  # two members
    ("identity", PAGE),
    ("", PAGE),
], ids=["gzip", "x-gzip", "zlib", "raw-deflate", "gzip-gzip", "members", "identity", "none"])
def test_honest_compressed_pages_are_read_whole(site: WebSiteServer, coding: str,
                                                body: bytes) -> None:
    headers = {"Content-Type": "text/html; charset=utf-8"}
    if coding:
        headers["Content-Encoding"] = coding
    site.routes["/page"] = _send(200, headers, body, chunked=True)
    document = asyncio.run(WebFetcher(guard=LOOPBACK, max_bytes=CAP).fetch(site.url("/page")))
    assert document.title == "Fine"
    assert "".join(document.chunks).count("A calm page.") == 400


def test_a_page_just_under_the_cap_is_read_and_just_over_is_not(site: WebSiteServer) -> None:
    text = b"<html><body><p>" + b"word " * 1000 + b"</p></body></html>"
    fits = text + b" " * (CAP - len(text))
    site.routes["/fits"] = _send(200, {"Content-Type": "text/html", "Content-Encoding": "gzip"},
                                 gzip.compress(fits))
    site.routes["/over"] = _send(200, {"Content-Type": "text/html", "Content-Encoding": "gzip"},
                                 gzip.compress(fits + b" "))
    fetcher = WebFetcher(guard=LOOPBACK, max_bytes=CAP)
    assert "word" in asyncio.run(fetcher.fetch(site.url("/fits"))).chunks[0]
    error, _, _ = _fetch_measured(site.url("/over"))
    assert isinstance(error, FetchError) and isinstance(error, FetchTooLarge)


def test_a_corrupt_compressed_body_is_a_network_error(site: WebSiteServer) -> None:
    body = bytearray(gzip.compress(PAGE))
    body[20:40] = b"\xff" * 20
    site.routes["/bad"] = _send(200, {"Content-Type": "text/html", "Content-Encoding": "gzip"},
                                bytes(body))
    error, _, _ = _fetch_measured(site.url("/bad"))
    assert isinstance(error, FetchError) and isinstance(error, FetchNetworkError)
    assert "does not decode" in str(error)
