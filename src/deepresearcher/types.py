"""Value types shared by the tools, the agent and the protocol."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SearchHit:
    """One search result: what a search engine shows for a page."""

    title: str
    url: str
    snippet: str
    score: float | None = None
    doc_id: str | None = None


@dataclass(frozen=True)
class SearchResult:
    """The hits of one query."""

    query: str
    hits: tuple[SearchHit, ...]


@dataclass(frozen=True)
class Document:
    """A fetched page: its main text split into chunks (reader pages)."""

    url: str
    title: str
    chunks: tuple[str, ...]
    content_type: str = "text/html"


@dataclass(frozen=True)
class PageExtract:
    """What a reader took from one chunk of a page (``page_number`` is the 0-based chunk index)."""

    page_number: int
    page_summary: str


@dataclass(frozen=True)
class BrowseResult:
    """What the browse tool returns for one URL: only extracts new to the episode."""

    url: str
    information: tuple[PageExtract, ...] = ()
    error: str | None = None


@dataclass
class BrowseMemory:
    """Per-episode state of the browse tool (kept in the episode, so tool services stay stateless).

    ``seen`` holds normalized extracts already returned in this episode; ``allowed_urls`` the URLs of
    the episode's most recent search (the only ones the original lets the agent browse);
    ``latest_hits`` every ``(query, url)`` of that search in its order, query by query and rank by
    rank, a URL found twice listed twice; ``read_chunks`` the chunks read per reading key (a URL,
    or one search-result occurrence of it).
    """

    allowed_urls: dict[str, str] = field(default_factory=dict)  # url -> the query that found it
    latest_hits: list[tuple[str, str]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    read_chunks: dict[str, set[int]] = field(default_factory=dict)
