"""Benchmark what extracting in a worker process costs on normal pages: the deadline's price.

Pages: the test fixtures (an article with a table, two legacy-encoded pages, plain text, a PDF)
and the pages of a small generated world (HTML and PDF). Two measurements, both against the
in-process :func:`~deepresearcher.tools.extract.extract` as the baseline, in the same run:

1. latency, one page at a time: each page extracted in-process and through the worker pool
   (:func:`~deepresearcher.tools.extract_worker.extract_bounded`), rounds alternating; the
   per-page overhead is the worker's median minus the in-process median;
2. throughput, ``--concurrency`` pages in flight from one event loop: the pool against
   ``asyncio.to_thread(extract, ...)`` (what the fetchers did before the deadline).

    python benchmarks/bench_extract_worker.py                    # 80-entity world, 5 rounds
    python benchmarks/bench_extract_worker.py --entities 30 --rounds 2     # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from deepresearcher.tools.extract import extract
from deepresearcher.tools.extract_worker import extract_bounded, shared_pool
from deepresearcher.tools.fetch import PAGE_SUFFIXES
from deepresearcher.world.build import build_world

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "tools" / "fixtures"
FIXTURE_PAGES = ("article.html", "cp1252_undeclared.html", "latin1_meta.html", "plain.txt",
                 "report.pdf")

Page = tuple[str, bytes, "str | None"]  # name, bytes, declared content type


def load_pages(world_dir: Path, entities: int, seed: int) -> list[Page]:
    build_world(world_dir, seed=seed, entities=entities, index=False)
    files = [FIXTURES / name for name in FIXTURE_PAGES]
    files += sorted((world_dir / "pages").iterdir())
    return [(f.name, f.read_bytes(), PAGE_SUFFIXES.get(f.suffix.lower())) for f in files]


def time_in_process(page: Page) -> float:
    name, content, content_type = page
    start = time.perf_counter()
    extract(content, content_type=content_type, url=name)
    return time.perf_counter() - start


async def time_in_worker(page: Page) -> float:
    name, content, content_type = page
    start = time.perf_counter()
    await extract_bounded(content, content_type=content_type, url=name)
    return time.perf_counter() - start


async def latency(pages: list[Page], rounds: int) -> tuple[list[float], list[float]]:
    """Per page, the median seconds of ``rounds`` extractions in-process and in a worker."""
    inproc: list[list[float]] = [[] for _ in pages]
    worker: list[list[float]] = [[] for _ in pages]
    for _ in range(rounds):
        for i, page in enumerate(pages):
            inproc[i].append(time_in_process(page))
            worker[i].append(await time_in_worker(page))
    return [statistics.median(t) for t in inproc], [statistics.median(t) for t in worker]


async def throughput(pages: list[Page], concurrency: int, use_pool: bool) -> float:
    """Pages per second with ``concurrency`` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one(page: Page) -> None:
        name, content, content_type = page
        async with gate:
            if use_pool:
                await extract_bounded(content, content_type=content_type, url=name)
            else:
                await asyncio.to_thread(extract, content, content_type=content_type, url=name)

    start = time.perf_counter()
    await asyncio.gather(*(one(page) for page in pages))
    return len(pages) / (time.perf_counter() - start)


async def run(pages: list[Page], rounds: int, concurrency: int) -> None:
    await time_in_worker(pages[0])  # start the workers outside the measurement
    inproc, worker = await latency(pages, rounds)
    overhead = [w - i for i, w in zip(inproc, worker, strict=True)]
    kinds: dict[str, list[int]] = {"html": [], "pdf": [], "txt": []}
    for n, (name, _, _) in enumerate(pages):
        kinds[name.rsplit(".", 1)[-1]].append(n)
    print(f"\n1. latency, one page at a time ({rounds} rounds, medians)")
    print(f"{'pages':<12}{'n':>4}{'KB':>8}{'in-process ms':>15}{'worker ms':>11}"
          f"{'overhead ms':>13}{'ratio':>7}")
    for kind, index in [("all", list(range(len(pages)))), *kinds.items()]:
        if not index:
            continue
        size = statistics.median(len(pages[n][1]) for n in index) / 1024
        base = statistics.median(inproc[n] for n in index) * 1000
        pool = statistics.median(worker[n] for n in index) * 1000
        extra = statistics.median(overhead[n] for n in index) * 1000
        print(f"{kind:<12}{len(index):>4}{size:>8.1f}{base:>15.2f}{pool:>11.2f}{extra:>13.2f}"
              f"{pool / base:>7.2f}")
    print(f"per-page overhead: median {statistics.median(overhead) * 1000:.2f} ms, "
          f"p90 {statistics.quantiles(overhead, n=10)[-1] * 1000:.2f} ms; "
          f"total time ratio worker/in-process {sum(worker) / sum(inproc):.2f}")

    print(f"\n2. throughput, {concurrency} pages in flight ({shared_pool().workers} workers)")
    batch = pages * max(1, 200 // len(pages))
    threads = await throughput(batch, concurrency, use_pool=False)
    pool = await throughput(batch, concurrency, use_pool=True)
    print(f"asyncio.to_thread(extract): {threads:7.1f} pages/s")
    print(f"worker pool:                {pool:7.1f} pages/s   ratio {pool / threads:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=80, help="pages of the generated world")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pages = load_pages(Path(tmp) / "world", args.entities, args.seed)
        print(f"{len(pages)} pages ({len(FIXTURE_PAGES)} fixtures, the rest a world of "
              f"{args.entities} entities); {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.2f} at start")
        asyncio.run(run(pages, args.rounds, args.concurrency))
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
