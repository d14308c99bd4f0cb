"""LocalFetcher on real files and a real (or duck-typed) index: types, safety, errors, caching."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import deepresearcher.tools.fetch as fetch_module
from deepresearcher.errors import (
    ConfigError,
    FetchBlocked,
    FetchError,
    FetchExtractFailed,
    FetchNotFound,
    FetchUnsupportedURL,
)
from deepresearcher.tools.base import Fetcher
from deepresearcher.tools.extract import ExtractedPage
from deepresearcher.tools.fetch import LocalFetcher
from deepresearcher.types import Document

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def pages(tmp_path: Path) -> Path:
    """A site folder: an HTML article, a PDF, a text page, a junk page, and a secret outside it."""
    site = tmp_path / "pages"
    site.mkdir()
    shutil.copy(FIXTURES / "article.html", site / "The_Real_Thing.html")
    shutil.copy(FIXTURES / "report.pdf", site / "Glass_Harbour_report.pdf")
    shutil.copy(FIXTURES / "plain.txt", site / "Field_notes.txt")
    shutil.copy(FIXTURES / "junk.bin", site / "Broken.html")
    (site / "topics").mkdir()
    (site / "topics" / "Tides.txt").write_text("Tides rise twice a day.\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("the secret\n", encoding="utf-8")
    return site


def _fetch(fetcher: LocalFetcher, url: str) -> Document:
    return asyncio.run(fetcher.fetch(url))


def _error(fetcher: LocalFetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as caught:
        _fetch(fetcher, url)
    return caught.value


class FakeIndex:
    """A duck-typed index: the one method LocalFetcher needs, answering like LocalSearch does."""

    def __init__(self, pages: dict[str, list[tuple[str, str]]]) -> None:
        self.pages = pages
        self.calls: list[str] = []

    def passages_for_url(self, url: str) -> list[tuple[str, str]]:
        self.calls.append(url)
        return self.pages.get(url, [])


def test_is_a_fetcher(pages: Path) -> None:
    assert isinstance(LocalFetcher(pages), Fetcher)


def test_html_page(pages: Path) -> None:
    doc = _fetch(LocalFetcher(pages), "local://wiki/The_Real_Thing")
    assert doc.url == "local://wiki/The_Real_Thing"
    assert doc.title == "The Real Thing (British band)"
    assert doc.content_type == "text/html"
    assert len(doc.chunks) == 1
    assert "died on 9 March 2000" in doc.chunks[0]
    assert "Log in or create account" not in doc.chunks[0]


def test_pdf_and_text_pages(pages: Path) -> None:
    fetcher = LocalFetcher(pages)
    pdf = _fetch(fetcher, "local://wiki/Glass_Harbour_report")
    assert pdf.content_type == "application/pdf"
    assert "lit for the first time on 14 October 1887" in pdf.chunks[0]
    text = _fetch(fetcher, "local://wiki/Field_notes")
    assert text.content_type == "text/plain"
    assert text.title == "Field notes on the Glass Harbour lighthouse"
    # An explicit extension, a subfolder, a fragment and percent-encoding all name pages.
    assert _fetch(fetcher, "local://wiki/Field_notes.txt").chunks == text.chunks
    assert _fetch(fetcher, "local://wiki/topics/Tides#Section").chunks == (
        "Tides rise twice a day.",
    )
    assert _fetch(fetcher, "local://wiki/Field%5Fnotes").chunks == text.chunks


def test_chunk_size_is_a_setting(pages: Path) -> None:
    doc = _fetch(LocalFetcher(pages, chunk_chars=500), "local://wiki/The_Real_Thing")
    assert len(doc.chunks) > 2
    assert all(len(chunk) <= 500 for chunk in doc.chunks)


@pytest.mark.parametrize(
    "url",
    [
        "local://wiki/../secret",
        "local://wiki/../../../../etc/passwd",
        "local://wiki/topics/../../secret",
        "local://wiki/%2e%2e/secret",
        "local://wiki/%2E%2E%2Fsecret",
        "local://wiki/%252e%252e%252fsecret",
        "local://wiki/..%5csecret",
        "local://wiki//etc/passwd",
        "local://wiki/%2fetc/passwd",
        "local:///etc/passwd",
        "local://wiki/secret%00.txt",
    ],
)
def test_path_traversal_is_blocked(pages: Path, url: str) -> None:
    error = _error(LocalFetcher(pages), url)
    assert isinstance(error, FetchBlocked)
    assert error.url == url


def test_symlink_out_of_the_site_is_blocked(pages: Path) -> None:
    (pages / "Escape.txt").symlink_to(pages.parent / "secret.txt")
    assert isinstance(_error(LocalFetcher(pages), "local://wiki/Escape"), FetchBlocked)


@pytest.mark.parametrize(
    "url", ["https://example.org/page", "http://127.0.0.1/", "file:///etc/passwd", "local://news/x"]
)
def test_unsupported_urls(pages: Path, url: str) -> None:
    error = _error(LocalFetcher(pages), url)
    assert isinstance(error, FetchUnsupportedURL)
    assert error.hint


def test_web_urls_point_to_the_web_fetcher(pages: Path) -> None:
    error = _error(LocalFetcher(pages), "https://example.org/page")
    assert "web fetcher" in (error.hint or "")


def test_missing_page_and_failed_extraction(pages: Path) -> None:
    fetcher = LocalFetcher(pages)
    missing = _error(fetcher, "local://wiki/No_Such_Page")
    assert isinstance(missing, FetchNotFound)
    assert str(pages) in str(missing)
    assert isinstance(_error(fetcher, "local://wiki/"), FetchNotFound)
    broken = _error(fetcher, "local://wiki/Broken")
    assert isinstance(broken, FetchExtractFailed)
    assert "binary" in str(broken)


def test_needs_pages_or_index() -> None:
    with pytest.raises(ConfigError):
        LocalFetcher()
    with pytest.raises(ConfigError, match="passages_for_url"):
        LocalFetcher(index=object())


def test_index_fallback_builds_the_page_from_passages(pages: Path) -> None:
    index = FakeIndex(
        {
            "local://wiki/Ines_Marrow": [
                ("Ines Marrow", "Ines Marrow was the last keeper of the Glass Harbour lighthouse."),
                ("Ines Marrow", "She left the tower in 1962."),
            ]
        }
    )
    fetcher = LocalFetcher(pages, index=index)
    doc = _fetch(fetcher, "local://wiki/Ines_Marrow")
    assert doc.title == "Ines Marrow"
    assert doc.chunks == (
        "Ines Marrow was the last keeper of the Glass Harbour lighthouse.\n\n"
        "She left the tower in 1962.",
    )
    # Files come first: the index is not asked for a page that exists on disk.
    _fetch(fetcher, "local://wiki/Field_notes")
    assert index.calls == ["local://wiki/Ines_Marrow"]
    assert isinstance(_error(fetcher, "local://wiki/Nobody"), FetchNotFound)
    # Index only, no folder.
    assert _fetch(LocalFetcher(index=index), "local://wiki/Ines_Marrow").chunks == doc.chunks


def test_index_failure_is_a_fetch_error() -> None:
    class BrokenIndex:
        def passages_for_url(self, url: str) -> list[tuple[str, str]]:
            raise RuntimeError("index is corrupt")

    error = _error(LocalFetcher(index=BrokenIndex()), "local://wiki/X")
    assert error.kind == "error"
    assert "index is corrupt" in str(error)


def test_real_local_search_index(tmp_path: Path) -> None:
    local_search = pytest.importorskip("deepresearcher.tools.local_search")
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {
            "id": "1",
            "contents": '"Glass Harbour"\nGlass Harbour is a fishing town with a lighthouse.',
        },
        {"id": "2", "contents": '"Ines Marrow"\nInes Marrow kept the Glass Harbour light.'},
        {
            "id": "3",
            "contents": '"Ines Marrow"\nShe left the tower in 1962.',
            "url": "local://corpus/2",
        },
    ]
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    local_search.build_index(corpus, tmp_path / "index")
    index = local_search.LocalSearch.open(tmp_path / "index")
    fetcher = LocalFetcher(index=index, site="corpus")
    hits = asyncio.run(index.search("Ines Marrow keeper", k=1)).hits
    doc = _fetch(fetcher, hits[0].url)
    assert doc.title == "Ines Marrow"
    assert doc.chunks == (
        "Ines Marrow kept the Glass Harbour light.\n\nShe left the tower in 1962.",
    )


def test_an_index_serves_the_urls_its_search_returns(tmp_path: Path) -> None:
    """A corpus whose lines carry their own URLs (a world's corpus indexed on its own, a web
    snapshot): the fetcher of a bare index serves exactly the URLs the index holds."""
    local_search = pytest.importorskip("deepresearcher.tools.local_search")
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"id": "1", "title": "Glass Harbour", "text": "Glass Harbour has a lighthouse.",
         "url": "local://wiki/glass-harbour"},
        {"id": "2", "title": "Ines Marrow", "text": "Ines Marrow kept the light.",
         "url": "https://example.org/ines"},
    ]
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    local_search.build_index(corpus, tmp_path / "index")
    index = local_search.LocalSearch.open(tmp_path / "index")
    fetcher = LocalFetcher(index=index, site="corpus")
    for query, url in (("lighthouse harbour", "local://wiki/glass-harbour"),
                       ("Ines Marrow", "https://example.org/ines")):
        [hit] = asyncio.run(index.search(query, k=1)).hits
        assert hit.url == url
        doc = _fetch(fetcher, hit.url)
        assert doc.url == url and doc.chunks and doc.title in ("Glass Harbour", "Ines Marrow")
    # What the index does not hold stays unsupported (no web access from a local fetcher).
    assert isinstance(_error(fetcher, "https://example.org/other"), FetchUnsupportedURL)
    assert isinstance(_error(fetcher, "local://wiki/nowhere"), FetchUnsupportedURL)
    assert isinstance(_error(fetcher, "local://corpus/9"), FetchNotFound)


def test_concurrent_fetches_of_one_url_share_one_read(
    pages: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_extract = fetch_module.extract_bounded

    async def counting_extract(content: bytes, **options: Any) -> ExtractedPage:
        calls.append(options["url"])
        return await real_extract(content, **options)

    monkeypatch.setattr(fetch_module, "extract_bounded", counting_extract)
    fetcher = LocalFetcher(pages)

    async def rollouts() -> list[Document]:
        return await asyncio.gather(
            *(fetcher.fetch("local://wiki/The_Real_Thing") for _ in range(16)),
            *(fetcher.fetch("local://wiki/Field_notes") for _ in range(4)),
        )

    docs = asyncio.run(rollouts())
    assert len({d.chunks for d in docs[:16]}) == 1
    assert sorted(calls) == ["local://wiki/Field_notes", "local://wiki/The_Real_Thing"]
    # Later fetches are served from the cache too, even after the file is gone.
    (pages / "The_Real_Thing.html").unlink()
    assert _fetch(fetcher, "local://wiki/The_Real_Thing").chunks == docs[0].chunks
    assert len(calls) == 2


def test_cache_is_bounded_and_errors_are_not_cached(pages: Path) -> None:
    fetcher = LocalFetcher(pages, cache_size=1)
    _fetch(fetcher, "local://wiki/Field_notes")
    _fetch(fetcher, "local://wiki/The_Real_Thing")
    (pages / "Field_notes.txt").unlink()
    assert isinstance(_error(fetcher, "local://wiki/Field_notes"), FetchNotFound)  # evicted
    (pages / "Field_notes.txt").write_text("Now it exists.\n", encoding="utf-8")
    assert _fetch(fetcher, "local://wiki/Field_notes").chunks == ("Now it exists.",)


def test_cancelled_caller_does_not_break_the_shared_read(pages: Path) -> None:
    fetcher = LocalFetcher(pages)

    async def scenario() -> Document:
        first = asyncio.ensure_future(fetcher.fetch("local://wiki/The_Real_Thing"))
        second = asyncio.ensure_future(fetcher.fetch("local://wiki/The_Real_Thing"))
        await asyncio.sleep(0)
        first.cancel()
        return await second

    assert "Ray Lake" in asyncio.run(scenario()).chunks[0]
