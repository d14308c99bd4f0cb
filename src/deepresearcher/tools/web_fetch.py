"""The web fetcher: turns an http(s) URL into a chunked :class:`~deepresearcher.types.Document`.

Every hop of a redirect chain is checked by the :class:`~deepresearcher.tools.netguard.AddressGuard`
after DNS resolution, and the connection goes to the address that was checked. Time, redirects and
bytes are capped (bytes after decompression, so a gzip bomb stops at the cap). Pages are extracted
(:mod:`deepresearcher.tools.extract`) and chunked; extracted pages go through the shared tool cache
(namespace ``page``) when one is given. Failures are subclasses of ``FetchError``:
``FetchBlocked``, ``FetchTimeout``, ``FetchTooLarge``, ``FetchTooManyRedirects``,
``FetchHTTPStatus``, ``FetchUnsupportedType``, ``FetchUnsupportedEncoding``, ``FetchExtractFailed``,
``FetchExtractTimeout``, ``FetchNetworkError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from deepresearcher import __version__
from deepresearcher.errors import (
    ConfigError,
    ExtractError,
    FetchError,
    FetchExtractFailed,
    FetchExtractTimeout,
    FetchHTTPStatus,
    FetchNetworkError,
    FetchTimeout,
    FetchTooLarge,
    FetchTooManyRedirects,
    FetchUnsupportedEncoding,
    FetchUnsupportedType,
)
from deepresearcher.tools.cache import ToolCache
from deepresearcher.tools.chunking import DEFAULT_CHUNK_CHARS, chunk_text
from deepresearcher.tools.extract import FAST_PATH_CHARS, sniff_content_type
from deepresearcher.tools.extract_worker import (
    EXTRACT_TIMEOUT_S,
    ExtractTimeoutError,
    extract_bounded,
)
from deepresearcher.tools.http import (
    ACCEPT_ENCODING,
    BodyError,
    BodyTooLarge,
    BodyUnsupportedEncoding,
    PerLoop,
    read_body,
)
from deepresearcher.tools.netguard import AddressGuard, IPAddress, Target
from deepresearcher.tools.ratelimit import RateLimiter
from deepresearcher.tools.usage import record
from deepresearcher.types import Document

USER_AGENT = f"deepresearcher/{__version__} (+https://github.com/deepresearcher/deepresearcher)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Types no extractor reads: refused from the header, before the body is downloaded.
_UNREADABLE_PREFIXES = ("image/", "audio/", "video/", "font/", "model/")
_UNREADABLE_TYPES = frozenset({
    "application/zip", "application/gzip", "application/x-gzip", "application/x-tar",
    "application/x-7z-compressed", "application/vnd.rar", "application/x-rar-compressed",
    "application/wasm", "application/x-msdownload", "application/java-archive",
})  # fmt: skip
_ACCEPT = "text/html,application/xhtml+xml,application/pdf;q=0.9,text/plain;q=0.8,*/*;q=0.5"
# Bump when extraction changes in a way that should not be served from old cache rows.
# 2: trafilatura's markdown escapes are undone ("[1]", not "\[1\]").
PAGE_CACHE_VERSION = 2


@dataclass(frozen=True)
class FetchedPage:
    """An extracted page: what the ``page`` cache namespace stores (before chunking)."""

    url: str  # the URL after redirects
    title: str
    text: str
    content_type: str
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "title": self.title, "text": self.text,
                "content_type": self.content_type, "bytes": self.bytes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FetchedPage:
        return cls(str(data["url"]), str(data["title"]), str(data["text"]),
                   str(data["content_type"]), int(data.get("bytes", 0)))


class WebFetcher:
    """A :class:`~deepresearcher.tools.base.Fetcher` for http(s) URLs.

    Args:
        guard: which addresses may be reached (default: public internet only).
        connect_timeout_s, read_timeout_s: per connection attempt and per read.
        total_timeout_s: the whole fetch, redirects and download included (a slow drip ends here).
        max_redirects: hops followed before ``too_many_redirects``.
        max_bytes: body bytes (after decompression) before ``too_large``.
        per_domain: requests in flight to one host at once.
        chunk_chars: size of the chunks ("pages") handed to the reader.
        fast_path_chars: HTML longer than this is extracted with resiliparse.
        extract_timeout_s: seconds extraction may run, in a worker process killed past it
            (``extract_timeout``); a fetch waits at most twice this for extraction.
        cache: the shared tool cache; extracted pages are stored under namespace ``page``.
        transport: an httpx transport (tests), else httpx's default.
    """

    def __init__(
        self,
        *,
        guard: AddressGuard | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 15.0,
        total_timeout_s: float = 30.0,
        max_redirects: int = 5,
        max_bytes: int = 8 * 1024 * 1024,
        per_domain: int = 4,
        chunk_chars: int = DEFAULT_CHUNK_CHARS,
        fast_path_chars: int = FAST_PATH_CHARS,
        extract_timeout_s: float = EXTRACT_TIMEOUT_S,
        cache: ToolCache | None = None,
        user_agent: str = USER_AGENT,
        transport: httpx.AsyncBaseTransport | None = None,
        failure_ttl_s: float = 300.0,
    ) -> None:
        if max_redirects < 0 or max_bytes < 1 or per_domain < 1 or chunk_chars < 1:
            raise ConfigError("max_redirects >= 0, and max_bytes, per_domain, chunk_chars >= 1")
        if min(connect_timeout_s, read_timeout_s, total_timeout_s, extract_timeout_s) <= 0:
            raise ConfigError("fetch and extraction timeouts must be positive")
        self.guard = guard or AddressGuard()
        self.timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self.total_timeout_s = total_timeout_s
        self.max_redirects = max_redirects
        self.max_bytes = max_bytes
        self.per_domain = per_domain
        self.chunk_chars = chunk_chars
        self.fast_path_chars = fast_path_chars
        self.extract_timeout_s = extract_timeout_s
        self.cache = cache
        self.user_agent = user_agent
        self._transport = transport
        self._domains: dict[str, RateLimiter] = {}
        # One client per event loop: a toolbox outlives loops (a GRPO step runs in a new one).
        self._clients = PerLoop(self._new_client)
        self._inflight: dict[str, asyncio.Future[FetchedPage]] = {}
        # A URL that failed is not tried again for failure_ttl_s (0: always retried): the other
        # rollouts of a GRPO group would each wait out the same timeout or 404 again.
        self.failure_ttl_s = failure_ttl_s
        self._failures: dict[str, tuple[FetchError, float]] = {}  # url -> (error, when)

    # -- public ----------------------------------------------------------------------------------

    async def fetch(self, url: str) -> Document:
        """The document at ``url``, chunked. Raises :class:`FetchError`."""
        self.guard.check_url(url)  # scheme and literal addresses: refused even from the cache
        page, cached = await self._page(url)
        if cached:
            record(pages_cached=1)
        return Document(url=url, title=page.title,
                        chunks=tuple(chunk_text(page.text, self.chunk_chars)),
                        content_type=page.content_type)

    async def aclose(self) -> None:
        for client in self._clients.pop_all():
            # RuntimeError: its event loop is gone; nothing is left to close.
            with contextlib.suppress(RuntimeError):
                await client.aclose()

    # -- cache and single flight -----------------------------------------------------------------

    async def _page(self, url: str) -> tuple[FetchedPage, bool]:
        now = time.monotonic()
        error, when = self._failures.get(url, (None, 0.0))
        if error is not None and now - when < self.failure_ttl_s:
            raise FetchError(f"{error} (failed {now - when:.0f} s ago; not retried yet)",
                             kind=error.kind, url=url, hint=error.hint)
        try:
            return await self._page_once(url)
        except FetchError as exc:
            if self.failure_ttl_s > 0:
                if len(self._failures) > 10_000:
                    self._failures = {u: f for u, f in self._failures.items()
                                      if now - f[1] < self.failure_ttl_s}
                self._failures[url] = (exc, time.monotonic())
            raise

    async def _page_once(self, url: str) -> tuple[FetchedPage, bool]:
        if self.cache is not None and self.cache.mode != "off":
            params = {"url": url, "v": PAGE_CACHE_VERSION}
            return await self.cache.get_or_call_hit(
                "page", params, lambda: self._download_page(url),
                encode=FetchedPage.to_json, decode=FetchedPage.from_json,
            )
        # No cache: still one download for concurrent fetches of one URL (a GRPO group).
        future = self._inflight.get(url)
        if future is not None:
            return await asyncio.shield(future), True
        future = asyncio.ensure_future(self._download_page(url))
        self._inflight[url] = future
        future.add_done_callback(lambda _: self._inflight.pop(url, None))
        return await asyncio.shield(future), False

    async def _download_page(self, url: str) -> FetchedPage:
        try:
            final_url, content_type, body = await asyncio.wait_for(
                self._download(url), timeout=self.total_timeout_s
            )
        except asyncio.TimeoutError as exc:
            raise FetchTimeout(
                f"fetching {url!r} took over {self.total_timeout_s:g} s", url=url,
                hint="the site is slow or drips bytes; to wait longer raise --fetch-timeout "
                "(tools.fetch_timeout_s in a recipe)",
            ) from exc
        record(fetch_bytes=len(body))
        sniffed = sniff_content_type(body[:65536], content_type)
        if sniffed == "application/octet-stream":
            raise FetchUnsupportedType(
                f"{url!r} is binary ({content_type or 'no content type'}), not HTML, PDF or text",
                url=url,
            )
        try:
            page = await extract_bounded(
                body, content_type=content_type, url=final_url,
                fast_path_chars=self.fast_path_chars, timeout_s=self.extract_timeout_s,
            )
        except ExtractTimeoutError as exc:
            raise FetchExtractTimeout(str(exc), url=url, hint=exc.hint) from exc
        except ExtractError as exc:
            raise FetchExtractFailed(str(exc), url=url, hint=exc.hint) from exc
        return FetchedPage(final_url, page.title, page.text, page.content_type, len(body))

    # -- the network -----------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        return self._clients.get()

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.timeout,
            follow_redirects=False,  # every hop goes through the guard, below
            trust_env=False,  # a proxy would resolve names itself, behind the guard's back
            transport=self._transport,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    def _limiter(self, host: str) -> RateLimiter:
        limiter = self._domains.get(host)
        if limiter is None:
            limiter = self._domains[host] = RateLimiter(concurrency=self.per_domain)
        return limiter

    async def _download(self, url: str) -> tuple[str, str | None, bytes]:
        """``(final URL, Content-Type, body)`` after following redirects through the guard."""
        current = url
        for _hop in range(self.max_redirects + 1):
            target = self.guard.check_url(current)
            address = await self.guard.resolve(target)
            async with self._limiter(target.host):
                response = await self._send(target, address)
                try:
                    if response.status_code in REDIRECT_STATUSES:
                        location = response.headers.get("location")
                        if not location:
                            raise FetchHTTPStatus(
                                f"{current!r} answered {response.status_code} without a Location",
                                url=url,
                            )
                        current = urljoin(current, location.strip())
                        continue
                    if response.status_code >= 400:
                        raise FetchHTTPStatus(
                            f"{current!r} answered HTTP {response.status_code}", url=url,
                            hint="the page is missing or refused (see the status)",
                        )
                    content_type = response.headers.get("content-type")
                    self._check_type(url, content_type)
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self.max_bytes:
                        raise self._too_large(url, f"it declares {int(declared):,} bytes")
                    body = await self._read_capped(url, response)
                    return current, content_type, body
                finally:
                    await response.aclose()
        raise FetchTooManyRedirects(
            f"{url!r} redirected more than {self.max_redirects} times",
            url=url, hint="a redirect loop, or raise tools.max_redirects in a recipe",
        )

    async def _send(self, target: Target, address: IPAddress) -> httpx.Response:
        """GET ``target`` from ``address`` (the checked one), with the original Host and TLS name."""
        url = httpx.URL(target.url)
        pinned = url.copy_with(host=str(address))
        headers = {
            "Host": url.netloc.decode("ascii"),
            "User-Agent": self.user_agent,
            "Accept": _ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        client = self._client()
        request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
        try:
            return await client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"{target.url!r} timed out ({type(exc).__name__})",
                               url=target.url) from exc
        except httpx.HTTPError as exc:
            raise FetchNetworkError(f"cannot fetch {target.url!r}: {type(exc).__name__}: {exc}",
                                    url=target.url) from exc

    def _check_type(self, url: str, content_type: str | None) -> None:
        mime = (content_type or "").split(";", 1)[0].strip().lower()
        if mime.startswith(_UNREADABLE_PREFIXES) or mime in _UNREADABLE_TYPES:
            raise FetchUnsupportedType(
                f"{url!r} is {mime}, not HTML, PDF or text",
                url=url,
                hint="only HTML, PDF and plain-text pages can be read",
            )

    async def _read_capped(self, url: str, response: httpx.Response) -> bytes:
        try:
            # Decoded by us, the cap counted on decoded bytes as they come: a gzip bomb stops at
            # the cap, and codings that were not asked for (br, zstd) are refused.
            return await read_body(response, self.max_bytes)
        except BodyTooLarge as exc:
            raise self._too_large(url, exc.detail) from exc
        except BodyUnsupportedEncoding as exc:
            raise FetchUnsupportedEncoding(f"{url!r}: {exc}", url=url) from exc
        except BodyError as exc:  # a compressed body that does not decode
            raise FetchNetworkError(f"{url!r}: {exc}", url=url) from exc
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"{url!r} stopped sending ({type(exc).__name__})",
                               url=url) from exc
        except httpx.TransportError as exc:
            raise FetchNetworkError(
                f"{url!r}: the download failed ({type(exc).__name__}: {exc})", url=url) from exc

    def _too_large(self, url: str, what: str) -> FetchError:
        return FetchTooLarge(
            f"{url!r} is larger than the {self.max_bytes:,}-byte cap ({what})",
            url=url,
            hint="to read bigger pages raise --max-page-bytes (tools.max_page_bytes in a recipe)",
        )
