"""Web search providers against real HTTP servers on 127.0.0.1 that speak each API's wire format.

Nothing here leaves the machine: every provider's endpoint points at a loopback stand-in
(``tests/servers/search_providers.py``), and ddgs (which scrapes live sites) gets a fake ``DDGS``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from deepresearcher.errors import (
    ConfigError,
    SearchAuthFailed,
    SearchBadQuery,
    SearchError,
    SearchMalformedReply,
    SearchQuotaExhausted,
    SearchRateLimited,
    SearchServerError,
    SearchTimeout,
    SearchUnreachable,
)
from deepresearcher.tools.base import SearchBackend
from deepresearcher.tools.http import Retry, parse_retry_after, with_retries
from deepresearcher.tools.ratelimit import RateLimiter, TokenBucket
from deepresearcher.tools.web_search import (
    FALLBACK_ERRORS,
    RETRY_ERRORS,
    SEARCH_REPLY_BYTES,
    BraveSearch,
    DuckDuckGoSearch,
    FallbackSearch,
    HTTPSearch,
    SearxngSearch,
    SerperSearch,
    TavilySearch,
    open_web_search,
)
from deepresearcher.types import SearchHit
from servers.search_providers import Fault, SearchProviderServer

HITS = [
    {
        "title": "Paris - Wikipedia",
        "url": "https://en.wikipedia.org/wiki/Paris",
        "snippet": "<strong>Paris</strong> is the capital of France.",
        "score": 0.9,
        "date": "Mar 3, 2024",
    },
    {
        "title": "Paris travel guide",
        "url": "https://example.org/paris",
        "snippet": "Things to do in Paris &amp; around.",
        "score": 0.7,
    },
    {
        "title": "Eiffel Tower",
        "url": "https://example.org/eiffel",
        "snippet": "The tower is 330 m tall.",
        "score": 0.5,
    },
]
KEYS = {
    "serper": "serper-SECRET-0123",
    "tavily": "tvly-SECRET-4567",
    "brave": "BSA-SECRET-89ab",
    "searxng": None,
}
CLASSES: dict[str, type[HTTPSearch]] = {
    "serper": SerperSearch,
    "tavily": TavilySearch,
    "brave": BraveSearch,
    "searxng": SearxngSearch,
}
KEYED = ("serper", "tavily", "brave")
FAST_RETRY = Retry(retries=2, backoff_s=0.01, max_backoff_s=0.05)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real keys or endpoints from the developer's shell, and no proxy in front of loopback."""
    for name in ("SERPER", "TAVILY", "BRAVE"):
        monkeypatch.delenv(f"{name}_API_KEY", raising=False)
    for name in ("SERPER", "TAVILY", "BRAVE", "SEARXNG"):
        monkeypatch.delenv(f"{name}_ENDPOINT", raising=False)
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


def serve(
    provider: str, hits: list[dict[str, Any]] | None = None, **options: Any
) -> SearchProviderServer:
    return SearchProviderServer(
        provider, key=KEYS[provider], hits=HITS if hits is None else hits, **options
    )


@pytest.fixture(params=list(CLASSES))
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(provider: str) -> Iterator[SearchProviderServer]:
    with serve(provider) as srv:
        yield srv


def backend_for(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> HTTPSearch:
    key = KEYS[server.provider]
    cls = CLASSES[server.provider]
    if key is not None:
        assert cls.key_env is not None
        monkeypatch.setenv(cls.key_env, key)
    options.setdefault("retry", FAST_RETRY)
    return cls(endpoint=server.base_url, **options)


def run(backend: SearchBackend, query: str = "capital of France", k: int = 10) -> Any:
    async def go() -> Any:
        try:
            return await backend.search(query, k=k)
        finally:
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()

    return asyncio.run(go())


def fails(backend: SearchBackend, query: str = "capital of France") -> SearchError:
    with pytest.raises(SearchError) as info:
        run(backend, query)
    return info.value


# --------------------------------------------------------------------------- the happy path


def test_every_provider_answers_in_one_hit_schema(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(backend_for(server, monkeypatch), "capital of France", k=2)

    assert server.violations == []
    assert result.query == "capital of France"
    assert [hit.url for hit in result.hits] == [HITS[0]["url"], HITS[1]["url"]]
    first, second = result.hits
    assert isinstance(first, SearchHit)
    assert first.title == "Paris - Wikipedia"
    assert "<strong>" not in first.snippet and "Paris is the capital of France." in first.snippet
    assert second.snippet == "Things to do in Paris & around."
    if server.provider in ("tavily", "searxng"):
        assert first.score == pytest.approx(0.9)
    if server.provider == "serper":
        assert first.snippet.startswith("Mar 3, 2024")


def test_requests_carry_the_fields_each_api_expects(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(backend_for(server, monkeypatch, region="de", language="fr"), "eiffel tower", k=5)

    (request,) = server.requests
    if server.provider == "serper":
        assert request.body == {"q": "eiffel tower", "num": 5, "page": 1, "gl": "de", "hl": "fr"}
        assert request.headers["x-api-key"] == KEYS["serper"]
    elif server.provider == "tavily":
        assert request.body["query"] == "eiffel tower"
        assert request.body["max_results"] == 5
        assert request.body["search_depth"] == "basic"
        assert request.headers["authorization"] == f"Bearer {KEYS['tavily']}"
    elif server.provider == "brave":
        assert request.query == {
            "q": "eiffel tower",
            "count": "5",
            "offset": "0",
            "country": "DE",
            "search_lang": "fr",
        }
    else:
        assert request.query == {
            "q": "eiffel tower",
            "format": "json",
            "pageno": "1",
            "language": "fr-DE",
        }
        assert "authorization" not in request.headers


@pytest.mark.parametrize("provider", ["tavily", "brave"])
def test_k_is_capped_at_the_provider_maximum(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    many = [{**HITS[0], "url": f"https://example.org/{i}"} for i in range(30)]
    server.hits = many
    result = run(backend_for(server, monkeypatch), k=50)
    assert server.violations == []
    assert len(result.hits) == 20


def test_no_results_is_an_empty_result_not_an_error(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(provider, hits=[]) as srv:
        result = run(backend_for(srv, monkeypatch))
    assert result.hits == ()


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("provider", KEYED)
def test_a_missing_key_names_its_variable(provider: str) -> None:
    with pytest.raises(ConfigError) as info:
        CLASSES[provider](endpoint="http://127.0.0.1:9")
    assert f"{provider.upper()}_API_KEY" in str(info.value)


def test_searxng_needs_an_endpoint() -> None:
    with pytest.raises(ConfigError) as info:
        SearxngSearch()
    assert "SEARXNG_ENDPOINT" in (info.value.hint or "")


def test_endpoint_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERPER_API_KEY", KEYS["serper"])
    assert SerperSearch().endpoint == "https://google.serper.dev"
    monkeypatch.setenv("SERPER_ENDPOINT", "http://127.0.0.1:8/")
    assert SerperSearch().endpoint == "http://127.0.0.1:8"
    assert SerperSearch(endpoint="http://127.0.0.1:7").endpoint == "http://127.0.0.1:7"
    with pytest.raises(ConfigError):
        SerperSearch(endpoint="google.serper.dev")


@pytest.mark.parametrize("provider", KEYED)
def test_the_key_never_shows_in_repr(provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = CLASSES[provider]
    assert cls.key_env is not None
    monkeypatch.setenv(cls.key_env, KEYS[provider])
    backend = cls(endpoint="http://127.0.0.1:9")
    assert KEYS[provider] not in repr(backend)
    assert KEYS[provider] not in repr(FallbackSearch([backend]))


# --------------------------------------------------------------------------- faults


def test_a_refused_key_is_an_auth_error_without_retries_or_the_key(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if provider == "searxng":
        pytest.skip("SearXNG has no key")
    with serve(provider) as srv:
        srv.key = "the-key-the-server-expects"
        if provider == "tavily":
            srv.key = "tvly-the-key-the-server-expects"
        error = fails(backend_for(srv, monkeypatch))
    assert isinstance(error, SearchAuthFailed)
    assert len(srv.requests) == 1
    key = KEYS[provider]
    assert key is not None
    assert key not in str(error) and key not in (error.hint or "") and key not in repr(error)
    assert CLASSES[provider].key_env in (error.hint or "")


def test_an_echoed_key_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve("serper") as srv:
        srv.push(
            Fault(400, {"message": f"bad request from key {KEYS['serper']}", "statusCode": 400})
        )
        error = fails(backend_for(srv, monkeypatch))
    assert KEYS["serper"] not in str(error)
    assert "***" in str(error)


def test_an_exhausted_quota_is_not_retried(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    if server.provider == "searxng":
        pytest.skip("a self-hosted instance has no quota")
    server.push(server.quota_exhausted())
    error = fails(backend_for(server, monkeypatch))
    assert isinstance(error, SearchQuotaExhausted)
    assert len(server.requests) == 1


def test_rate_limits_wait_as_asked_then_succeed(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.push(server.rate_limited(retry_after=0.3))
    result = run(backend_for(server, monkeypatch))

    assert len(result.hits) == 3
    first, second = server.requests
    waited = second.at - first.at
    assert 0.28 <= waited < 1.0  # Retry-After (Brave: X-RateLimit-Reset) honored, not more


def test_a_wait_longer_than_allowed_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve("tavily") as srv:
        srv.push(srv.rate_limited(retry_after=120))
        started = time.monotonic()
        error = fails(backend_for(srv, monkeypatch, retry=Retry(retries=3, max_wait_s=5)))
    assert isinstance(error, SearchRateLimited)
    assert error.retry_after == pytest.approx(120)
    assert len(srv.requests) == 1 and time.monotonic() - started < 2


def test_server_errors_are_retried_then_succeed(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.push(server.server_error(500), server.server_error(503))
    result = run(backend_for(server, monkeypatch))
    assert len(result.hits) == 3
    assert len(server.requests) == 3


def test_persistent_server_errors_give_up_with_kind_server(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.push(*[server.server_error(502)] * 5)
    error = fails(backend_for(server, monkeypatch))
    assert isinstance(error, SearchServerError)
    assert error.status == 502
    assert len(server.requests) == 3  # the first try and FAST_RETRY's 2 retries


def test_a_slow_server_is_a_timeout(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.push(Fault.slow(1.5))
    started = time.monotonic()
    error = fails(backend_for(server, monkeypatch, timeout=0.2, retry=Retry(retries=0)))
    assert isinstance(error, SearchTimeout)
    assert time.monotonic() - started < 1.2


def test_a_reply_dripped_slowly_ends_at_the_timeout(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each piece comes within any read timeout; the whole reply would take several seconds.
    server.push(Fault(drip_s=0.05))
    started = time.monotonic()
    error = fails(backend_for(server, monkeypatch, timeout=0.5, retry=Retry(retries=0)))
    assert isinstance(error, SearchTimeout)
    assert time.monotonic() - started < 1.5


def test_broken_json_is_malformed(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.push(Fault.raw('{"organic": [{"title": "cut off'))
    error = fails(backend_for(server, monkeypatch))
    assert isinstance(error, SearchMalformedReply)
    assert len(server.requests) == 1


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_a_bomb_or_an_unasked_coding_is_malformed_and_capped(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch, coding: str
) -> None:
    import gzip
    import tracemalloc

    body = gzip.compress(b'{"organic": [' + b" " * (256 << 20) + b"]}", 1)
    server.push(Fault(200, body if coding == "gzip" else b"\x1b\x00",
                      {"Content-Encoding": coding}))
    tracemalloc.start()
    error = fails(backend_for(server, monkeypatch))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert isinstance(error, SearchMalformedReply)
    assert ("cap" if coding == "gzip" else "not asked for") in str(error)
    assert peak < 3 * SEARCH_REPLY_BYTES
    assert server.requests[-1].headers.get("accept-encoding") == "gzip, deflate"


@pytest.mark.parametrize(
    "body", [["a", "list"], {"organic": "x", "results": "x", "web": {"results": "x"}}]
)
def test_an_unexpected_shape_is_malformed(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch, body: Any
) -> None:
    server.push(Fault(200, body))
    assert isinstance(fails(backend_for(server, monkeypatch)), SearchMalformedReply)


def test_a_closed_port_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the search
    monkeypatch.setenv("SERPER_API_KEY", KEYS["serper"])
    error = fails(SerperSearch(endpoint=f"http://127.0.0.1:{port}", retry=FAST_RETRY))
    assert isinstance(error, SearchUnreachable)


def test_searxng_without_json_output_says_how_to_enable_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with serve("searxng", json_enabled=False) as srv:
        error = fails(backend_for(srv, monkeypatch))
    assert error.kind == "config"
    assert "formats: [html, json]" in (error.hint or "")
    assert "settings.yml" in (error.hint or "")


def test_an_empty_query_is_refused_before_any_request(
    server: SearchProviderServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(fails(backend_for(server, monkeypatch), "   "), SearchBadQuery)
    assert server.requests == []


# --------------------------------------------------------------------------- limits


def test_token_bucket_paces_acquisitions() -> None:
    async def go() -> float:
        bucket = TokenBucket(20)
        started = time.monotonic()
        for _ in range(10):
            await bucket.acquire()
        return time.monotonic() - started

    assert 0.43 <= asyncio.run(go()) < 1.0  # 9 waits of 50 ms after the first token


def test_qps_limits_a_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve("serper") as srv:
        backend = backend_for(srv, monkeypatch, qps=20)

        async def go() -> None:
            await asyncio.gather(*(backend.search(f"q{i}") for i in range(10)))
            await backend.aclose()

        asyncio.run(go())
    stamps = sorted(request.at for request in srv.requests)
    assert len(stamps) == 10
    assert stamps[-1] - stamps[0] >= 0.4


def test_concurrency_limit_caps_requests_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve("brave", latency_s=0.1) as srv:
        backend = backend_for(srv, monkeypatch, concurrency=2)

        async def go() -> None:
            await asyncio.gather(*(backend.search(f"q{i}") for i in range(6)))
            await backend.aclose()

        asyncio.run(go())
    assert len(srv.requests) == 6
    assert srv.max_in_flight == 2


def test_rate_limiter_caps_concurrency_without_a_server() -> None:
    limiter = RateLimiter(concurrency=3)
    state = {"now": 0, "max": 0}

    async def job() -> None:
        async with limiter:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            await asyncio.sleep(0.01)
            state["now"] -= 1

    async def go() -> None:
        await asyncio.gather(*(job() for _ in range(10)))

    asyncio.run(go())
    asyncio.run(go())  # the same limiter on a second event loop
    assert state["max"] == 3


def test_one_backend_serves_several_event_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve("tavily") as srv:
        backend = backend_for(srv, monkeypatch, qps=100, concurrency=2)
        assert len(asyncio.run(backend.search("a")).hits) == 3
        assert len(asyncio.run(backend.search("b")).hits) == 3


# --------------------------------------------------------------------------- retries helper


def test_retry_after_parses_seconds_and_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert (
        50
        < (
            parse_retry_after(
                time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
            )
            or 0
        )
        <= 60
    )


def test_backoff_is_jittered_bounded_and_exponential() -> None:
    retry = Retry(backoff_s=0.1, max_backoff_s=0.5)
    for attempt, high in [(0, 0.1), (1, 0.2), (2, 0.4), (5, 0.5)]:
        delays = [retry.delay(attempt) for _ in range(50)]
        assert all(high / 2 <= d <= high for d in delays)
        assert len(set(delays)) > 1
    assert retry.delay(3, retry_after=1.5) == 1.5


def test_with_retries_stops_on_failures_not_worth_retrying() -> None:
    calls = []

    async def attempt() -> str:
        calls.append(1)
        raise ValueError("nope")

    with pytest.raises(ValueError):
        asyncio.run(
            with_retries(attempt, Retry(retries=5, backoff_s=0), should_retry=lambda exc: False)
        )
    assert len(calls) == 1


# --------------------------------------------------------------------------- fallback


def test_fallback_moves_on_when_quota_runs_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve("serper") as serper, serve("searxng", hits=HITS[2:]) as searxng:
        serper.push(serper.quota_exhausted())
        chain = FallbackSearch(
            [backend_for(serper, monkeypatch), backend_for(searxng, monkeypatch)]
        )
        result = run(chain)
    assert chain.name == "serper,searxng"
    assert [hit.url for hit in result.hits] == [HITS[2]["url"]]


def test_fallback_fails_loudly_on_a_refused_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve("serper") as serper, serve("searxng") as searxng:
        serper.key = "another-key"
        chain = FallbackSearch(
            [backend_for(serper, monkeypatch), backend_for(searxng, monkeypatch)]
        )
        error = fails(chain)
    assert isinstance(error, SearchAuthFailed) and error.provider == "serper"
    assert searxng.requests == []


def test_fallback_reports_every_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve("tavily") as tavily, serve("searxng") as searxng:
        tavily.push(*[tavily.server_error()] * 3)
        searxng.push(searxng.rate_limited(retry_after=60))
        chain = FallbackSearch(
            [
                backend_for(tavily, monkeypatch),
                backend_for(searxng, monkeypatch, retry=Retry(max_wait_s=1)),
            ]
        )
        error = fails(chain)
    assert isinstance(error, SearchRateLimited)
    assert "tavily (server)" in str(error) and "searxng (rate_limited)" in str(error)


# --------------------------------------------------------------------------- ddgs


class FakeDDGS:
    """Stands in for ``ddgs.DDGS`` (which scrapes live sites): records calls, returns rows."""

    def __init__(self, rows: list[dict[str, Any]] | Exception) -> None:
        self.rows = rows
        self.calls: list[dict[str, Any]] = []

    def text(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append({"query": query, **kwargs})
        if isinstance(self.rows, Exception):
            raise self.rows
        return self.rows


def test_ddgs_adapter_maps_rows_and_options() -> None:
    fake = FakeDDGS([{"title": h["title"], "href": h["url"], "body": h["snippet"]} for h in HITS])
    backend = DuckDuckGoSearch(region="de", language="de", ddgs_factory=lambda: fake, qps=None)
    result = run(backend, "Eiffelturm", k=2)
    assert [hit.url for hit in result.hits] == [HITS[0]["url"], HITS[1]["url"]]
    assert result.hits[0].snippet == "Paris is the capital of France."
    assert fake.calls == [
        {
            "query": "Eiffelturm",
            "region": "de-de",
            "safesearch": "moderate",
            "max_results": 2,
            "backend": "auto",
        }
    ]


def test_ddgs_errors_are_typed() -> None:
    ddgs_exceptions = pytest.importorskip("ddgs.exceptions")
    no_results = DuckDuckGoSearch(
        qps=None, ddgs_factory=lambda: FakeDDGS(ddgs_exceptions.DDGSException("No results found."))
    )
    assert run(no_results).hits == ()
    limited = DuckDuckGoSearch(
        qps=None,
        retry=Retry(retries=0),
        ddgs_factory=lambda: FakeDDGS(ddgs_exceptions.RatelimitException("202 Ratelimit")),
    )
    assert isinstance(fails(limited), SearchRateLimited)


def test_ddgs_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ddgs", None)  # makes `import ddgs` fail
    with pytest.raises(ConfigError) as info:
        DuckDuckGoSearch()
    assert "pip install ddgs" in (info.value.hint or "")


# --------------------------------------------------------------------------- wiring


def test_open_web_search_and_the_agent_toolbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAVE_API_KEY", KEYS["brave"])
    assert isinstance(open_web_search("brave", region="us"), BraveSearch)
    with pytest.raises(ConfigError):
        open_web_search("bing")
    from deepresearcher.agent.build import ToolSettings, build_toolbox
    from deepresearcher.tools.web_fetch import WebFetcher

    toolbox = build_toolbox(ToolSettings(search="brave"))
    assert isinstance(toolbox.search_backend, BraveSearch)
    assert isinstance(toolbox.fetcher, WebFetcher)
    with pytest.raises(ConfigError):
        build_toolbox(ToolSettings(search="brave,local"))


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_ENDPOINT")) and "proxy" not in k.lower()
    }
    return subprocess.run(
        [sys.executable, "-c", "from deepresearcher.cli.main import main; main()", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_searches_a_web_provider_and_a_fallback_chain() -> None:
    with serve("serper") as serper, serve("searxng", hits=HITS[1:]) as searxng:
        done = _cli(
            "search",
            "capital of France",
            "--search",
            "serper",
            "--json",
            "--k",
            "2",
            env={"SERPER_API_KEY": KEYS["serper"] or "", "SERPER_ENDPOINT": serper.base_url},
        )
        assert done.returncode == 0, done.stderr
        assert [hit["url"] for hit in json.loads(done.stdout)] == [h["url"] for h in HITS[:2]]

        serper.push(serper.quota_exhausted())
        done = _cli(
            "search",
            "capital of France",
            "--search",
            "serper,searxng",
            "--json",
            env={
                "SERPER_API_KEY": KEYS["serper"] or "",
                "SERPER_ENDPOINT": serper.base_url,
                "SEARXNG_ENDPOINT": searxng.base_url,
            },
        )
        assert done.returncode == 0, done.stderr
        assert [hit["url"] for hit in json.loads(done.stdout)] == [h["url"] for h in HITS[1:]]

        done = _cli(
            "search",
            "capital of France",
            "--search",
            "searxng",
            "--endpoint",
            searxng.base_url,
            env={},
        )
        assert done.returncode == 0, done.stderr
        assert "Paris travel guide" in done.stdout
    assert serper.violations == [] and searxng.violations == []


def test_cli_errors_are_one_line_with_a_hint_and_no_key() -> None:
    done = _cli("search", "q", "--search", "tavily", env={})
    assert done.returncode == 2
    assert "TAVILY_API_KEY" in done.stderr

    with serve("brave") as brave:
        brave.key = "a-different-key"
        done = _cli(
            "search",
            "q",
            "--search",
            "brave",
            "--endpoint",
            brave.base_url,
            env={"BRAVE_API_KEY": KEYS["brave"] or ""},
        )
    assert done.returncode == 2
    assert "error:" in done.stderr and "hint:" in done.stderr
    assert KEYS["brave"] not in done.stderr and KEYS["brave"] not in done.stdout


def test_retries_and_fallbacks_catch_search_error_classes() -> None:
    assert all(issubclass(cls, SearchError) for cls in (*RETRY_ERRORS, *FALLBACK_ERRORS))
    assert SearchQuotaExhausted in FALLBACK_ERRORS and SearchQuotaExhausted not in RETRY_ERRORS
    assert SearchAuthFailed not in FALLBACK_ERRORS and SearchMalformedReply not in FALLBACK_ERRORS
