"""Web search backends: Serper, Tavily, Brave, SearXNG and DuckDuckGo (``ddgs``), and a fallback chain.

Every provider is a :class:`~deepresearcher.tools.base.SearchBackend` returning the same
:class:`~deepresearcher.types.SearchHit` schema. API keys are read from the environment only
(``SERPER_API_KEY``, ``TAVILY_API_KEY``, ``BRAVE_API_KEY``); endpoints come from the constructor,
then ``<PROVIDER>_ENDPOINT``, then the public default. Failures are subclasses of
:class:`~deepresearcher.errors.SearchError` (``SearchAuthFailed``, ``SearchQuotaExhausted``,
``SearchRateLimited``, ...) naming the provider; transient ones are retried with jittered backoff that honors ``Retry-After``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import html
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from deepresearcher.errors import (
    ConfigError,
    SearchAuthFailed,
    SearchBadQuery,
    SearchError,
    SearchHTTPError,
    SearchMalformedReply,
    SearchMisconfigured,
    SearchQuotaExhausted,
    SearchRateLimited,
    SearchServerError,
    SearchTimeout,
    SearchUnreachable,
)
from deepresearcher.tools.base import SearchBackend
from deepresearcher.tools.http import BodyError, Retry, retry_after, send_bounded, with_retries
from deepresearcher.tools.ratelimit import RateLimiter
from deepresearcher.types import SearchHit, SearchResult

__all__ = [
    "FALLBACK_ERRORS",
    "RETRY_ERRORS",
    "WEB_SEARCH_PROVIDERS",
    "BraveSearch",
    "DuckDuckGoSearch",
    "FallbackSearch",
    "HTTPSearch",
    "SearxngSearch",
    "SerperSearch",
    "TavilySearch",
    "open_web_search",
]

log = logging.getLogger(__name__)

# Failures worth another try against the same provider, and those worth trying the next provider of
# a fallback chain. An auth failure is neither: it needs the user, and hiding it would cost money.
# The most bytes (decoded) read from a search API's reply: result pages are tens of KB.
SEARCH_REPLY_BYTES = 4 * 1024 * 1024
RETRY_ERRORS: tuple[type[SearchError], ...] = (
    SearchRateLimited, SearchServerError, SearchTimeout, SearchUnreachable,
)
FALLBACK_ERRORS: tuple[type[SearchError], ...] = (SearchQuotaExhausted, *RETRY_ERRORS)

# How providers word "your credits/plan are used up" (in a 4xx body; some use 403 or 429 for it).
_QUOTA_WORDS = re.compile(
    r"credit|quota|usage limit|plan limit|exceeds your plan|insufficient|billing|payment",
    re.IGNORECASE,
)
_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")

FALLBACK_HINT = "or add a fallback provider, e.g. --search serper,searxng"


def clean_text(text: Any) -> str:
    """Plain text from a provider's string: tags (Brave's ``<strong>``) and entities removed."""
    if not isinstance(text, str):
        return ""
    return _SPACES.sub(" ", html.unescape(_TAGS.sub("", text))).strip()


def error_message(response: httpx.Response) -> str:
    """The provider's error message: Serper ``{"message"}``, Tavily ``{"detail": {"error"}}``,
    Brave ``{"error": {"detail", "code"}}``, or the start of the raw body."""
    try:
        data = response.json()
    except ValueError:
        text = clean_text(response.text[:300])
        return text or response.reason_phrase
    if isinstance(data, dict):
        for key in ("message", "detail", "error"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict):
                for inner in ("error", "detail", "message"):
                    if isinstance(value.get(inner), str):
                        code = value.get("code")
                        return f"{value[inner]} ({code})" if isinstance(code, str) else value[inner]
    return clean_text(response.text[:300]) or response.reason_phrase


@dataclass(frozen=True)
class _Request:
    """One provider request, relative to the endpoint."""

    method: str
    path: str
    params: dict[str, str | int] | None = None
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class HTTPSearch(abc.ABC):
    """What the HTTP providers share: endpoint and key, the client, limits, retries, error mapping.

    A subclass says how to build its request (``_build``) and read its reply (``_parse``), and may
    refine how a failed reply is classified (``_failure``).
    """

    name: str = ""  # an instance attribute for SearchBackend; set per class
    key_env: ClassVar[str | None] = None
    endpoint_env: ClassVar[str] = ""
    default_endpoint: ClassVar[str | None] = None
    max_k: ClassVar[int] = 100
    key_url: ClassVar[str] = ""

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        language: str | None = None,
        timeout: float = 15.0,
        retry: Retry | None = None,
        qps: float | None = None,
        concurrency: int | None = 8,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Configure the provider; nothing is sent until the first search.

        ``region`` is a country code (``us``, ``de``) and ``language`` a language code (``en``).
        ``timeout`` bounds each request; ``retry`` the retries of transient failures; ``qps`` and
        ``concurrency`` limit the request rate and the requests in flight (None: no limit).
        Raises :class:`ConfigError` when the key or the endpoint is missing.
        """
        self.endpoint = self._resolve_endpoint(endpoint)
        self.region = region or None
        self.language = language or None
        self.timeout = timeout
        self.retry = retry if retry is not None else Retry()
        self.limiter = RateLimiter(qps=qps, concurrency=concurrency)
        self._transport = transport
        self._key = self._read_key()
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        # Spelled out so that no attribute (the key above all) leaks through a default repr.
        return (
            f"{type(self).__name__}(endpoint={self.endpoint!r}, region={self.region!r}, "
            f"language={self.language!r})"
        )

    # -- configuration ---------------------------------------------------------------------------

    def _resolve_endpoint(self, endpoint: str | None) -> str:
        url = endpoint or os.environ.get(self.endpoint_env) or self.default_endpoint
        if not url:
            raise ConfigError(
                f"{self.name} needs an endpoint",
                hint=f"set {self.endpoint_env} (e.g. http://localhost:8888) or pass --endpoint",
            )
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{self.name} endpoint {url!r} is not an http(s) URL",
                hint=f"check --endpoint or {self.endpoint_env}",
            )
        return url.rstrip("/")

    def _read_key(self) -> str | None:
        if self.key_env is None:
            return None
        key = os.environ.get(self.key_env, "").strip()
        if not key:
            raise ConfigError(
                f"{self.name} needs an API key in the environment variable {self.key_env}",
                hint=f"export {self.key_env}=... (get one at {self.key_url})",
            )
        return key

    # -- public API ------------------------------------------------------------------------------

    async def search(self, query: str, *, k: int = 10) -> SearchResult:
        """The top ``k`` web hits for ``query`` (at most the provider's maximum per request)."""
        query = query.strip()
        if not query:
            raise SearchBadQuery(
                "empty query", provider=self.name, hint="search for some words"
            )
        k = max(1, min(k, self.max_k))
        request = self._build(query, k)
        started = time.monotonic()
        data = await with_retries(
            lambda: self._attempt(request),
            self.retry,
            should_retry=lambda exc: isinstance(exc, RETRY_ERRORS),
            wait_asked=lambda exc: exc.retry_after if isinstance(exc, SearchError) else None,
            label=f"{self.name} search",
        )
        try:
            hits = self._parse(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._malformed(f"unexpected reply shape ({type(exc).__name__}: {exc})") from exc
        log.debug(
            "%s: %d hits for %r in %.2f s", self.name, len(hits), query, time.monotonic() - started
        )
        return SearchResult(query=query, hits=tuple(hits[:k]))

    async def aclose(self) -> None:
        """Close the connection pool."""
        client, self._client = self._client, None
        if client is not None:
            # RuntimeError: its event loop is gone; nothing is left to close.
            with contextlib.suppress(RuntimeError):
                await client.aclose()

    async def __aenter__(self) -> HTTPSearch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- provider specifics ----------------------------------------------------------------------

    @abc.abstractmethod
    def _build(self, query: str, k: int) -> _Request:
        """The provider's HTTP request for ``query``."""

    @abc.abstractmethod
    def _parse(self, data: Any) -> list[SearchHit]:
        """The hits of a decoded 2xx reply (raise on an unexpected shape)."""

    def _failure(self, response: httpx.Response) -> SearchError:
        """The typed error for a reply that is not a 2xx."""
        status = response.status_code
        message = self._redact(error_message(response))
        what = f"{self.name} answered {status}: {message}"
        if 400 <= status < 500 and (status in (402, 432, 433) or _QUOTA_WORDS.search(message)):
            return self._error(
                SearchQuotaExhausted,
                what,
                response,
                hint=f"the {self.name} plan is used up; top it up {FALLBACK_HINT}",
            )
        if status in (401, 403):
            hint = (
                f"the key in ${self.key_env} was refused; check it at {self.key_url}"
                if self.key_env
                else f"check that {self.endpoint} allows API access"
            )
            return self._error(SearchAuthFailed, what, response, hint=hint)
        if status == 429:
            return self._error(
                SearchRateLimited,
                what,
                response,
                wait=retry_after(response.headers),
                hint=f"lower tools.search_qps or tools.search_concurrency, {FALLBACK_HINT}",
            )
        if status >= 500:
            return self._error(
                SearchServerError,
                what,
                response,
                wait=retry_after(response.headers),
                hint=f"{self.name} is having trouble; try again later {FALLBACK_HINT}",
            )
        if status == 408:
            return self._error(SearchTimeout, what, response)
        return self._error(
            SearchHTTPError,
            what,
            response,
            hint=f"check the query and the options (region, language) and "
            f"that {self.endpoint} is the {self.name} API",
        )

    # -- plumbing --------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        """A client for the running event loop (a pool cannot be shared across loops)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            from deepresearcher import __version__

            self._client_loop = loop
            # The key travels per request, never in the client's default headers.
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                transport=self._transport,
                headers={"User-Agent": f"deepresearcher/{__version__}"},
            )
        return self._client

    async def _attempt(self, request: _Request) -> Any:
        """One request: the parsed JSON of a 2xx reply, or a typed error."""
        client = self._http()
        url = f"{self.endpoint}{request.path}"
        async with self.limiter:
            try:
                # The timeout bounds the whole reply: a server dripping bytes ends here too.
                response = await asyncio.wait_for(send_bounded(client, client.build_request(
                    request.method,
                    url,
                    params=request.params,
                    json=request.json,
                    headers=request.headers,
                ), SEARCH_REPLY_BYTES), self.timeout)
            except BodyError as exc:
                raise self._malformed(str(exc)) from exc
            except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
                raise SearchTimeout(
                    f"{self.name}: no reply from {url} within {self.timeout:g} s",
                    provider=self.name,
                    hint=f"raise tools.search_timeout_s, or check the network {FALLBACK_HINT}",
                ) from exc
            except httpx.TransportError as exc:
                raise SearchUnreachable(
                    self._redact(f"{self.name}: cannot reach {url}: {exc or type(exc).__name__}"),
                    provider=self.name,
                    hint=f"check the network and the endpoint ({self.endpoint_env})",
                ) from exc
        if not 200 <= response.status_code < 300:
            raise self._failure(response)
        try:
            return response.json()
        except ValueError as exc:
            raise self._malformed(f"not JSON: {response.text[:120]!r}") from exc

    def _redact(self, text: str) -> str:
        """``text`` with the API key blanked out (servers sometimes echo what they were sent)."""
        if self._key and self._key in text:
            text = text.replace(self._key, "***")
        return text

    def _error(
        self,
        error: type[SearchError],
        message: str,
        response: httpx.Response,
        *,
        wait: float | None = None,
        hint: str | None = None,
    ) -> SearchError:
        return error(
            self._redact(message),
            provider=self.name,
            status=response.status_code,
            retry_after=wait,
            hint=hint,
        )

    def _malformed(self, why: str) -> SearchError:
        return SearchMalformedReply(
            self._redact(f"malformed reply from {self.name} at {self.endpoint}: {why}"),
            provider=self.name,
            hint=f"is {self.endpoint} the {self.name} API? check {self.endpoint_env}",
        )


def _items(data: Any, *path: str) -> list[Mapping[str, Any]]:
    """The list of result objects at ``path`` in a reply; a missing list means no results."""
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    node: Any = data
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return []
    if not isinstance(node, list):
        raise TypeError(f"{'.'.join(path)} is a {type(node).__name__}, not a list")
    return [item for item in node if isinstance(item, dict)]


def _score(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class SerperSearch(HTTPSearch):
    """Google results through Serper (the paper's provider): ``POST /search``, ``X-API-KEY``."""

    name = "serper"
    key_env = "SERPER_API_KEY"
    endpoint_env = "SERPER_ENDPOINT"
    default_endpoint = "https://google.serper.dev"
    max_k = 100
    key_url = "https://serper.dev"

    def _build(self, query: str, k: int) -> _Request:
        body: dict[str, Any] = {"q": query, "num": k, "page": 1}
        if self.region:
            body["gl"] = self.region.lower()
        if self.language:
            body["hl"] = self.language
        assert self._key is not None
        return _Request(
            "POST",
            "/search",
            json=body,
            headers={"X-API-KEY": self._key, "Content-Type": "application/json"},
        )

    def _parse(self, data: Any) -> list[SearchHit]:
        hits = []
        for item in _items(data, "organic"):
            snippet = clean_text(item.get("snippet"))
            date = clean_text(item.get("date"))
            if date:
                snippet = f"{date} — {snippet}" if snippet else date
            if item.get("link"):
                hits.append(SearchHit(clean_text(item.get("title")), str(item["link"]), snippet))
        return hits


class TavilySearch(HTTPSearch):
    """Tavily's search API: ``POST /search`` with ``Authorization: Bearer tvly-…``; at most 20 hits.

    ``region`` is passed as Tavily's ``country``, which takes a country *name* (``united states``);
    Tavily has no language option.
    """

    name = "tavily"
    key_env = "TAVILY_API_KEY"
    endpoint_env = "TAVILY_ENDPOINT"
    default_endpoint = "https://api.tavily.com"
    max_k = 20
    key_url = "https://app.tavily.com"

    def __init__(
        self, *, search_depth: str = "basic", topic: str = "general", **options: Any
    ) -> None:
        super().__init__(**options)
        self.search_depth = search_depth
        self.topic = topic

    def _build(self, query: str, k: int) -> _Request:
        body: dict[str, Any] = {
            "query": query,
            "search_depth": self.search_depth,
            "topic": self.topic,
            "max_results": k,
            "include_answer": False,
            "include_raw_content": False,
        }
        if self.region:
            body["country"] = self.region
        return _Request(
            "POST",
            "/search",
            json=body,
            headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"},
        )

    def _parse(self, data: Any) -> list[SearchHit]:
        return [
            SearchHit(
                clean_text(item.get("title")),
                str(item["url"]),
                clean_text(item.get("content")),
                _score(item.get("score")),
            )
            for item in _items(data, "results")
            if item.get("url")
        ]


class BraveSearch(HTTPSearch):
    """Brave Search API: ``GET /res/v1/web/search`` with ``X-Subscription-Token``; at most 20 hits."""

    name = "brave"
    key_env = "BRAVE_API_KEY"
    endpoint_env = "BRAVE_ENDPOINT"
    default_endpoint = "https://api.search.brave.com"
    max_k = 20
    key_url = "https://api-dashboard.search.brave.com"

    def _build(self, query: str, k: int) -> _Request:
        params: dict[str, str | int] = {"q": query, "count": k, "offset": 0}
        if self.region:
            params["country"] = self.region.upper()
        if self.language:
            params["search_lang"] = self.language.lower()
        assert self._key is not None
        return _Request(
            "GET",
            "/res/v1/web/search",
            params=params,
            headers={"X-Subscription-Token": self._key, "Accept": "application/json"},
        )

    def _parse(self, data: Any) -> list[SearchHit]:
        hits = []
        for item in _items(data, "web", "results"):
            snippet = clean_text(item.get("description"))
            extra = item.get("extra_snippets")
            if not snippet and isinstance(extra, list) and extra:
                snippet = clean_text(extra[0])
            if item.get("url"):
                hits.append(SearchHit(clean_text(item.get("title")), str(item["url"]), snippet))
        return hits

    def _failure(self, response: httpx.Response) -> SearchError:
        # Brave says what it thinks of the token in an error code, with 401, 403 or 422.
        message = error_message(response)
        if "SUBSCRIPTION_TOKEN_INVALID" in message or "TOKEN_INVALID" in message:
            return self._error(
                SearchAuthFailed,
                f"brave answered {response.status_code}: {message}",
                response,
                hint=f"the key in ${self.key_env} was refused; check it at {self.key_url}",
            )
        if response.status_code == 429:
            # X-RateLimit-Remaining / -Reset list one value per window: per second, then per month.
            remaining = _header_numbers(response.headers.get("x-ratelimit-remaining"))
            reset = _header_numbers(response.headers.get("x-ratelimit-reset"))
            if len(remaining) > 1 and remaining[-1] <= 0:
                return self._error(
                    SearchQuotaExhausted,
                    f"brave answered 429: monthly quota used up: {message}",
                    response,
                    hint=f"the Brave plan is used up; wait for the next month {FALLBACK_HINT}",
                )
            wait = retry_after(response.headers)
            if wait is None and reset:
                wait = reset[0]
            return self._error(
                SearchRateLimited,
                f"brave answered 429: {message}",
                response,
                wait=wait,
                hint=f"lower tools.search_qps, {FALLBACK_HINT}",
            )
        return super()._failure(response)


def _header_numbers(value: str | None) -> list[float]:
    """``"1, 15000"`` -> ``[1.0, 15000.0]``; unparsable parts are dropped."""
    numbers = []
    for part in (value or "").split(","):
        try:
            numbers.append(float(part.strip()))
        except ValueError:
            continue
    return numbers


class SearxngSearch(HTTPSearch):
    """A self-hosted SearXNG instance: ``GET /search?format=json``; no key.

    The instance must allow JSON output (``search: formats: [html, json]`` in its settings.yml).
    ``engines`` and ``categories`` (comma-separated) narrow what it asks.
    """

    name = "searxng"
    key_env = None
    endpoint_env = "SEARXNG_ENDPOINT"
    default_endpoint = None
    max_k = 100

    def __init__(
        self, *, engines: str | None = None, categories: str | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        self.engines = engines
        self.categories = categories

    def _build(self, query: str, k: int) -> _Request:
        params: dict[str, str | int] = {"q": query, "format": "json", "pageno": 1}
        if self.language:
            params["language"] = (
                f"{self.language}-{self.region.upper()}" if self.region else self.language
            )
        if self.engines:
            params["engines"] = self.engines
        if self.categories:
            params["categories"] = self.categories
        return _Request("GET", "/search", params=params, headers={"Accept": "application/json"})

    def _parse(self, data: Any) -> list[SearchHit]:
        return [
            SearchHit(
                clean_text(item.get("title")),
                str(item["url"]),
                clean_text(item.get("content")),
                _score(item.get("score")),
            )
            for item in _items(data, "results")
            if item.get("url")
        ]

    def _failure(self, response: httpx.Response) -> SearchError:
        if response.status_code == 403:
            return self._error(
                SearchMisconfigured,
                f"SearXNG at {self.endpoint} refused format=json (403): its JSON output is "
                "disabled",
                response,
                hint="enable it in the instance's settings.yml under `search:` with "
                "`formats: [html, json]`, then restart SearXNG",
            )
        return super()._failure(response)


class DuckDuckGoSearch:
    """DuckDuckGo and friends through the ``ddgs`` package (scraping: fine for interactive use,
    rate-limited under load). Needs ``pip install ddgs``; imported on first construction.

    ``ddgs_factory`` builds the ``DDGS`` object (default: ``ddgs.DDGS``); tests inject a fake.
    """

    name = "ddgs"

    def __init__(
        self,
        *,
        region: str | None = None,
        language: str | None = None,
        safesearch: str = "moderate",
        backend: str = "auto",
        timeout: float = 15.0,
        retry: Retry | None = None,
        qps: float | None = 1.0,
        concurrency: int | None = 2,
        ddgs_factory: Callable[[], Any] | None = None,
    ) -> None:
        if ddgs_factory is None:
            try:
                from ddgs import DDGS
            except ImportError as exc:
                raise ConfigError(
                    "the ddgs search provider needs the ddgs package, which is not installed",
                    hint="pip install ddgs (or pip install 'deepresearcher[web]')",
                ) from exc
            ddgs_factory = lambda: DDGS(timeout=int(max(1, timeout)))  # noqa: E731
        self._factory = ddgs_factory
        self.region = region
        self.language = language
        self.safesearch = safesearch
        self.backend = backend
        self.timeout = timeout
        self.retry = retry if retry is not None else Retry(retries=1, backoff_s=1.0)
        self.limiter = RateLimiter(qps=qps, concurrency=concurrency)

    def __repr__(self) -> str:
        return f"DuckDuckGoSearch(region={self.ddgs_region!r}, safesearch={self.safesearch!r})"

    @property
    def ddgs_region(self) -> str:
        """The region in ddgs' ``cc-ll`` form (``us-en``); ``wt-wt`` means no region."""
        if not self.region:
            return "wt-wt"
        if "-" in self.region:
            return self.region.lower()
        return f"{self.region.lower()}-{(self.language or 'en').lower()}"

    async def search(self, query: str, *, k: int = 10) -> SearchResult:
        """The top ``k`` hits for ``query``."""
        query = query.strip()
        if not query:
            raise SearchBadQuery("empty query", provider=self.name)
        rows = await with_retries(
            lambda: self._attempt(query, k),
            self.retry,
            should_retry=lambda exc: isinstance(exc, RETRY_ERRORS),
            label="ddgs search",
        )
        try:
            hits = [
                SearchHit(
                    clean_text(row.get("title")), str(row["href"]), clean_text(row.get("body"))
                )
                for row in rows
                if isinstance(row, dict) and row.get("href")
            ]
        except (KeyError, TypeError, AttributeError) as exc:
            raise SearchMalformedReply(
                f"malformed ddgs results: {exc!r}", provider=self.name
            ) from exc
        return SearchResult(query=query, hits=tuple(hits[:k]))

    async def _attempt(self, query: str, k: int) -> list[Any]:
        def run() -> Any:
            return self._factory().text(
                query,
                region=self.ddgs_region,
                safesearch=self.safesearch,
                max_results=k,
                backend=self.backend,
            )

        async with self.limiter:
            try:
                rows = await asyncio.wait_for(asyncio.to_thread(run), self.timeout)
            except asyncio.TimeoutError as exc:
                raise SearchTimeout(
                    f"ddgs: no results within {self.timeout:g} s",
                    provider=self.name,
                ) from exc
            except Exception as exc:
                error = _ddgs_error(exc)
                if error is None:
                    return []
                raise error from exc
        if not isinstance(rows, list):
            raise SearchMalformedReply(
                f"malformed ddgs results: a {type(rows).__name__}, not a list",
                provider=self.name,
            )
        return rows


def _ddgs_error(exc: Exception) -> SearchError | None:
    """The typed error for an exception from ``ddgs`` (None: it only meant "no results")."""
    error = {"RatelimitException": SearchRateLimited, "TimeoutException": SearchTimeout}.get(
        type(exc).__name__
    )
    if error is None and "no results" in str(exc).lower():
        return None
    return (error or SearchUnreachable)(
        f"ddgs failed: {exc or type(exc).__name__}",
        provider="ddgs",
        hint="ddgs scrapes search sites and gets blocked under load; slow down, or use an API "
        "provider (serper, tavily, brave, searxng)",
    )


class FallbackSearch:
    """Tries providers in order: on a failure of a class in ``fall_through`` (quota, rate limits,
    server trouble, timeouts, unreachable by default) the next one answers; other failures (a
    refused key above all) are raised at once."""

    def __init__(
        self,
        backends: Sequence[SearchBackend],
        *,
        fall_through: tuple[type[SearchError], ...] = FALLBACK_ERRORS,
    ) -> None:
        if not backends:
            raise ConfigError("a fallback chain needs at least one search provider")
        self.backends = tuple(backends)
        self.fall_through = fall_through
        self.name = ",".join(backend.name for backend in self.backends)

    def __repr__(self) -> str:
        return f"FallbackSearch({list(self.backends)!r})"

    async def search(self, query: str, *, k: int = 10) -> SearchResult:
        """The hits of the first provider that answers."""
        failures: list[str] = []
        last: SearchError | None = None
        for backend in self.backends:
            try:
                result = await backend.search(query, k=k)
            except self.fall_through as exc:
                failures.append(f"{backend.name} ({exc.kind}): {exc}")
                log.warning("%s failed (%s); falling back", backend.name, exc.kind)
                last = exc
                continue
            if failures:
                log.info("%s answered after %d failed provider(s)", backend.name, len(failures))
            return result
        assert last is not None
        raise SearchError(
            f"every search provider failed: {'; '.join(failures)}",
            kind=last.kind,
            provider=self.name,
            hint=last.hint,
        ) from last

    async def aclose(self) -> None:
        """Close every provider's connection pool."""
        for backend in self.backends:
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()


# name -> class, for configs and the CLI.
_PROVIDERS: dict[str, type[HTTPSearch] | type[DuckDuckGoSearch]] = {
    "serper": SerperSearch,
    "tavily": TavilySearch,
    "brave": BraveSearch,
    "searxng": SearxngSearch,
    "ddgs": DuckDuckGoSearch,
}
WEB_SEARCH_PROVIDERS = tuple(_PROVIDERS)


def open_web_search(name: str, *, endpoint: str | None = None, **options: Any) -> SearchBackend:
    """The web search provider called ``name`` (``serper``, ``tavily``, ``brave``, ``searxng``,
    ``ddgs``), configured with ``options`` (region, language, timeout, qps, concurrency, ...)."""
    cls = _PROVIDERS.get(name)
    if cls is None:
        raise ConfigError(
            f"unknown web search provider {name!r}",
            hint=f"choose one of: {', '.join(WEB_SEARCH_PROVIDERS)}",
        )
    if cls is DuckDuckGoSearch:
        if endpoint:
            raise ConfigError("ddgs takes no endpoint", hint="drop --endpoint")
        return DuckDuckGoSearch(**options)
    assert issubclass(cls, HTTPSearch)
    return cls(endpoint=endpoint, **options)
