"""The toolbox: runs the search and browse tools for one episode, with that episode's memory."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from deepresearcher.agent.trajectory import Cost
from deepresearcher.errors import DeepResearcherError, FetchInternalError, KindedError
from deepresearcher.tools.base import Fetcher, Reader, SearchBackend
from deepresearcher.tools.usage import PriceTable, ToolUsage, counting, record
from deepresearcher.types import BrowseMemory, BrowseResult, Document, SearchResult

logger = logging.getLogger(__name__)

REFUSED = "not_in_latest_search"


@dataclass
class SearchOutcome:
    results: list[SearchResult]
    error: str | None = None
    seconds: float = 0.0


@dataclass
class BrowseOutcome:
    results: list[BrowseResult]
    refused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


class Toolbox:
    """Search and browse over pluggable backends. Stateless: episode state lives in ``BrowseMemory``.

    ``concurrency`` bounds the tool operations in flight across all episodes sharing this toolbox.
    ``usage`` counts what the tools spent over the toolbox's life (searches upstream and cached,
    pages, bytes, reader tokens); :meth:`episode_cost` gives one episode's share, priced with
    ``prices``.
    """

    def __init__(
        self,
        search: SearchBackend,
        fetcher: Fetcher,
        reader: Reader,
        *,
        k: int = 10,
        concurrency: int = 16,
        max_urls: int = 10,
        prices: PriceTable | None = None,
    ) -> None:
        self.search_backend = search
        self.fetcher = fetcher
        self.reader = reader
        self.k = k
        self.max_urls = max_urls
        self.concurrency = concurrency
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._slots_sem: asyncio.Semaphore | None = None
        self.prices = prices or PriceTable.defaults()
        self.usage = ToolUsage()
        # Per-episode counters, keyed by the episode's memory object and dropped with it.
        self._episodes: dict[int, ToolUsage] = {}

    def episode_usage(self, memory: BrowseMemory) -> ToolUsage:
        """What the tools spent for the episode that owns ``memory`` (zeros before any call)."""
        key = id(memory)
        usage = self._episodes.get(key)
        if usage is None:
            usage = self._episodes[key] = ToolUsage()
            weakref.finalize(memory, self._episodes.pop, key, None)
        return usage

    def cost(self, usage: ToolUsage) -> Cost:
        """``usage`` with its estimated price (see :class:`~deepresearcher.tools.usage.PriceTable`)."""
        search = getattr(self.search_backend, "name", None)
        model = getattr(self.reader, "model", None)
        usd = self.prices.estimate(usage, search=search, reader_model=model)
        return Cost.from_usage(usage.as_dict(), usd)

    def episode_cost(self, memory: BrowseMemory) -> Cost:
        """The episode's tool usage and estimated cost, for its trajectory."""
        return self.cost(self.episode_usage(memory))

    async def aclose(self) -> None:
        """Close the connection pools of the search backend, fetcher and reader."""
        for part in (self.search_backend, getattr(self.search_backend, "backend", None),
                     self.fetcher, self.reader):
            close = getattr(part, "aclose", None)
            if close is not None:
                await close()

    @property
    def _slots(self) -> asyncio.Semaphore:
        # One semaphore per event loop: a toolbox outlives loops (a GRPO rollout runs each step
        # in a new asyncio.run), and a semaphore that once waited is bound to its first loop.
        loop = asyncio.get_running_loop()
        if self._slots_sem is None or self._slots_loop is not loop:
            self._slots_loop, self._slots_sem = loop, asyncio.Semaphore(self.concurrency)
        return self._slots_sem

    async def search(self, queries: list[str], memory: BrowseMemory) -> SearchOutcome:
        """Run the queries concurrently; the hits become the URLs the episode may browse next."""
        started = time.perf_counter()
        if not queries:
            return SearchOutcome([], error="no queries")

        async def one(query: str) -> SearchResult:
            async with self._slots:
                record(search_queries=1)
                return await self.search_backend.search(query, k=self.k)

        try:
            with counting(self.usage, self.episode_usage(memory)):
                if len(queries) == 1:
                    # Awaited in this task: a task per query would queue its start and its end
                    # behind every other ready task, which at hundreds in flight is most of the
                    # tool layer's latency.
                    results = [await one(queries[0])]
                else:
                    results = list(await asyncio.gather(*(one(q) for q in queries)))
        except DeepResearcherError as exc:
            return SearchOutcome([], error=f"{type(exc).__name__}: {exc}",
                                 seconds=time.perf_counter() - started)
        except Exception as exc:  # a bug or a library's own error: this call fails, not the batch
            logger.exception("search failed unexpectedly")
            return SearchOutcome([], error=f"internal error: {type(exc).__name__}: {exc}",
                                 seconds=time.perf_counter() - started)
        memory.allowed_urls = {}
        memory.latest_hits = [(result.query, hit.url) for result in results for hit in result.hits]
        for query, url in memory.latest_hits:
            memory.allowed_urls.setdefault(url, query)
        return SearchOutcome(results, seconds=time.perf_counter() - started)

    async def browse(self, urls: list[str], question: str, memory: BrowseMemory, *,
                     per_occurrence: bool = False) -> BrowseOutcome:
        """Read the URLs (only those of the latest search) and return only new extracts.

        By default one result per requested URL, in request order (a refused one with the error
        ``not_in_latest_search``). ``per_occurrence`` reads as the original's reader did: one
        result per occurrence of a requested URL in the latest search, in search order, each
        occurrence read for its own query and from its own position; refused URLs get none.
        """
        started = time.perf_counter()
        if not memory.allowed_urls:
            return BrowseOutcome([], error="browse before any search",
                                 seconds=time.perf_counter() - started)
        unique = list(dict.fromkeys(urls))[: self.max_urls]

        async def fetch(url: str) -> Document | DeepResearcherError:
            try:
                async with self._slots:
                    document = await self.fetcher.fetch(url)
                record(pages=1)
                return document
            except DeepResearcherError as exc:
                return exc
            except Exception as exc:  # a library's own error: this page fails, not the batch
                logger.exception("fetching %s failed unexpectedly", url)
                return FetchInternalError(f"{type(exc).__name__}: {exc}", url=url)

        with counting(self.usage, self.episode_usage(memory)):
            return await self._browse(unique, question, memory, fetch, started, per_occurrence)

    async def _browse(self, unique: list[str], question: str, memory: BrowseMemory,
                      fetch: Callable[[str], Awaitable[Document | DeepResearcherError]],
                      started: float, per_occurrence: bool) -> BrowseOutcome:
        outcome = BrowseOutcome([])
        outcome.refused = [u for u in unique if u not in memory.allowed_urls]
        allowed = [u for u in unique if u in memory.allowed_urls]
        fetched = dict(zip(allowed, await asyncio.gather(*(fetch(u) for u in allowed)), strict=True))
        # What is read, for which query, under which reading key, in which order.
        if per_occurrence:
            wanted = set(allowed)
            reads = [(url, query, f"{url}#{query}@{rank}")
                     for rank, (query, url) in enumerate(memory.latest_hits) if url in wanted]
        else:
            reads = [(url, memory.allowed_urls.get(url, ""), url) for url in unique]
        # Pages are fetched concurrently, but read in this order: the reader updates the episode's
        # memory, and "only new extracts" must not depend on which fetch finished first.
        for url, query, key in reads:
            if url in outcome.refused:
                outcome.results.append(BrowseResult(url=url, error=REFUSED))
                continue
            document = fetched[url]
            if isinstance(document, DeepResearcherError):
                kind = _failure_kind(document)
                outcome.failed[url] = kind
                outcome.results.append(BrowseResult(url=url, error=kind))
                continue
            try:
                extracts = await self.reader.read(document, question=question, sub_question=query,
                                                  memory=memory, key=key)
            except DeepResearcherError as exc:
                kind = _failure_kind(exc)
                outcome.failed[url] = kind
                outcome.results.append(BrowseResult(url=url, error=kind))
                continue
            except Exception:  # a library's own error: this page fails, not the batch
                logger.exception("reading %s failed unexpectedly", url)
                outcome.failed[url] = "internal"
                outcome.results.append(BrowseResult(url=url, error="internal"))
                continue
            outcome.results.append(BrowseResult(url=url, information=tuple(extracts)))
        outcome.seconds = time.perf_counter() - started
        return outcome


def _failure_kind(exc: DeepResearcherError) -> str:
    """What a failed URL records: the error's kind (``timeout``, ``blocked``), or the class name
    of an error without kinds (``ExtractError``)."""
    return exc.kind if isinstance(exc, KindedError) else type(exc).__name__
