"""HTTP plumbing shared by the tools and policy clients: retries, per-loop clients, bounded bodies.

``with_retries`` runs one attempt at a time and asks the caller which failures are worth another
try and how long the server asked to wait; it knows nothing of any particular API or error type.
``read_body`` / ``send_bounded`` read a reply's body decoded by us, capped on decoded bytes.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

T = TypeVar("T")

log = logging.getLogger(__name__)

# Statuses worth another try in general: timeouts, rate limits and transient server trouble.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Retry:
    """How many times to retry and how long to wait in between.

    ``retries`` counts tries after the first. Waits grow as ``backoff_s * 2**n`` up to
    ``max_backoff_s``, with jitter in the upper half of that window. A server's ``Retry-After`` is
    honored as asked; when it asks for more than ``max_wait_s`` there is no retry (waiting less
    would only be refused again).
    """

    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_wait_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return max(0.0, retry_after)
        # Jitter spreads the retries of many concurrent episodes over the window.
        window = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        return random.uniform(window / 2, window)


NO_RETRY = Retry(retries=0)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header value (delta seconds or an HTTP date); None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait a reply asks for in its ``Retry-After`` header (case-insensitive), if any."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            return parse_retry_after(value)
    return None


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    retry: Retry,
    *,
    should_retry: Callable[[BaseException], bool],
    wait_asked: Callable[[BaseException], float | None] = lambda exc: None,
    label: str = "request",
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """Await ``attempt()`` until it succeeds, fails for good, or ``retry.retries`` are spent.

    A failure is retried when ``should_retry(exc)`` says so; ``wait_asked(exc)`` gives the wait
    the server asked for (``Retry-After``), honored up to ``retry.max_wait_s``. The last failure
    propagates unchanged.
    """
    tries = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if tries >= retry.retries or not should_retry(exc):
                raise
            asked = wait_asked(exc)
            if asked is not None and asked > retry.max_wait_s:
                raise
            wait = retry.delay(tries, asked)
            tries += 1
            log.info(
                "%s failed (%s); retry %d/%d in %.2f s", label, exc, tries, retry.retries, wait
            )
            await sleep(wait)


class PerLoop(Generic[T]):
    """One object per running event loop (an HTTP client, a semaphore). A tool outlives event
    loops (a GRPO rollout runs each step in a new ``asyncio.run``), and such objects are bound
    to the loop they were made in; those of finished loops are dropped when a new one is made."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._items: dict[asyncio.AbstractEventLoop, T] = {}

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        item = self._items.get(loop)
        if item is None:
            self._items = {k: v for k, v in self._items.items() if not k.is_closed()}
            item = self._items[loop] = self._make()
        return item

    def pop_all(self) -> list[T]:
        """Every object made so far (to close them), forgetting them."""
        items, self._items = list(self._items.values()), {}
        return items


# -- bounded bodies ------------------------------------------------------------------------------

# The only content codings asked for, and so the only ones accepted: each is decoded here, with the
# cap counted on decoded bytes as they are produced (httpx's own decoders, brotli and zstd
# included, inflate a whole network chunk at once: a 1.6 KB brotli body becomes 1 GiB).
ACCEPT_ENCODING = "gzip, deflate"
_CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
# Codings stacked on one body (``gzip, gzip`` is legal): more than this is refused.
MAX_CODINGS = 2
# Output of one decompression step: what a single step may hold in memory beyond the cap.
_STEP = 256 * 1024


class BodyError(Exception):
    """A body that cannot be read within its limits (a helper's error: callers turn it into their
    own family's). ``detail``: the short reason, e.g. "decoded: over 8,454,144 bytes".

        BodyError
        ├── BodyTooLarge             more than ``limit`` bytes after decoding, or on the wire
        ├── BodyUnsupportedEncoding  a content coding that was not asked for
        └── BodyCorrupt              a compressed stream that does not decode
    """

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


class BodyTooLarge(BodyError):
    """The body passed its byte cap."""


class BodyUnsupportedEncoding(BodyError):
    """The body is encoded with a coding that was not asked for, or too many of them."""


class BodyCorrupt(BodyError):
    """A compressed body does not decode."""


class _Inflater:
    """One gzip or deflate layer, decoding in steps of at most ``_STEP`` output bytes."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._first = True
        self._new()

    def _new(self) -> None:
        # gzip: header and trailer checked by zlib; deflate: zlib-wrapped as the RFC says, or raw
        # deflate as some servers send (decided on the first error, as browsers do).
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS if self.coding == "gzip"
                                        else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        pending = data
        while True:
            try:
                out = self._zlib.decompress(pending, _STEP)
            except zlib.error as exc:
                if self._first and self.coding == "deflate":
                    self._first = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise BodyCorrupt(f"the {self.coding} body does not decode ({exc})") from exc
            self._first = False
            if out:
                yield out
            pending = self._zlib.unconsumed_tail
            if self._zlib.eof and self._zlib.unused_data:
                # Another gzip member follows (concatenated members are one body).
                pending = self._zlib.unused_data
                if self.coding != "gzip":
                    return  # trailing bytes after a deflate stream: ignored, as browsers do
                self._new()
                continue
            # Done with this input when it is all consumed and the step was not full (a full
            # step may leave output inside zlib).
            if not pending and len(out) < _STEP:
                return

    def finish(self) -> Iterator[bytes]:
        yield from self.feed(b"")


def _inflaters(content_encoding: str) -> list[_Inflater]:
    """The decoders for a ``Content-Encoding`` header, outermost coding first (the order in
    which they are undone), or a :class:`BodyError` for codings that were not asked for."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    refused = [c for c in codings if c not in _CODINGS]
    if refused:
        raise BodyUnsupportedEncoding(f"the reply is encoded with {', '.join(refused)}, which "
                                      f"was not asked for (Accept-Encoding: {ACCEPT_ENCODING})")
    if len(codings) > MAX_CODINGS:
        raise BodyUnsupportedEncoding(f"the reply stacks {len(codings)} content codings "
                                      f"({content_encoding}); at most {MAX_CODINGS} are decoded")
    return [_Inflater(_CODINGS[c]) for c in reversed(codings)]


async def read_body(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed ``response``, decoded, and at most ``limit`` bytes.

    Raises :class:`BodyError` as soon as the decoded body (or any intermediate layer of a stacked
    coding, or the bytes on the wire) passes ``limit``, so memory stays within ``limit`` plus one
    decoding step whatever the compression ratio. httpx transport errors propagate unchanged.
    """
    layers = _inflaters(response.headers.get("content-encoding", ""))
    # The wire may exceed the decoded size a little (framing of an incompressible body).
    wire_limit = limit + _STEP
    body = bytearray()
    wire = 0
    counts = [0] * len(layers)

    def too_large(what: str, size: int) -> BodyTooLarge:
        detail = f"{what}: over {size:,} bytes"
        return BodyTooLarge(f"the body passed the {limit:,}-byte cap ({detail})", detail=detail)

    def push(level: int, pieces: Iterator[bytes]) -> None:
        """Feed ``pieces`` (output of layer ``level - 1``, or the wire) through layer ``level``."""
        for piece in pieces:
            if level == len(layers):
                body.extend(piece)
                if len(body) > limit:
                    raise too_large("decoded", len(body))
                continue
            counts[level] += len(piece) if level else 0
            if counts[level] > limit:
                raise too_large("an inner coding", counts[level])
            push(level + 1, layers[level].feed(piece))

    async for raw in response.aiter_raw():
        wire += len(raw)
        if wire > wire_limit:
            raise too_large("on the wire", wire)
        push(0, iter((raw,)))
    for level, layer in enumerate(layers):
        push(level + 1, layer.finish())
    return bytes(body)


async def send_bounded(client: httpx.AsyncClient, request: httpx.Request,
                       limit: int) -> httpx.Response:
    """Send ``request`` and read its reply's body with :func:`read_body` (at most ``limit``
    decoded bytes): a complete response whose content is the decoded body (its
    ``Content-Encoding`` removed), so ``.json()`` and ``.text`` work as usual."""
    request.headers["Accept-Encoding"] = ACCEPT_ENCODING
    response = await client.send(request, stream=True)
    try:
        content = await read_body(response, limit)
    finally:
        await response.aclose()
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
    return httpx.Response(response.status_code, headers=headers, content=content,
                          request=request, extensions=response.extensions)


# What a reply to a request for ``max_tokens`` tokens may weigh: JSON framing, plus per token its
# text JSON-escaped (``\uXXXX`` for every character at worst) and a log-prob entry. A server that
# sends more is broken or hostile; reading it whole would cost memory and tokenizer time.
REPLY_BASE_BYTES = 64 * 1024
REPLY_BYTES_PER_TOKEN = 256


def reply_limit(max_tokens: int) -> int:
    """The most bytes (decoded) read from a model server's reply to a request for ``max_tokens``."""
    return REPLY_BASE_BYTES + REPLY_BYTES_PER_TOKEN * max(0, max_tokens)
