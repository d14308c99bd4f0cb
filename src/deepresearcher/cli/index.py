"""``deepresearcher index build|info`` and ``deepresearcher search``: local indexes and searching."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deepresearcher.errors import ConfigError
from deepresearcher.tools.web_search import WEB_SEARCH_PROVIDERS

if TYPE_CHECKING:
    from deepresearcher.tools.base import SearchBackend
    from deepresearcher.types import SearchResult

index_app = typer.Typer(help="Build and inspect local BM25 search indexes.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``index`` command group and the top-level ``search`` command to ``app``."""
    app.add_typer(index_app, name="index")
    app.command("search")(search)


# --------------------------------------------------------------------------- search providers


@dataclass(frozen=True)
class SearchOptions:
    """What a search provider factory may use: a local index, or a web provider's settings."""

    index: Path | None = None
    endpoint: str | None = None
    region: str | None = None
    language: str | None = None


def _open_local(options: SearchOptions) -> SearchBackend:
    if options.index is None:
        raise ConfigError(
            "the local search backend needs an index",
            hint="pass --index DIR (deepresearcher index build CORPUS.jsonl --out DIR)",
        )
    from deepresearcher.tools.local_search import LocalSearch

    return LocalSearch.open(options.index)


def _web(name: str) -> Callable[[SearchOptions], SearchBackend]:
    def open_web(options: SearchOptions) -> SearchBackend:
        from deepresearcher.tools.web_search import open_web_search

        return open_web_search(name, endpoint=options.endpoint, region=options.region,
                               language=options.language)

    return open_web


# name -> factory. A web provider's factory reads its key from the environment.
SEARCH_PROVIDERS: dict[str, Callable[[SearchOptions], SearchBackend]] = {
    "local": _open_local,
    **{name: _web(name) for name in WEB_SEARCH_PROVIDERS},
}


def open_backend(name: str, *, index: Path | None = None, endpoint: str | None = None,
                 region: str | None = None, language: str | None = None) -> SearchBackend:
    """The search backend called ``name``; ``a,b`` is a fallback chain (``b`` answers when ``a``
    is out of quota, rate limited, down or unreachable). :class:`ConfigError` for an unknown one."""
    names = [part.strip() for part in name.split(",") if part.strip()]
    unknown = [part for part in names if part not in SEARCH_PROVIDERS]
    if unknown or not names:
        raise ConfigError(
            f"unknown search provider {(unknown or [name])[0]!r}",
            hint=f"choose one of: {', '.join(sorted(SEARCH_PROVIDERS))} (or a chain: serper,searxng)",
        )
    if endpoint is not None and len(names) > 1:
        raise ConfigError("--endpoint applies to a single provider",
                          hint="set each provider's endpoint in its variable, e.g. SERPER_ENDPOINT")
    options = SearchOptions(index=index, endpoint=endpoint, region=region, language=language)
    backends = [SEARCH_PROVIDERS[part](options) for part in names]
    if len(backends) == 1:
        return backends[0]
    from deepresearcher.tools.web_search import FallbackSearch

    return FallbackSearch(backends)


# --------------------------------------------------------------------------- commands


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


@index_app.command("build")
def build(
    corpus: Annotated[
        Path, typer.Argument(help='wiki-18 / FlashRAG JSONL: {"id", "contents"} per line.')
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the new index.")],
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip malformed lines (counted) instead of failing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing index in --out.")
    ] = False,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Indexing threads (default: up to 2).")
    ] = None,
    heap_mb: Annotated[
        int, typer.Option("--heap-mb", min=50, help="Indexing memory budget in MB.")
    ] = 1000,
) -> None:
    """Build a BM25 index over a JSONL corpus (wiki-18 / FlashRAG format)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from deepresearcher.cli import display
    from deepresearcher.tools.local_search import build_index

    console = display.console(stderr=True, highlight=False)
    total = corpus.stat().st_size if corpus.is_file() else None
    columns = (
        TextColumn("indexing"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("index", total=total)
        info = build_index(
            corpus,
            out,
            progress=lambda done: bar.update(task, completed=done),
            skip_bad=skip_bad,
            overwrite=force,
            threads=threads,
            heap_bytes=heap_mb * 1_000_000,
        )
    skipped = f", {info.skipped_lines:,} malformed lines skipped" if info.skipped_lines else ""
    console.print(display.text(
        ("indexed", "green"), f" {info.doc_count:,} passages in {info.build_seconds:.1f} s"
        f"{skipped}; {_human_bytes(info.size_bytes)} on disk at {info.path}"))


@index_app.command("info")
def info(index: Annotated[Path, typer.Argument(help="An index directory.")]) -> None:
    """Print an index's metadata as JSON."""
    from deepresearcher.tools.local_search import read_index_info

    meta = read_index_info(index)
    typer.echo(json.dumps({"path": str(meta.path), **meta.to_json()}, indent=2))


def search(
    query: Annotated[str, typer.Argument(help="The query (any text: it is not parsed).")],
    index: Annotated[Path | None, typer.Option("--index", help="Local index directory.")] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=100, help="How many hits.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as a JSON list.")] = False,
    provider: Annotated[
        str,
        typer.Option("--search", help=f"Search provider: {', '.join(SEARCH_PROVIDERS)}; "
                                      "a,b falls back to b when a fails."),
    ] = "local",
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="A web provider's API base URL.")
    ] = None,
    region: Annotated[
        str | None, typer.Option("--region", help="Web search country code, e.g. us.")
    ] = None,
    language: Annotated[
        str | None, typer.Option("--language", help="Web search language code, e.g. en.")
    ] = None,
) -> None:
    """Search and print the hits."""
    backend = open_backend(provider, index=index, endpoint=endpoint, region=region,
                           language=language)
    result = asyncio.run(_search_once(backend, query, k))
    if as_json:
        from deepresearcher.cli.display import inert_json

        hits = json.dumps([asdict(hit) for hit in result.hits], ensure_ascii=False, indent=2)
        typer.echo(inert_json(hits))
        return
    _print_hits(result)


async def _search_once(backend: SearchBackend, query: str, k: int) -> SearchResult:
    try:
        return await backend.search(query, k=k)
    finally:
        close = getattr(backend, "aclose", None)
        if close is not None:
            await close()


def _print_hits(result: SearchResult) -> None:
    from deepresearcher.cli import display

    console = display.console(highlight=False)
    if not result.hits:
        console.print("[dim]no results[/]")
        return
    for rank, hit in enumerate(result.hits, start=1):
        score = f" {hit.score:.2f}" if hit.score is not None else ""
        console.print(display.text((f"{rank}. {hit.title or '(untitled)'}", "bold"),
                                   (score, "dim")))
        console.print(display.text("   ", (hit.url, "blue")))
        console.print(display.text(f"   {hit.snippet}"))
