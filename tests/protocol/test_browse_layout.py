"""The paper profile's browse observation is laid out as the original's reader laid it out: one
entry per occurrence of a requested URL in the latest search, in search order, each occurrence read
for its own query; pinned against the original tool server's real replies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from deepresearcher.agent.toolbox import Toolbox
from deepresearcher.protocol import ProfileSettings, get_profile
from deepresearcher.protocol.deepresearcher7b import browse_payload, format_payload
from deepresearcher.types import (
    BrowseMemory,
    Document,
    PageExtract,
    SearchHit,
    SearchResult,
)

GOLDEN = json.loads((Path(__file__).parent / "golden" / "original_browse.json").read_text())
QUESTION = "what happened to ray lake of the real thing"


class RecordedSearch:
    """The original's search results for each query (titles and snippets do not matter here)."""

    name = "recorded"

    async def search(self, query: str, *, k: int = 10) -> SearchResult:
        [block] = [b for b in GOLDEN["search"] if b["search_query"] == query]
        return SearchResult(query=query, hits=tuple(
            SearchHit(title="t", url=u, snippet="s") for u in block["urls"][:k]))


class Pages:
    async def fetch(self, url: str) -> Document:
        return Document(url=url, title="t", chunks=("text",), content_type="text/html")


class RecordedReader:
    """What the original's LLM reader extracted, per search-result occurrence: the i-th read of a
    URL gets the i-th entry the original returned for it. Records the query each read was for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    async def read(self, document: Document, *, question: str, sub_question: str,
                   memory: BrowseMemory, key: str | None = None) -> list[PageExtract]:
        self.calls.append((document.url, sub_question, key))
        nth = sum(1 for url, _, _ in self.calls if url == document.url) - 1
        entries = [e for e in GOLDEN["read"] if e["url"] == document.url]
        return [PageExtract(i["page_number"], i["page_summary"]) for i in entries[nth]["information"]]


def browse(url_list: list[str]) -> tuple[str, RecordedReader, object]:
    reader = RecordedReader()
    toolbox = Toolbox(RecordedSearch(), Pages(), reader)
    profile = get_profile("deepresearcher-7b", ProfileSettings(date="2025-04-03"))
    memory = BrowseMemory()

    async def go() -> object:
        await toolbox.search([b["search_query"] for b in GOLDEN["search"]], memory)
        return await toolbox.browse(url_list, QUESTION, memory,
                                    per_occurrence=profile.browse_layout == "per_occurrence")

    outcome = asyncio.run(go())
    return profile.format_browse(outcome.results), reader, outcome  # type: ignore[attr-defined]


def test_the_browse_observation_is_the_originals_byte_for_byte() -> None:
    observation, reader, _ = browse(GOLDEN["url_list"])
    assert observation == format_payload(GOLDEN["read"])
    # Search order, one read per occurrence, each for the query whose results held it.
    occurrences = [(url, block["search_query"]) for block in GOLDEN["search"]
                   for url in block["urls"] if url in GOLDEN["url_list"]]
    assert [(url, query) for url, query, _ in reader.calls] == occurrences
    assert len({key for _, _, key in reader.calls}) == len(occurrences)  # a position each


def test_a_url_not_in_the_latest_search_gets_no_entry() -> None:
    wiki = "https://en.wikipedia.org/wiki/The_Real_Thing_(British_band)"
    observation, _, outcome = browse(["https://example.org/not-found-by-search", wiki])
    entries = [e for e in GOLDEN["read"] if e["url"] == wiki]
    assert observation == format_payload(entries)
    assert outcome.refused == ["https://example.org/not-found-by-search"]  # type: ignore[attr-defined]


def test_the_per_url_layout_keeps_one_entry_per_requested_url_in_request_order() -> None:
    wiki = "https://en.wikipedia.org/wiki/The_Real_Thing_(British_band)"
    news = "https://www.bbc.com/news/articles/cm24ey4dv6eo"
    toolbox = Toolbox(RecordedSearch(), Pages(), RecordedReader())
    memory = BrowseMemory()

    async def go() -> object:
        await toolbox.search([b["search_query"] for b in GOLDEN["search"]], memory)
        return await toolbox.browse([news, "https://example.org/x", wiki], QUESTION, memory)

    outcome = asyncio.run(go())
    assert [(r.url, r.error) for r in outcome.results] == [  # type: ignore[attr-defined]
        (news, None), ("https://example.org/x", "not_in_latest_search"), (wiki, None)]
    assert browse_payload(outcome.results)[1] == {  # type: ignore[attr-defined]
        "information": [], "url": "https://example.org/x"}
