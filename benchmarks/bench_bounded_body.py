"""Benchmark reading compressed HTTP bodies: our bounded decoder against httpx's own decoding.

Every reply the tools read (pages, search APIs, model servers) goes through
``deepresearcher.tools.http.read_body``, which decodes gzip/deflate itself and counts the cap on
decoded bytes as they are produced. The baseline is what the fetcher did before: httpx's
``aiter_bytes`` (which decodes a whole network chunk at once, brotli and zstd included) with the
cap checked after each decoded chunk. Two figures, both against that baseline in the same run:

1. speed on honest pages (``--pages`` gzip bodies of ``--page-kib`` KiB of HTML-like text):
   MB/s decoded, and the ratio ours / baseline;
2. peak Python memory on bombs under an 8 MiB cap: gzip (``--bomb-mib`` MiB of zeros, ~1000:1)
   and brotli (when the ``brotli`` module is there; ours refuses it unread).

    python benchmarks/bench_bounded_body.py                    # 200 pages of 256 KiB, 1 GiB bomb
    python benchmarks/bench_bounded_body.py --pages 20 --bomb-mib 64          # smoke (~5 s)
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import statistics
import time
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable

import httpx

from deepresearcher.tools.http import BodyError, read_body

CAP = 8 << 20
WIRE_CHUNK = 64 * 1024  # what one network read hands over


def response(body: bytes, coding: str) -> httpx.Response:
    class Stream(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[override]
            for start in range(0, len(body), WIRE_CHUNK):
                yield body[start : start + WIRE_CHUNK]

    return httpx.Response(200, headers={"Content-Encoding": coding}, stream=Stream())


async def baseline(resp: httpx.Response, limit: int) -> bytes:
    """httpx's decoding, the cap checked after each decoded chunk."""
    body = bytearray()
    async for piece in resp.aiter_bytes():
        body += piece
        if len(body) > limit:
            raise BodyError("too large", kind="too_large")
    return bytes(body)


def page(kib: int, rng: random.Random) -> bytes:
    words = ["the", "capital", "river", "founded", "museum", "1921", "north", "council",
             "<p>", "</p>", "<a href='/wiki/x'>", "</a>", "population", "railway"]
    out: list[str] = []
    size = 0
    while size < kib * 1024:
        word = rng.choice(words)
        out.append(word)
        size += len(word) + 1
    return " ".join(out).encode()


def zeros_gzip(mib: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    return b"".join([packer.compress(block) for _ in range(mib)] + [packer.flush()])


Reader = Callable[[httpx.Response, int], Awaitable[bytes]]


def speed(readers: list[Reader], bodies: list[bytes], rounds: int) -> list[float]:
    """Median MB/s of decoded output of each reader over ``rounds`` passes over ``bodies``; the
    readers take turns within each round, so load from elsewhere falls on both alike."""
    rates: list[list[float]] = [[] for _ in readers]
    for _ in range(rounds):
        for reader, kept in zip(readers, rates, strict=True):
            started = time.perf_counter()

            async def all_pages(reader: Reader = reader) -> int:
                return sum([len(await reader(response(b, "gzip"), CAP)) for b in bodies])

            decoded = asyncio.run(all_pages())
            kept.append(decoded / (time.perf_counter() - started) / 1e6)
    return [statistics.median(r) for r in rates]


def peak(reader: Reader, body: bytes, coding: str) -> tuple[int, str]:
    """Peak Python memory reading one body, and how it ended."""
    tracemalloc.start()
    try:
        asyncio.run(reader(response(body, coding), CAP))
        outcome = "read whole"
    except BodyError as exc:
        outcome = f"stopped ({exc.kind})"
    except httpx.DecodingError as exc:
        outcome = f"failed ({exc})"
    result = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--page-kib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--bomb-mib", type=int, default=1024)
    args = parser.parse_args()
    rng = random.Random(0)
    bodies = [gzip.compress(page(args.page_kib, rng), 6) for _ in range(args.pages)]
    wire = sum(map(len, bodies))
    print(f"honest pages: {args.pages} × {args.page_kib} KiB of text, {wire / 1e6:.1f} MB gzip "
          f"on the wire, median of {args.rounds} passes each, taking turns")
    ours, theirs = speed([read_body, baseline], bodies, args.rounds)
    print(f"  {'reader':<28}{'MB/s decoded':>14}")
    print(f"  {'httpx aiter_bytes + check':<28}{theirs:>14.0f}")
    print(f"  {'read_body (bounded)':<28}{ours:>14.0f}")
    print(f"  speed ratio ours / baseline: {ours / theirs:.2f}")

    print(f"\nbombs under an {CAP >> 20} MiB cap: peak Python memory")
    cases = [(f"gzip, {args.bomb_mib} MiB of zeros", zeros_gzip(args.bomb_mib), "gzip")]
    try:
        import brotli

        mib = min(args.bomb_mib, 256)  # the baseline holds it all: kept bounded here
        cases.append((f"br, {mib} MiB of zeros", brotli.compress(b"\0" * (mib << 20), quality=5),
                      "br"))
    except ImportError:
        print("  (brotli not installed: the br case is skipped)")
    print(f"  {'body':<28}{'wire':>10}{'baseline MiB':>14}{'ours MiB':>10}{'ratio':>8}  ours")
    for name, body, coding in cases:
        base, _ = peak(baseline, body, coding)
        mine, outcome = peak(read_body, body, coding)
        ratio = base / max(mine, 1)
        shown = f"{ratio:.1f}" if ratio < 1000 else ">1000"
        print(f"  {name:<28}{len(body) / 1024:>8.1f}KB{base / 2**20:>14.1f}{mine / 2**20:>10.1f}"
              f"{shown:>8}  {outcome}")


if __name__ == "__main__":
    main()
