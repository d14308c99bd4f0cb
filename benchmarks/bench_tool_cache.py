"""Benchmark the tool cache on a GRPO-shaped search workload, and the tool layer's own overhead.

A GRPO step asks Q questions × R rollouts; rollouts of one question overlap heavily in what they
search. Against a loopback Serper-format server that takes ``--latency`` seconds per request, it
runs the step through the real toolbox:

1. without a cache: every query is an upstream call;
2. with the SQLite cache + single flight: identical queries (concurrent or not) cost one call.

It prints upstream calls and wall time of each and their ratio. Then it measures the tool layer's
overhead at ``--concurrency`` requests in flight: the median latency of a cache-missing search
through toolbox → cache → an in-process provider that sleeps exactly the latency, minus that
latency, against it (target: under 5%); and, over HTTP, the toolbox path next to a bare ``httpx``
POST at the same concurrency (there the loopback stand-in competes for the same CPU).

    python benchmarks/bench_tool_cache.py                          # 64 × 16, 200 ms, 256 in flight
    python benchmarks/bench_tool_cache.py --questions 8 --rollouts 4 --concurrency 32   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from deepresearcher.agent.toolbox import Toolbox  # noqa: E402
from deepresearcher.tools.cache import CachedSearch, ToolCache  # noqa: E402
from deepresearcher.tools.reader import ExtractiveReader  # noqa: E402
from deepresearcher.tools.web_fetch import WebFetcher  # noqa: E402
from deepresearcher.tools.web_search import SerperSearch  # noqa: E402
from deepresearcher.types import BrowseMemory, SearchHit, SearchResult  # noqa: E402
from servers.search_providers import SearchProviderServer  # noqa: E402

TARGET_OVERHEAD = 0.05
KEY = "bench-key"
HITS = [{"title": f"Result {i}", "url": f"https://example.org/{i}", "snippet": "text " * 20}
        for i in range(10)]


def workload(questions: int, rollouts: int, turns: int, seed: int) -> list[list[list[str]]]:
    """Per rollout, per turn, the queries it sends (up to 3, like the paper's tool)."""
    rng = random.Random(seed)
    episodes = []
    for q in range(questions):
        # Each question has a few likely phrasings per hop; rollouts mostly pick among them.
        pool = [[f"question {q} hop {hop} phrasing {p}" for p in range(4)] for hop in range(turns)]
        for _ in range(rollouts):
            episode = []
            for hop in range(turns):
                n = rng.randint(1, 3)
                picks = []
                for _ in range(n):
                    if rng.random() < 0.1:  # a rollout's own wording, seen nowhere else
                        picks.append(f"question {q} hop {hop} own {rng.random():.9f}")
                    else:
                        picks.append(rng.choice(pool[hop]))
                episode.append(list(dict.fromkeys(picks)))
            episodes.append(episode)
    return episodes


def provider(endpoint: str, concurrency: int) -> SerperSearch:
    return SerperSearch(endpoint=endpoint, concurrency=concurrency, timeout=60)


async def run_step(toolbox: Toolbox, episodes: list[list[list[str]]], in_flight: int) -> float:
    slots = asyncio.Semaphore(in_flight)

    async def rollout(turns: list[list[str]]) -> None:
        async with slots:
            memory = BrowseMemory()
            for queries in turns:
                outcome = await toolbox.search(queries, memory)
                if outcome.error:
                    raise RuntimeError(outcome.error)

    started = time.perf_counter()
    await asyncio.gather(*(rollout(e) for e in episodes))
    return time.perf_counter() - started


def toolbox_for(search: object, concurrency: int) -> Toolbox:
    return Toolbox(search, WebFetcher(), ExtractiveReader(), concurrency=concurrency)  # type: ignore[arg-type]


async def overhead(endpoint: str, concurrency: int, rounds: int, cache_dir: Path,
                   latency: float) -> tuple[list[float], list[float]]:
    """Per-request latencies: through the tool layer (cache misses), and bare httpx."""
    search = provider(endpoint, concurrency)
    cached = CachedSearch(search, ToolCache(cache_dir / "overhead.sqlite"))
    toolbox = toolbox_for(cached, concurrency)
    tool_latencies: list[float] = []
    bare_latencies: list[float] = []

    async def through_tools(i: int) -> None:
        started = time.perf_counter()
        outcome = await toolbox.search([f"overhead query {i}"], BrowseMemory())
        assert outcome.error is None, outcome.error
        tool_latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def bare(i: int) -> None:
            started = time.perf_counter()
            response = await client.post(f"{endpoint}/search", json={"q": f"bare {i}", "num": 10},
                                         headers={"X-API-KEY": KEY})
            response.raise_for_status()
            response.json()
            bare_latencies.append(time.perf_counter() - started)

        # warm both connection pools, then measure alternating rounds
        await asyncio.gather(*(bare(-i - 1) for i in range(concurrency)))
        await asyncio.gather(*(through_tools(-i - 1) for i in range(concurrency)))
        tool_latencies.clear()
        bare_latencies.clear()
        for r in range(rounds):
            base = r * concurrency
            await asyncio.gather(*(through_tools(base + i) for i in range(concurrency)))
            await asyncio.gather(*(bare(base + i) for i in range(concurrency)))
    await search.aclose()
    return tool_latencies, bare_latencies


class SleepingSearch:
    """An in-process provider that answers after exactly ``latency`` seconds: what remains of a
    request's time above that is the tool layer's own (no HTTP stand-in competing for the CPU)."""

    name = "sleeping"

    def __init__(self, latency: float) -> None:
        self.latency = latency

    async def search(self, query: str, *, k: int = 10) -> SearchResult:
        await asyncio.sleep(self.latency)
        return SearchResult(query, tuple(SearchHit(h["title"], h["url"], h["snippet"])
                                         for h in HITS[:k]))


async def layer_overhead(concurrency: int, rounds: int, cache_dir: Path,
                         latency: float) -> list[float]:
    """Per-request latencies through toolbox → cache (misses) → an in-process provider."""
    toolbox = toolbox_for(CachedSearch(SleepingSearch(latency), ToolCache(cache_dir / "l.sqlite")),
                          concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        started = time.perf_counter()
        outcome = await toolbox.search([f"layer query {i}"], BrowseMemory())
        assert outcome.error is None, outcome.error
        latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(one(-i - 1) for i in range(concurrency)))  # warm up
    latencies.clear()
    for r in range(rounds):
        await asyncio.gather(*(one(r * concurrency + i) for i in range(concurrency)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--rollouts", type=int, default=16)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.2, help="provider seconds per request")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4, help="overhead rounds of --concurrency")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    episodes = workload(args.questions, args.rollouts, args.turns, args.seed)
    queries = sum(len(q) for e in episodes for q in e)
    unique = len({q for e in episodes for turn in e for q in turn})
    print(f"workload: {args.questions} questions × {args.rollouts} rollouts × {args.turns} turns = "
          f"{queries} queries ({unique} distinct); provider latency {args.latency * 1000:.0f} ms; "
          f"{args.concurrency} in flight")
    os.environ.pop("SERPER_API_KEY", None)
    os.environ["SERPER_API_KEY"] = KEY
    with SearchProviderServer("serper", key=KEY, hits=HITS, latency_s=args.latency) as server, \
            tempfile.TemporaryDirectory() as tmp:
        # The stand-in's listen backlog is 5; a real API takes bursts of hundreds of connects.
        server._httpd.socket.listen(4096)
        cache_dir = Path(tmp)

        before = len(server.requests)
        plain = toolbox_for(provider(server.base_url, args.concurrency), args.concurrency)
        seconds_plain = asyncio.run(run_step(plain, episodes, args.concurrency))
        calls_plain = len(server.requests) - before

        before = len(server.requests)
        cache = ToolCache(cache_dir / "step.sqlite")
        cached = toolbox_for(CachedSearch(provider(server.base_url, args.concurrency), cache),
                             args.concurrency)
        seconds_cached = asyncio.run(run_step(cached, episodes, args.concurrency))
        calls_cached = len(server.requests) - before
        hits = cached.usage.search_cached

        print("\n| mode | upstream calls | wall s |")
        print("|---|---|---|")
        print(f"| no cache | {calls_plain:,} | {seconds_plain:.2f} |")
        print(f"| cache + single flight | {calls_cached:,} | {seconds_cached:.2f} |")
        print(f"upstream calls saved: {calls_plain / max(calls_cached, 1):.2f}x fewer "
              f"({hits:,} of {queries:,} queries served by the cache); "
              f"wall time {seconds_plain / seconds_cached:.2f}x faster")

        layer_latencies = asyncio.run(layer_overhead(args.concurrency, args.rounds, cache_dir,
                                                     args.latency))
        layer_median = statistics.median(layer_latencies)
        layer_p95 = sorted(layer_latencies)[int(len(layer_latencies) * 0.95)]
        print(f"\ntool layer alone (toolbox → cache miss → single flight → store, in-process "
              f"provider of exactly {args.latency * 1000:.0f} ms) at {args.concurrency} in flight, "
              f"{len(layer_latencies)} requests: median {layer_median * 1000:.1f} ms, "
              f"p95 {layer_p95 * 1000:.1f} ms")
        print(f"tool layer overhead: {(layer_median - args.latency) / args.latency * 100:.1f}% "
              f"of the provider's latency at the median, "
              f"{(layer_p95 - args.latency) / args.latency * 100:.1f}% at p95 "
              f"(target < {TARGET_OVERHEAD * 100:.0f}%)")

        tools, bare = asyncio.run(overhead(server.base_url, args.concurrency, args.rounds,
                                           cache_dir, args.latency))
        tool_median, bare_median = statistics.median(tools), statistics.median(bare)
        tool_over = (tool_median - args.latency) / args.latency
        layer = (tool_median - bare_median) / args.latency
        print(f"\nlatency at {args.concurrency} in flight, {len(tools)} requests each "
              f"(median / p95, ms):")
        print(f"  bare httpx POST:             {bare_median * 1000:7.1f} / "
              f"{sorted(bare)[int(len(bare) * 0.95)] * 1000:7.1f}")
        print(f"  toolbox → cache → provider:  {tool_median * 1000:7.1f} / "
              f"{sorted(tools)[int(len(tools) * 0.95)] * 1000:7.1f}")
        print(f"over HTTP, toolbox path minus bare httpx: {layer * 100:.1f}% of the provider's "
              f"latency; both over the provider's {args.latency * 1000:.0f} ms: toolbox "
              f"{tool_over * 100:.1f}%, bare {(bare_median - args.latency) / args.latency * 100:.1f}%"
              " (the loopback stand-in shares the CPU: read these with the in-process figure)")


if __name__ == "__main__":
    main()
