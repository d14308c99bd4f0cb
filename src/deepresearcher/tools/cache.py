"""One cache for tool results: SQLite in WAL mode, shared by every process on one machine.

Rows are keyed by ``(namespace, key)`` where ``key`` is the sha256 of the canonical JSON of the
request parameters (provider, query, k, ...). Values are JSON. ``search`` rows expire after
``ttl_s`` (7 days by default, like the paper); other namespaces (pages, extracts, reader outputs,
judge verdicts) never expire unless configured.

Modes:

- ``read-write``: serve hits, call upstream on a miss and store the answer.
- ``replay``: serve hits (ignoring TTL), and fail closed on a miss with :class:`CacheMissError`;
  nothing is written, so a run can be re-executed exactly after the web moves on.
- ``off``: no reads, no writes; the database file is never opened.

Concurrency: each process opens its own connection (reopened after a fork); transactions are
short; ``database is locked`` is retried with backoff on top of SQLite's ``busy_timeout``. Within
one process, concurrent identical requests share one upstream call (single flight, per event loop);
an upstream error reaches every waiter and is not cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from deepresearcher.errors import ConfigError, SearchError
from deepresearcher.tools.base import SearchBackend
from deepresearcher.tools.usage import record
from deepresearcher.types import SearchHit, SearchResult

__all__ = [
    "DEFAULT_SEARCH_TTL_S",
    "CacheMissError",
    "CacheStats",
    "CachedSearch",
    "ToolCache",
    "make_key",
    "search_result_from_json",
    "search_result_to_json",
]

CacheMode = Literal["read-write", "replay", "off"]
_MODES: tuple[str, ...] = ("read-write", "replay", "off")
DEFAULT_SEARCH_TTL_S = 7 * 24 * 3600

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    params     TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at REAL NOT NULL,
    hits       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, key)
)
"""


class CacheMissError(SearchError):
    """Replay mode found no cached answer for a request (replay fails closed)."""

    def __init__(self, namespace: str, key: str, params: Mapping[str, Any]) -> None:
        what = params.get("query", None)
        shown = f"query {what!r}" if what is not None else f"params {_canonical(params)}"
        super().__init__(
            f"cache miss in replay mode: {namespace}/{key[:16]} ({shown}); replay mode fails "
            "closed and never calls upstream",
            kind="cache_miss",
            hint="re-run in read-write mode to record this request, or import a cache that has it",
        )
        self.namespace = namespace
        self.key = key
        self.params = dict(params)


def _canonical(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def make_key(params: Mapping[str, Any]) -> str:
    """The stable key of a request: sha256 of the canonical JSON of its parameters."""
    return hashlib.sha256(_canonical(params).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    """What :meth:`ToolCache.stats` reports: the database, and this instance's counters."""

    rows: dict[str, int]  # namespace -> rows
    stored_hits: dict[str, int]  # namespace -> hits recorded in the database (all processes)
    expired: int  # rows past their namespace's TTL (what ``prune()`` would delete)
    file_bytes: int
    hits: int  # requests of this instance served without an upstream call
    upstream_calls: int  # upstream calls this instance made

    @property
    def requests(self) -> int:
        return self.hits + self.upstream_calls

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0


class ToolCache:
    """A SQLite (WAL) cache of tool results, safe for many processes on one machine.

    ``ttl_s`` is the TTL of the ``search`` namespace; ``ttls`` sets (or overrides) the TTL of any
    namespace in seconds, ``None`` meaning never expire. ``clock`` returns seconds (tests inject it).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str = "read-write",
        ttl_s: float | None = DEFAULT_SEARCH_TTL_S,
        ttls: Mapping[str, float | None] | None = None,
        busy_timeout_ms: int = 30_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in _MODES:
            raise ConfigError(f"unknown cache mode {mode!r}; expected one of {', '.join(_MODES)}")
        self.path = Path(path)
        self.mode = mode
        self.ttls: dict[str, float | None] = {"search": ttl_s}
        if ttls:
            self.ttls.update(ttls)
        self.busy_timeout_ms = busy_timeout_ms
        self.clock = clock
        self.hits = 0
        self.upstream_calls = 0
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.RLock()
        self._inflight: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Future[Any]]
        ] = weakref.WeakKeyDictionary()

    # -- connection -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.mode == "off":
            raise RuntimeError("the cache is off; it never opens its database")
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # a fresh process (or a forked child): never reuse the parent's connection
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(self.path),
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,  # autocommit; transactions are explicit and short
            check_same_thread=False,  # guarded by self._lock
        )
        self._retry(lambda: self._setup(conn))
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(_SCHEMA)

    @staticmethod
    def _retry(op: Callable[[], T], attempts: int = 20) -> T:
        delay = 0.01
        for attempt in range(attempts):
            try:
                return op()
            except sqlite3.OperationalError as e:
                msg = str(e).lower()
                if ("locked" not in msg and "busy" not in msg) or attempt == attempts - 1:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _run(self, write: bool, fn: Callable[[sqlite3.Connection], T]) -> T:
        def op() -> T:
            with self._lock, self._transaction(write) as conn:
                return fn(conn)

        return self._retry(op)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- reads and writes -------------------------------------------------------------------------

    def _expired(self, namespace: str, created_at: float, now: float) -> bool:
        ttl = self.ttls.get(namespace)
        return ttl is not None and now - created_at > ttl

    def _lookup(self, namespace: str, key: str) -> tuple[bool, Any]:
        """(found, value); expired rows count as missing except in replay mode."""
        if self.mode == "off":
            return False, None

        def fn(conn: sqlite3.Connection) -> tuple[bool, Any]:
            row = conn.execute(
                "SELECT value, created_at FROM cache WHERE namespace=? AND key=?", (namespace, key)
            ).fetchone()
            if row is None:
                return False, None
            if self.mode != "replay" and self._expired(namespace, row[1], self.clock()):
                return False, None
            conn.execute(
                "UPDATE cache SET hits = hits + 1 WHERE namespace=? AND key=?", (namespace, key)
            )
            return True, json.loads(row[0])

        return self._run(True, fn)

    def _store(self, namespace: str, key: str, params: Mapping[str, Any], value: Any) -> None:
        if self.mode != "read-write":
            return
        text = json.dumps(value, ensure_ascii=False)
        now = self.clock()
        self._run(
            True,
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO cache (namespace, key, params, value, created_at, hits) "
                "VALUES (?, ?, ?, ?, ?, 0)",
                (namespace, key, _canonical(params), text, now),
            ),
        )

    def get(self, namespace: str, params: Mapping[str, Any]) -> Any | None:
        """The cached JSON value for ``params``, or ``None`` on a miss (or when off).

        In replay mode a miss raises :class:`CacheMissError`.
        """
        key = make_key(params)
        found, value = self._lookup(namespace, key)
        if not found and self.mode == "replay":
            raise CacheMissError(namespace, key, params)
        return value if found else None

    def put(self, namespace: str, params: Mapping[str, Any], value: Any) -> None:
        """Store a JSON-serializable value (read-write mode only; a no-op otherwise)."""
        self._store(namespace, make_key(params), params, value)

    async def get_or_call(
        self,
        namespace: str,
        params: Mapping[str, Any],
        call: Callable[[], Awaitable[T]],
        *,
        encode: Callable[[T], Any],
        decode: Callable[[Any], T],
    ) -> T:
        """The cached answer, or ``call()``'s (stored), with single flight per event loop.

        Concurrent identical requests in one event loop share one lookup and one upstream call;
        an upstream error is raised to every waiter and nothing is cached.
        """
        value, _ = await self.get_or_call_hit(namespace, params, call, encode=encode, decode=decode)
        return value

    async def get_or_call_hit(
        self,
        namespace: str,
        params: Mapping[str, Any],
        call: Callable[[], Awaitable[T]],
        *,
        encode: Callable[[T], Any],
        decode: Callable[[Any], T],
    ) -> tuple[T, bool]:
        """Like :meth:`get_or_call`, also saying whether it was served without an upstream call."""
        if self.mode == "off":
            self.upstream_calls += 1
            return await call(), False
        key = make_key(params)
        loop = asyncio.get_running_loop()
        inflight = self._inflight.setdefault(loop, {})
        while True:
            fut = inflight.get((namespace, key))
            if fut is None:
                break
            await asyncio.wait({fut})  # raises only if *this* task is cancelled
            if fut.cancelled():
                continue  # the leader was cancelled, not us: try again (maybe lead)
            exc = fut.exception()
            if exc is not None:
                raise exc
            self.hits += 1
            return decode(fut.result()), True

        fut = loop.create_future()
        inflight[(namespace, key)] = fut
        try:
            found, value = await asyncio.to_thread(self._lookup, namespace, key)
            hit = found
            if found:
                self.hits += 1
            elif self.mode == "replay":
                raise CacheMissError(namespace, key, params)
            else:
                self.upstream_calls += 1
                value = encode(await call())
                await asyncio.to_thread(self._store, namespace, key, params, value)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved: no "never retrieved" warning without waiters
            raise
        else:
            fut.set_result(value)
        finally:
            inflight.pop((namespace, key), None)
        return decode(value), hit

    # -- maintenance ------------------------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Rows and stored hits per namespace, expired rows, file size, and this instance's counts."""
        rows: dict[str, int] = {}
        stored: dict[str, int] = {}
        expired = 0
        if self.mode != "off" and self.path.exists():
            now = self.clock()

            def fn(conn: sqlite3.Connection) -> int:
                n = 0
                for ns, count, hits in conn.execute(
                    "SELECT namespace, COUNT(*), SUM(hits) FROM cache GROUP BY namespace"
                ):
                    rows[ns], stored[ns] = count, int(hits or 0)
                for ns, ttl in self.ttls.items():
                    if ttl is not None:
                        n += conn.execute(
                            "SELECT COUNT(*) FROM cache WHERE namespace=? AND created_at < ?",
                            (ns, now - ttl),
                        ).fetchone()[0]
                return n

            expired = self._run(False, fn)
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return CacheStats(rows, stored, expired, size, self.hits, self.upstream_calls)

    def prune(self, older_than_s: float | None = None) -> int:
        """Delete expired rows (per-namespace TTL), or, given ``older_than_s``, every row older
        than that in any namespace. Returns the number of rows deleted."""
        if self.mode == "off":
            return 0
        now = self.clock()

        def fn(conn: sqlite3.Connection) -> int:
            if older_than_s is not None:
                return conn.execute(
                    "DELETE FROM cache WHERE created_at < ?", (now - older_than_s,)
                ).rowcount
            n = 0
            for ns, ttl in self.ttls.items():
                if ttl is not None:
                    n += conn.execute(
                        "DELETE FROM cache WHERE namespace=? AND created_at < ?", (ns, now - ttl)
                    ).rowcount
            return n

        return self._run(True, fn)

    def export_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Write every row as one JSON object per line; returns the number of rows."""
        if self.mode == "off":
            raise ConfigError("the cache is off; there is nothing to export")
        rows = self._run(
            False,
            lambda conn: conn.execute(
                "SELECT namespace, key, params, value, created_at, hits FROM cache "
                "ORDER BY namespace, key"
            ).fetchall(),
        )
        with open(path, "w", encoding="utf-8") as f:
            for ns, key, params, value, created_at, hits in rows:
                record = {
                    "namespace": ns,
                    "key": key,
                    "params": json.loads(params),
                    "value": json.loads(value),
                    "created_at": created_at,
                    "hits": hits,
                }
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        return len(rows)

    def import_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Add rows from :meth:`export_jsonl` output, keeping existing keys; returns rows added.

        Imports regardless of mode (except ``off``), so a replay cache can be seeded.
        """
        if self.mode == "off":
            raise ConfigError("the cache is off; it cannot import")
        records = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    records.append(
                        (
                            r["namespace"],
                            r["key"],
                            _canonical(r["params"]),
                            json.dumps(r["value"], ensure_ascii=False),
                            float(r["created_at"]),
                            int(r.get("hits", 0)),
                        )
                    )

        def fn(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO cache (namespace, key, params, value, created_at, hits) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                records,
            )
            return conn.total_changes - before

        return self._run(True, fn)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` (``"ok"`` when healthy)."""
        with self._lock:
            return str(self._connect().execute("PRAGMA integrity_check").fetchone()[0])


# -- search ---------------------------------------------------------------------------------------


def search_result_to_json(result: SearchResult) -> dict[str, Any]:
    return {
        "query": result.query,
        "hits": [
            {
                "title": h.title,
                "url": h.url,
                "snippet": h.snippet,
                "score": h.score,
                "doc_id": h.doc_id,
            }
            for h in result.hits
        ],
    }


def search_result_from_json(data: Mapping[str, Any]) -> SearchResult:
    return SearchResult(
        query=data["query"],
        hits=tuple(
            SearchHit(
                title=h["title"],
                url=h["url"],
                snippet=h["snippet"],
                score=h.get("score"),
                doc_id=h.get("doc_id"),
            )
            for h in data["hits"]
        ),
    )


class CachedSearch:
    """A :class:`SearchBackend` that answers from a :class:`ToolCache` (namespace ``search``).

    The key covers the backend's name, the query, ``k`` and ``params`` (extra settings that change
    answers, e.g. a region). ``cache_stats()`` returns ``(hits, requests)`` for the training log.
    """

    namespace = "search"

    def __init__(
        self,
        backend: SearchBackend,
        cache: ToolCache,
        *,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.name = backend.name
        self.params = dict(params or {})
        self.hits = 0
        self.requests = 0

    async def search(self, query: str, *, k: int = 10) -> SearchResult:
        self.requests += 1
        request = {**self.params, "provider": self.backend.name, "query": query, "k": k}
        result, hit = await self.cache.get_or_call_hit(
            self.namespace,
            request,
            lambda: self.backend.search(query, k=k),
            encode=search_result_to_json,
            decode=search_result_from_json,
        )
        if hit:
            self.hits += 1
            record(search_cached=1)
        return result

    def cache_stats(self) -> tuple[int, int]:
        """``(hits, requests)``: searches served without an upstream call, and all searches."""
        return self.hits, self.requests
