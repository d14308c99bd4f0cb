"""The interfaces of the tool layer. Implementations live in their own modules."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from deepresearcher.types import BrowseMemory, Document, PageExtract, SearchResult


@runtime_checkable
class SearchBackend(Protocol):
    """Answers queries with ranked hits."""

    name: str

    async def search(self, query: str, *, k: int = 10) -> SearchResult: ...


@runtime_checkable
class Fetcher(Protocol):
    """Turns a URL into a :class:`Document` (main text, chunked). Raises ``FetchError``."""

    async def fetch(self, url: str) -> Document: ...


@runtime_checkable
class Reader(Protocol):
    """Reads a document for a question and returns extracts new to this episode.

    ``key`` names the reading position in ``memory.read_chunks`` (default: the document's URL):
    the chunks read under one key are not read again under it. The paper's browse reads each
    search-result occurrence of a URL under its own key, as the original did.
    """

    async def read(
        self,
        document: Document,
        *,
        question: str,
        sub_question: str,
        memory: BrowseMemory,
        key: str | None = None,
    ) -> list[PageExtract]: ...
