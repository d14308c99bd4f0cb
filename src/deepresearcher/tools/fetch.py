"""Fetchers: turn a URL into a chunked :class:`~deepresearcher.types.Document`.

:class:`LocalFetcher` serves ``local://<site>/<slug>`` pages from a folder of HTML/PDF/text files,
or from the passages of a local search index, so agents can browse with no network at all.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote

from deepresearcher.errors import (
    ConfigError,
    ExtractError,
    FetchBlocked,
    FetchError,
    FetchExtractFailed,
    FetchExtractTimeout,
    FetchNotFound,
    FetchUnsupportedURL,
)
from deepresearcher.tools.chunking import DEFAULT_CHUNK_CHARS, chunk_text
from deepresearcher.tools.extract_worker import (
    EXTRACT_TIMEOUT_S,
    ExtractTimeoutError,
    extract_bounded,
)
from deepresearcher.types import Document

LOCAL_SCHEME = "local://"
# The file types a local page may have, in lookup order, with the content type each declares.
PAGE_SUFFIXES = {".html": "text/html", ".pdf": "application/pdf", ".txt": "text/plain"}
_WEB_HINT = "LocalFetcher serves only local:// pages; fetching http(s) pages needs the web fetcher"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@runtime_checkable
class PassageSource(Protocol):
    """What :class:`LocalFetcher` needs from a local search index: the passages of one page."""

    def passages_for_url(self, url: str) -> list[tuple[str, str]]:
        """``(title, text)`` of every passage of the page at ``url``, in order; ``[]`` if none."""
        ...


class LocalFetcher:
    """Fetches ``local://<site>/<slug>`` pages: ``pages_dir/<slug>.html|.pdf|.txt``, else the
    page's passages in ``index``; any other URL only from the index, when it holds passages
    under that exact URL (a corpus whose lines carry their own ``url``).

    Parsed documents are kept in a small LRU cache, and concurrent fetches of one URL (a GRPO group
    of 16 rollouts browsing the same page) share one read. A page file is extracted in a worker
    process that is killed after ``extract_timeout_s`` seconds (``extract_timeout``).
    """

    def __init__(
        self,
        pages_dir: Path | None = None,
        *,
        index: object | None = None,
        site: str = "wiki",
        chunk_chars: int = DEFAULT_CHUNK_CHARS,
        cache_size: int = 128,
        extract_timeout_s: float = EXTRACT_TIMEOUT_S,
    ) -> None:
        if pages_dir is None and index is None:
            raise ConfigError(
                "LocalFetcher needs a pages folder, a search index, or both",
                hint="pass pages_dir=Path(...) or index=<a local search index>",
            )
        if index is not None and not isinstance(index, PassageSource):
            raise ConfigError(
                f"{type(index).__name__} has no passages_for_url(url) method",
                hint="pass a local search index (deepresearcher.tools.local_search)",
            )
        if chunk_chars < 1:
            raise ConfigError(f"chunk_chars must be at least 1, got {chunk_chars}")
        if extract_timeout_s <= 0:
            raise ConfigError(f"extract_timeout_s must be positive, got {extract_timeout_s:g}")
        self.pages_dir = Path(pages_dir).resolve() if pages_dir is not None else None
        self.index: PassageSource | None = index
        self.site = site
        self.chunk_chars = chunk_chars
        self.cache_size = cache_size
        self.extract_timeout_s = extract_timeout_s
        self._cache: OrderedDict[str, Document] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Document]] = {}

    async def fetch(self, url: str) -> Document:
        """The document at ``url``. Raises a :class:`FetchError`: ``FetchUnsupportedURL``,
        ``FetchBlocked``, ``FetchNotFound``, ``FetchExtractFailed``, ``FetchExtractTimeout``, or
        the base class for an unreadable file or a failing index."""
        try:
            slug: str | None = self._slug(url)
        except FetchUnsupportedURL:
            # A URL outside this site (another local site, a web address) is still served when
            # the index holds passages under it: the index's own search results name them so.
            if self.index is None or not await self._index_passages(url):
                raise
            slug = None
        key = f"{LOCAL_SCHEME}{self.site}/{slug}" if slug is not None else url
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return _with_url(cached, url)
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._load(key, slug, url))
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._settle(key, done))
        # shield: one caller being cancelled must not cancel the read the others are waiting on.
        document = await asyncio.shield(future)
        return _with_url(document, url)

    def _settle(self, key: str, future: asyncio.Future[Document]) -> None:
        self._inflight.pop(key, None)
        if future.cancelled() or future.exception() is not None:
            return  # errors are not cached: a missing page may be written later
        self._cache[key] = future.result()
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _slug(self, url: str) -> str:
        """The validated page path inside the site, or a :class:`FetchError`."""
        if not url.startswith(LOCAL_SCHEME):
            scheme = _SCHEME.match(url)
            raise FetchUnsupportedURL(
                f"unsupported URL {url!r}: scheme {scheme.group(1)!r}"
                if scheme
                else f"unsupported URL {url!r}: not a local:// URL",
                url=url,
                hint=_WEB_HINT,
            )
        rest = url[len(LOCAL_SCHEME) :].split("#", 1)[0]
        site, sep, raw_slug = rest.partition("/")
        if not site:
            raise FetchBlocked(
                f"blocked URL {url!r}: absolute paths are not pages", url=url
            )
        if site != self.site:
            raise FetchUnsupportedURL(
                f"unsupported URL {url!r}: unknown site {site!r} (this fetcher serves {self.site!r})",
                url=url,
                hint=f"local pages are local://{self.site}/<page>",
            )
        # Decode until stable so that double encodings (%252e%252e) mean what they would to a
        # careless server downstream, and validate the decoded form.
        slug = raw_slug
        for _ in range(4):
            decoded = unquote(slug)
            if decoded == slug:
                break
            slug = decoded
        if not sep or not slug.strip():
            raise FetchNotFound(f"not found: {url!r} names no page", url=url)
        parts = slug.replace("\\", "/").split("/")
        if slug.startswith(("/", "\\")) or "\x00" in slug or any(p in ("..", ".") for p in parts):
            raise FetchBlocked(
                f"blocked URL {url!r}: the page path leaves the site", url=url
            )
        return slug

    async def _load(self, key: str, slug: str | None, url: str) -> Document:
        path = self._find_file(key, slug) if slug is not None else None
        if path is not None:
            return await self._read_file(key, path)
        if self.index is not None:
            # The index gets the URL as spelled in its own search results.
            passages = await self._index_passages(url)
            if passages:
                title = passages[0][0]
                text = "\n\n".join(text for _, text in passages)
                return Document(
                    url=key,
                    title=title,
                    chunks=tuple(chunk_text(text, self.chunk_chars)),
                    content_type="text/plain",
                )
        where = [str(self.pages_dir)] if self.pages_dir is not None else []
        where += ["the search index"] if self.index is not None else []
        raise FetchNotFound(
            f"not found: {key!r} (looked in {' and '.join(where)})", url=key
        )

    def _find_file(self, key: str, slug: str) -> Path | None:
        if self.pages_dir is None:
            return None
        base = self.pages_dir / slug
        candidates = [base] if base.suffix.lower() in PAGE_SUFFIXES else []
        candidates += [base.with_name(base.name + suffix) for suffix in PAGE_SUFFIXES]
        for candidate in candidates:
            resolved = candidate.resolve()
            # Also catches symlinks inside the folder that point out of it.
            if not resolved.is_relative_to(self.pages_dir):
                raise FetchBlocked(
                    f"blocked URL {key!r}: the page path leaves the site", url=key
                )
            if resolved.is_file():
                return resolved
        return None

    async def _read_file(self, key: str, path: Path) -> Document:
        try:
            content = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise FetchError(f"cannot read {key!r}: {exc}", url=key) from exc
        # A pages folder is as untrusted as the web (a world built from crawled pages).
        try:
            page = await extract_bounded(
                content, content_type=PAGE_SUFFIXES.get(path.suffix.lower()), url=key,
                timeout_s=self.extract_timeout_s,
            )
        except ExtractTimeoutError as exc:
            raise FetchExtractTimeout(str(exc), url=key, hint=exc.hint) from exc
        except ExtractError as exc:
            raise FetchExtractFailed(str(exc), url=key, hint=exc.hint) from exc
        title = page.title or path.stem.replace("_", " ")
        chunks = await asyncio.to_thread(chunk_text, page.text, self.chunk_chars)
        return Document(url=key, title=title, chunks=tuple(chunks), content_type=page.content_type)

    async def _index_passages(self, url: str) -> list[tuple[str, str]]:
        assert self.index is not None
        try:
            found = await asyncio.to_thread(self.index.passages_for_url, url)
        except Exception as exc:  # the index is duck-typed: any failure of it is a fetch error
            raise FetchError(
                f"the search index failed on {url!r}: {exc}", url=url
            ) from exc
        return [(str(title), str(text)) for title, text in found if str(text).strip()]


def _with_url(document: Document, url: str) -> Document:
    """The cached document under the spelling of the URL the caller asked for."""
    if document.url == url:
        return document
    return Document(
        url=url, title=document.title, chunks=document.chunks, content_type=document.content_type
    )
