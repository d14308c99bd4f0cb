"""Builds policies and toolboxes from plain settings (what the CLI and configs name)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from deepresearcher.agent.toolbox import Toolbox
from deepresearcher.errors import ConfigError

if TYPE_CHECKING:
    from deepresearcher.tools.cache import ToolCache

SEARCH_BACKENDS = ("local",)
READERS = ("extractive", "llm")
DEFAULT_MODEL = "GAIR/DeepResearcher-7b"


@dataclass(frozen=True)
class ToolSettings:
    """What the tools are: a local index, local pages or a world directory (``search="local"``), or
    a web search provider (``serper``, ``tavily``, ``brave``, ``searxng``, ``ddgs``, or a fallback
    chain ``"serper,searxng"``) browsed with the web fetcher; the shared cache; the reader.

    Secrets are never settings: API keys come from the environment variables named here.
    """

    search: str = "local"
    index: Path | None = None
    pages: Path | None = None
    world: Path | None = None
    k: int = 10
    chunk_chars: int = 8000
    concurrency: int = 16
    # web search
    endpoint: str | None = None
    region: str | None = None
    language: str | None = None
    # requests per second and in flight to the web search provider, per process (None: the
    # provider's defaults: no rate cap, 8 in flight; ddgs 1/s, 2 in flight)
    search_qps: float | None = None
    search_concurrency: int | None = None
    # seconds for one request to the web search provider (None: the provider's default, 15 s)
    search_timeout_s: float | None = None
    # the shared tool cache (search results, pages, reader outputs); None: no cache
    cache: Path | None = None
    cache_mode: str = "read-write"
    # the web fetcher
    allow_hosts: tuple[str, ...] = ()
    allow_networks: tuple[str, ...] = ()
    allow_private: bool = False
    max_page_bytes: int = 8 * 1024 * 1024
    fetch_timeout_s: float = 30.0
    # seconds extracting one page may take (web and local pages), in a worker killed past it
    extract_timeout_s: float = 20.0
    max_redirects: int = 5
    per_domain: int = 4
    # the reader
    reader: str = "extractive"
    reader_model: str | None = None
    reader_base_url: str | None = None
    reader_api_key_env: str = "OPENAI_API_KEY"
    reader_max_chunks: int = 4
    reader_concurrency: int = 32
    # the extractive reader: most chunks read in one browse of a URL, characters per extract
    extract_max_chunks: int = 8
    extract_chars: int = 1200
    # the cost estimate: {"search": {provider: usd_per_1k}, "reader": {model: {prompt, completion}}}
    prices: Mapping[str, Any] | None = None

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> ToolSettings:
        """Settings from any object (a recipe's tools section, a pydantic model) or mapping,
        taking the attributes named like the fields here and ignoring the rest."""
        names = [f.name for f in dataclasses.fields(cls)]
        if isinstance(config, Mapping):
            values = {n: config[n] for n in names if n in config}
        else:
            values = {n: getattr(config, n) for n in names if hasattr(config, n)}
        values.update(overrides)
        for name in ("allow_hosts", "allow_networks"):
            if name in values and values[name] is not None:
                values[name] = tuple(values[name])
        return cls(**values)


def resolve_world(settings: ToolSettings) -> tuple[Path | None, Path | None]:
    """The index and pages directories, filled in from ``world`` (or from an index inside one)."""
    index, pages = settings.index, settings.pages
    if settings.world is not None:
        world = Path(settings.world)
        if not (world / "world.json").is_file():
            raise ConfigError(
                f"{world} is not a world directory (no world.json)",
                hint="build one with: deepresearcher world build --out DIR",
            )
        index = index or world / "index"
        pages = pages or world / "pages"
    elif index is not None and pages is None:
        parent = Path(index).resolve().parent
        if (parent / "world.json").is_file() and (parent / "pages").is_dir():
            pages = parent / "pages"
    return index, pages


def web_providers(search: str) -> list[str]:
    """The web providers named by ``search`` (``[]`` for ``local``); a mix is a ConfigError."""
    from deepresearcher.tools.web_search import WEB_SEARCH_PROVIDERS

    names = [name.strip() for name in search.split(",") if name.strip()]
    web = [name for name in names if name in WEB_SEARCH_PROVIDERS]
    unknown = [name for name in names if name not in WEB_SEARCH_PROVIDERS + SEARCH_BACKENDS]
    if unknown or not names or (web and len(web) != len(names)):
        raise ConfigError(
            f"unknown search backend {search!r}",
            hint=f"choose local, or web providers ({', '.join(WEB_SEARCH_PROVIDERS)}), "
            "or a chain of web providers like serper,searxng",
        )
    return web


def build_cache(settings: ToolSettings) -> ToolCache | None:
    """The shared tool cache the settings name, or None."""
    if settings.cache is None or settings.cache_mode == "off":
        return None
    from deepresearcher.tools.cache import ToolCache

    return ToolCache(settings.cache, mode=settings.cache_mode)


def build_search(settings: ToolSettings, cache: ToolCache | None) -> Any:
    """The web search backend (a fallback chain for several names), behind the cache if any."""
    from deepresearcher.tools.cache import CachedSearch
    from deepresearcher.tools.web_search import FallbackSearch, open_web_search

    names = web_providers(settings.search)
    options: dict[str, Any] = {}
    if settings.region:
        options["region"] = settings.region
    if settings.language:
        options["language"] = settings.language
    if len(names) > 1 and settings.endpoint:
        raise ConfigError("--endpoint names one provider's API; a chain takes *_ENDPOINT variables")
    limits: dict[str, Any] = {}
    if settings.search_qps is not None:
        limits["qps"] = settings.search_qps
    if settings.search_concurrency is not None:
        limits["concurrency"] = settings.search_concurrency
    if settings.search_timeout_s is not None:
        limits["timeout"] = settings.search_timeout_s
    backends = [open_web_search(name, endpoint=settings.endpoint, **limits, **(
        options if name != "ddgs" else {})) for name in names]
    search: Any = backends[0] if len(backends) == 1 else FallbackSearch(backends)
    # Region and language change the answers: they are part of the cache key.
    return CachedSearch(search, cache, params=options) if cache is not None else search


def build_fetcher(settings: ToolSettings, cache: ToolCache | None) -> Any:
    """The web fetcher with the settings' guard, limits and cache."""
    from deepresearcher.tools.netguard import AddressGuard
    from deepresearcher.tools.web_fetch import WebFetcher

    try:
        guard = AddressGuard.build(allow_private=settings.allow_private,
                                   allow_hosts=settings.allow_hosts,
                                   allow_networks=settings.allow_networks)
    except ValueError as exc:
        raise ConfigError(f"bad allow_networks entry: {exc}",
                          hint="use CIDR blocks like 10.0.0.0/8 or ::1/128") from exc
    return WebFetcher(guard=guard, max_bytes=settings.max_page_bytes,
                      total_timeout_s=settings.fetch_timeout_s,
                      extract_timeout_s=settings.extract_timeout_s,
                      max_redirects=settings.max_redirects, per_domain=settings.per_domain,
                      chunk_chars=settings.chunk_chars, cache=cache)


def build_reader(settings: ToolSettings, cache: ToolCache | None = None) -> Any:
    """The extractive reader (free, the default) or the LLM reader."""
    if settings.reader not in READERS:
        raise ConfigError(f"unknown reader {settings.reader!r}",
                          hint=f"choose one of: {', '.join(READERS)}")
    if settings.reader == "extractive":
        from deepresearcher.tools.reader import ExtractiveReader

        return ExtractiveReader(max_extract_chars=settings.extract_chars,
                                max_chunks_per_url=settings.extract_max_chunks)
    if not settings.reader_base_url or not settings.reader_model:
        raise ConfigError(
            "the LLM reader needs a model and an OpenAI-compatible base URL",
            hint="pass --reader-model NAME --reader-base-url URL (the key comes from "
            f"${settings.reader_api_key_env})",
        )
    from deepresearcher.tools.llm_reader import LLMReader

    return LLMReader(settings.reader_base_url, settings.reader_model,
                     api_key_env=settings.reader_api_key_env,
                     max_chunks_per_url=settings.reader_max_chunks, cache=cache,
                     concurrency=settings.reader_concurrency)


def build_toolbox(settings: ToolSettings) -> Toolbox:
    """A toolbox: local search with the local fetcher, or a web provider with the web fetcher;
    the reader the settings name; the shared cache when a path is given."""
    from deepresearcher.tools.usage import PriceTable

    prices = PriceTable.from_mapping(settings.prices)
    if web_providers(settings.search):
        cache = build_cache(settings)
        return Toolbox(build_search(settings, cache), build_fetcher(settings, cache),
                       build_reader(settings, cache), k=settings.k,
                       concurrency=settings.concurrency, prices=prices)
    index, pages = resolve_world(settings)
    if index is None:
        raise ConfigError(
            "the local search backend needs an index",
            hint="pass --index DIR (deepresearcher index build CORPUS.jsonl --out DIR) "
            "or --world DIR (deepresearcher world build --out DIR)",
        )
    from deepresearcher.tools.fetch import LocalFetcher
    from deepresearcher.tools.local_search import LocalSearch

    cache = build_cache(settings)
    search = LocalSearch.open(Path(index))
    # A bare corpus (no pages folder) names its passages local://corpus/<id>; a world's pages are
    # local://wiki/<slug>.
    site = "wiki" if pages is not None else "corpus"
    fetcher = LocalFetcher(pages, index=search, site=site, chunk_chars=settings.chunk_chars,
                           extract_timeout_s=settings.extract_timeout_s)
    return Toolbox(search, fetcher, build_reader(settings, cache), k=settings.k,
                   concurrency=settings.concurrency, prices=prices)


def build_policy(
    model: str = DEFAULT_MODEL,
    *,
    base_url: str | None = None,
    api: Literal["auto", "completions", "chat"] = "auto",
    profile: str = "deepresearcher-7b",
    tokenizer: str | None = None,
    context_window: int | None = None,
    device: str = "cpu",
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float | None = None,
) -> Any:
    """A policy: an OpenAI-compatible server when ``base_url`` is given, else local transformers.

    ``api="auto"`` uses the completions endpoint for the exact deepresearcher-7b format (the
    prompt is rendered here with the model's own chat template) and chat completions otherwise.
    ``timeout``: seconds a server has for each generation request (None: the policy's default).
    """
    if base_url is None:
        if timeout is not None:
            raise ConfigError("a timeout is for a policy server; a local model has none",
                              hint="pass --base-url with --timeout, or drop --timeout")
        from deepresearcher.agent.policy_hf import GPU_BATCH_TOKENS, HFPolicy, resolve_device

        # On a GPU a batch of long late turns must fit its memory: at most GPU_BATCH_TOKENS
        # padded tokens a generate call (16 rows of 4k, 2 of 32k).
        budget = GPU_BATCH_TOKENS if resolve_device(device).startswith("cuda") else None
        return HFPolicy.from_pretrained(model, device=device, context_window=context_window,
                                        max_batch_tokens=budget)
    if api == "auto":
        api = "completions" if profile == "deepresearcher-7b" else "chat"
    if api not in ("completions", "chat"):
        raise ConfigError(f"unknown API {api!r}", hint="choose completions or chat")
    client: dict[str, Any] = {"api_key_env": api_key_env}
    if timeout is not None:
        if timeout <= 0:
            raise ConfigError(f"the policy server's timeout must be positive, not {timeout:g}",
                              hint="pass --timeout SECONDS, e.g. --timeout 600")
        client["timeout"] = timeout
    if api == "completions":
        from deepresearcher.agent.policy import load_tokenizer
        from deepresearcher.agent.policy_openai import OpenAICompletionsPolicy

        tok = load_tokenizer(tokenizer or model)
        return OpenAICompletionsPolicy(base_url, model, tokenizer=tok,
                                       context_window=context_window or 32768, **client)
    from deepresearcher.agent.policy_openai import OpenAIChatPolicy

    tok = None
    if tokenizer is not None:
        from deepresearcher.agent.policy import load_tokenizer

        tok = load_tokenizer(tokenizer)
    return OpenAIChatPolicy(base_url, model, tokenizer=tok,
                            context_window=context_window or 32768, **client)
