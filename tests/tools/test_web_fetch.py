"""The web fetcher against a real HTTP server on loopback: pages, limits, hostile replies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepresearcher.errors import (
    FetchBlocked,
    FetchError,
    FetchHTTPStatus,
    FetchTimeout,
    FetchTooLarge,
    FetchTooManyRedirects,
    FetchUnsupportedType,
)
from deepresearcher.tools.base import Fetcher
from deepresearcher.tools.cache import ToolCache
from deepresearcher.tools.netguard import AddressGuard
from deepresearcher.tools.usage import ToolUsage, counting
from deepresearcher.tools.web_fetch import USER_AGENT, WebFetcher
from deepresearcher.types import Document
from servers.web_pages import WebSiteServer

FIXTURES = Path(__file__).parent / "fixtures"
LOOPBACK = AddressGuard.build(allow_hosts=["127.0.0.1"])


@pytest.fixture
def site() -> Iterator[WebSiteServer]:
    with WebSiteServer() as server:
        server.add_page("/article", (FIXTURES / "article.html").read_bytes(),
                        "text/html; charset=utf-8")
        server.add_page("/cp1252", (FIXTURES / "cp1252_undeclared.html").read_bytes(), None)
        server.add_page("/report", (FIXTURES / "report.pdf").read_bytes(),
                        "application/octet-stream")
        server.add_page("/junk", (FIXTURES / "junk.bin").read_bytes(), "text/html")
        server.add_page("/photo", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png")
        server.add_page("/notes", (FIXTURES / "plain.txt").read_bytes(), "text/plain")
        server.add_page("/gone", b"gone", "text/plain", status=410)
        yield server


def fetch(fetcher: WebFetcher, url: str) -> Document:
    return asyncio.run(fetcher.fetch(url))


def failure(fetcher: WebFetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(fetcher, url)
    return caught.value


def test_fetches_an_html_page_into_chunks(site: WebSiteServer) -> None:
    fetcher = WebFetcher(guard=LOOPBACK, chunk_chars=300)
    assert isinstance(fetcher, Fetcher)
    doc = fetch(fetcher, site.url("/article"))
    assert doc.url == site.url("/article")
    assert doc.content_type == "text/html"
    assert len(doc.chunks) > 1 and all(len(c) <= 300 for c in doc.chunks)
    text = "\n\n".join(doc.chunks)
    assert "Ray Lake" in text
    assert "cookie" not in text.lower()  # boilerplate is gone
    sent = site.requests[-1]["headers"]
    assert sent["User-Agent"] == USER_AGENT and USER_AGENT.startswith("deepresearcher/")
    assert sent["Host"] == f"127.0.0.1:{site.port}"


def test_undeclared_cp1252_page_is_decoded_right(site: WebSiteServer) -> None:
    doc = fetch(WebFetcher(guard=LOOPBACK), site.url("/cp1252"))
    text = "\n".join(doc.chunks)
    assert "Crème brûlée costs 8 €" in text
    assert "“c’est magnifique”" in text
    assert doc.title == "Café “Zürich” – Menü"


def test_pdf_is_read_whatever_the_header_says(site: WebSiteServer) -> None:
    doc = fetch(WebFetcher(guard=LOOPBACK), site.url("/report"))
    assert doc.content_type == "application/pdf"
    assert "Glass Harbour" in "\n".join(doc.chunks)


def test_plain_text(site: WebSiteServer) -> None:
    doc = fetch(WebFetcher(guard=LOOPBACK), site.url("/notes"))
    assert doc.content_type == "text/plain" and doc.chunks


def test_binary_junk_and_images_are_unsupported(site: WebSiteServer) -> None:
    fetcher = WebFetcher(guard=LOOPBACK)
    assert isinstance(failure(fetcher, site.url("/junk")), FetchUnsupportedType)
    assert isinstance(failure(fetcher, site.url("/photo")), FetchUnsupportedType)


def test_http_errors_are_typed(site: WebSiteServer) -> None:
    error = failure(WebFetcher(guard=LOOPBACK), site.url("/gone"))
    assert isinstance(error, FetchHTTPStatus) and "410" in str(error)
    assert isinstance(failure(WebFetcher(guard=LOOPBACK), site.url("/missing")), FetchHTTPStatus)


def test_redirects_are_followed_up_to_the_cap(site: WebSiteServer) -> None:
    doc = fetch(WebFetcher(guard=LOOPBACK, max_redirects=3), site.url("/hop/3"))
    assert "end of the chain" in doc.chunks[0]
    error = failure(WebFetcher(guard=LOOPBACK, max_redirects=3), site.url("/hop/4"))
    assert isinstance(error, FetchTooManyRedirects)
    assert site.hits("/hop/0") == 1  # the fourth hop was never requested


def test_redirect_loop_ends(site: WebSiteServer) -> None:
    error = failure(WebFetcher(guard=LOOPBACK, max_redirects=5), site.url("/loop"))
    assert isinstance(error, FetchTooManyRedirects)
    assert site.hits("/loop") == 6


@pytest.mark.parametrize("location", ["http://10.0.0.1/admin", "http://169.254.169.254/latest/",
                                      "http://localhost:{port}/article", "file:///etc/passwd"])
def test_redirect_to_a_private_address_is_blocked_at_the_hop(
    site: WebSiteServer, location: str
) -> None:
    site.add_redirect("/evil", location.format(port=site.port))
    error = failure(WebFetcher(guard=LOOPBACK), site.url("/evil"))
    assert isinstance(error, FetchBlocked)
    # localhost is loopback, but the allow-list names 127.0.0.1 only: the hop is refused.
    assert site.hits("/article") == 0


def test_loopback_is_blocked_unless_allowed(site: WebSiteServer) -> None:
    error = failure(WebFetcher(), site.url("/article"))
    assert isinstance(error, FetchBlocked) and "loopback" in str(error)
    assert site.requests == []  # refused before any connection


def test_huge_page_stops_at_the_byte_cap(site: WebSiteServer) -> None:
    started = time.perf_counter()
    error = failure(WebFetcher(guard=LOOPBACK, max_bytes=1 << 20), site.url("/huge"))
    assert isinstance(error, FetchTooLarge)
    assert time.perf_counter() - started < 5


def test_declared_length_over_the_cap_is_refused_before_reading(site: WebSiteServer) -> None:
    site.add_page("/big", b"x" * 5000, "text/plain")
    assert isinstance(failure(WebFetcher(guard=LOOPBACK, max_bytes=4000), site.url("/big")), FetchTooLarge)


def test_gzip_bomb_is_capped_on_decoded_bytes(site: WebSiteServer) -> None:
    usage = ToolUsage()

    async def go() -> None:
        with counting(usage):
            await WebFetcher(guard=LOOPBACK, max_bytes=2 << 20).fetch(site.url("/bomb"))

    with pytest.raises(FetchError) as caught:
        asyncio.run(go())
    assert isinstance(caught.value, FetchTooLarge)


def test_slow_drip_hits_the_total_timeout(site: WebSiteServer) -> None:
    started = time.perf_counter()
    fetcher = WebFetcher(guard=LOOPBACK, read_timeout_s=5, total_timeout_s=0.6)
    error = failure(fetcher, site.url("/drip"))
    assert isinstance(error, FetchTimeout)
    assert time.perf_counter() - started < 3


def test_ipv6_loopback_when_allowed() -> None:
    try:
        server = WebSiteServer(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        server.add_page("/p", b"<html><body><p>Over IPv6.</p></body></html>")
        assert isinstance(failure(WebFetcher(), server.url("/p")), FetchBlocked)
        guard = AddressGuard.build(allow_networks=["::1/128"])
        assert "Over IPv6." in fetch(WebFetcher(guard=guard), server.url("/p")).chunks[0]


def test_pages_go_through_the_cache_and_count_usage(site: WebSiteServer, tmp_path: Path) -> None:
    cache = ToolCache(tmp_path / "cache.sqlite")
    fetcher = WebFetcher(guard=LOOPBACK, cache=cache)
    usage = ToolUsage()

    async def go() -> list[Document]:
        with counting(usage):
            # a GRPO group: 8 concurrent fetches of one page, then one more
            docs = list(await asyncio.gather(*(fetcher.fetch(site.url("/article"))
                                               for _ in range(8))))
            docs.append(await fetcher.fetch(site.url("/article")))
            return docs

    docs = asyncio.run(go())
    assert site.hits("/article") == 1
    assert len({d.chunks for d in docs}) == 1
    assert usage.pages_cached == 8  # the toolbox counts pages; the fetcher, what it saved
    assert usage.fetch_bytes == len((FIXTURES / "article.html").read_bytes())
    # Another fetcher on the same cache file (another process, a later run): no request at all.
    again = fetch(WebFetcher(guard=LOOPBACK, cache=ToolCache(tmp_path / "cache.sqlite")),
                  site.url("/article"))
    assert again.chunks == docs[0].chunks and site.hits("/article") == 1
    # Replay fails closed on a page it has not seen.
    replay = WebFetcher(guard=LOOPBACK, cache=ToolCache(tmp_path / "cache.sqlite", mode="replay"))
    with pytest.raises(Exception, match="replay"):
        fetch(replay, site.url("/notes"))
    assert site.hits("/notes") == 0


def test_without_a_cache_concurrent_fetches_share_one_download(site: WebSiteServer) -> None:
    fetcher = WebFetcher(guard=LOOPBACK)

    async def go() -> None:
        await asyncio.gather(*(fetcher.fetch(site.url("/notes")) for _ in range(5)))

    asyncio.run(go())
    assert site.hits("/notes") == 1


def test_per_domain_concurrency_is_capped(site: WebSiteServer) -> None:
    in_flight = 0
    peak = 0
    import threading

    lock = threading.Lock()

    def slow(h) -> None:  # type: ignore[no-untyped-def]
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.15)
        with lock:
            in_flight -= 1
        body = b"<html><body><p>slow page</p></body></html>"
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    for i in range(6):
        site.routes[f"/slow{i}"] = slow
    fetcher = WebFetcher(guard=LOOPBACK, per_domain=2)

    async def go() -> None:
        await asyncio.gather(*(fetcher.fetch(site.url(f"/slow{i}")) for i in range(6)))

    asyncio.run(go())
    assert peak == 2


def test_a_failed_url_is_not_fetched_again_for_a_while(site: WebSiteServer) -> None:
    """The 16 rollouts of a GRPO group browse the same dead page at different turns: one
    request, the others get the same error at once (``failure_ttl_s``; 0 always retries)."""
    fetcher = WebFetcher(guard=LOOPBACK)
    first = failure(fetcher, site.url("/gone"))
    before = len(site.requests)
    again = failure(fetcher, site.url("/gone"))
    assert len(site.requests) == before  # not asked again
    assert type(again) is type(first) and again.kind == first.kind
    assert "not retried yet" in str(again)
    always = WebFetcher(guard=LOOPBACK, failure_ttl_s=0)
    failure(always, site.url("/gone"))
    failure(always, site.url("/gone"))
    assert len(site.requests) == before + 2
