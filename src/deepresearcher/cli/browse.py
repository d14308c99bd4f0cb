"""``deepresearcher browse``: what the browse tool returns for one page (fetch, extract, read)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from deepresearcher.agent.build import ToolSettings
from deepresearcher.cli import display
from deepresearcher.cli.common import (
    ExtractTimeout,
    ReaderBaseUrl,
    ReaderKeyEnv,
    ReaderKind,
    ReaderModel,
)

# Exit codes: 0 the page was read; 3 the fetch was refused or failed, or the reader failed;
# 2 (from main) a usage or configuration error.
EXIT_FAILED = 3


def register(app: typer.Typer) -> None:
    app.command("browse")(browse)


def browse(
    url: str = typer.Argument(..., help="The http(s) URL to read, or a local:// page of "
                              "--world / --index."),
    question: str | None = typer.Option(None, "--question", "-q",
                                        help="The question to read for (default: the title)."),
    sub_question: str | None = typer.Option(None, "--sub-question",
                                            help="The search query that found the page "
                                            "(default: the question)."),
    reader: ReaderKind = "extractive",
    reader_model: ReaderModel = None,
    reader_base_url: ReaderBaseUrl = None,
    reader_key_env: ReaderKeyEnv = "OPENAI_API_KEY",
    chunk_chars: int = typer.Option(8000, "--chunk-chars", min=200,
                                    help="Characters per chunk handed to the reader."),
    cache: Path | None = typer.Option(None, "--cache", help="Shared tool cache (SQLite)."),
    cache_mode: str = typer.Option("read-write", "--cache-mode",
                                   help="read-write, replay or off."),
    allow_host: list[str] = typer.Option([], "--allow-host",
                                         help="Host the guard lets through even if private "
                                         "(repeatable)."),
    allow_network: list[str] = typer.Option([], "--allow-network",
                                            help="CIDR block the guard lets through "
                                            "(repeatable), e.g. 10.0.0.0/8."),
    allow_private: bool = typer.Option(False, "--allow-private",
                                       help="Let private and loopback addresses through."),
    max_bytes: int = typer.Option(ToolSettings.max_page_bytes, "--max-page-bytes", "--max-bytes",
                                  min=1,
                                  help="Largest page body (after decompression)."),
    timeout: float = typer.Option(ToolSettings.fetch_timeout_s, "--fetch-timeout", "--timeout",
                                  min=0.1,
                                  help="Seconds for the whole fetch, redirects included."),
    extract_timeout: ExtractTimeout = ToolSettings.extract_timeout_s,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    world: Path | None = typer.Option(None, "--world",
                                      help="Read local:// pages of this world (world build)."),
    index: Path | None = typer.Option(None, "--index",
                                      help="Read local://corpus/ passages of this index."),
) -> None:
    """Fetch one page and show what the browse tool returns for it."""
    from deepresearcher.agent.build import (
        build_cache,
        build_fetcher,
        build_reader,
        build_toolbox,
    )
    from deepresearcher.errors import ConfigError, FetchError, ReaderError
    from deepresearcher.protocol.deepresearcher7b import browse_payload, format_payload
    from deepresearcher.tools.usage import ToolUsage, counting
    from deepresearcher.types import BrowseMemory, BrowseResult

    settings = ToolSettings(
        search="local", chunk_chars=chunk_chars, cache=cache, cache_mode=cache_mode,
        allow_hosts=tuple(allow_host), allow_networks=tuple(allow_network),
        allow_private=allow_private, max_page_bytes=max_bytes, fetch_timeout_s=timeout,
        extract_timeout_s=extract_timeout,
        reader=reader, reader_model=reader_model, reader_base_url=reader_base_url,
        reader_api_key_env=reader_key_env, world=world, index=index,
    )
    local = world is not None or index is not None
    if url.startswith("local://") and not local:
        raise ConfigError(f"{url} is a page of a local world or index",
                          hint="pass --world DIR (deepresearcher world build) or --index DIR")
    shared = build_cache(settings)
    # The agent's own tools: a world's pages (or an index's passages), else the guarded web.
    fetcher = build_toolbox(settings).fetcher if local else build_fetcher(settings, shared)
    reading = build_reader(settings, shared)
    usage = ToolUsage()

    async def run() -> tuple[Any, list[Any]]:
        try:
            with counting(usage):
                document = await fetcher.fetch(url)
                usage.add(pages=1)
                asked = question or document.title or url
                extracts = await reading.read(document, question=asked,
                                              sub_question=sub_question or asked,
                                              memory=BrowseMemory())
            return document, extracts
        finally:
            for part in (fetcher, reading):
                close = getattr(part, "aclose", None)
                if close is not None:
                    await close()

    try:
        document, extracts = asyncio.run(run())
    except (FetchError, ReaderError) as exc:
        step = "fetch" if isinstance(exc, FetchError) else "read"
        if as_json:
            sys.stdout.write(json.dumps({"url": url, "error": {
                "step": step, "kind": exc.kind, "message": str(exc), "hint": exc.hint}}) + "\n")
        display.print_error(f"{step} failed ({exc.kind}): {exc}", exc.hint)
        raise typer.Exit(EXIT_FAILED) from None
    payload = browse_payload([BrowseResult(url=url, information=tuple(extracts))])
    if as_json:
        sys.stdout.write(display.inert_json(json.dumps({
            "url": url, "title": document.title, "content_type": document.content_type,
            "chunks": len(document.chunks), "payload": payload, "usage": usage.as_dict(),
        }, ensure_ascii=False, indent=2)) + "\n")
        return
    # The page's title and text, its content type and the URL are the page's words: inert.
    console = display.console(highlight=False)
    console.print(display.text((document.title or "(untitled)", "bold"), f"  {url}"))
    where = ("a local page" if local else f"{usage.fetch_bytes:,} bytes downloaded"
             f"{' (from the cache)' if usage.pages_cached else ''}")
    console.print(display.text(f"{document.content_type} · {len(document.chunks)} chunks of "
                               f"at most {chunk_chars:,} characters · {where}", style="dim"))
    for extract in extracts:
        console.print(Text(f"\npage {extract.page_number}", style="bold magenta"))
        console.print(display.text(extract.page_summary))
    if not extracts:
        console.print(Text("\nno extract for this question", style="yellow"))
    console.print(Text("\nwhat the model sees:", style="dim"))
    console.print(display.text(format_payload(payload)))
