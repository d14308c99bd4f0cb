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

Concurrency: the hot path takes no thread hop. A lookup is one indexed ``SELECT`` on this
process's read connection, run inline (WAL readers never wait for writers); stores and hit
counters queue in memory, where this process's lookups already see them, and one writer thread
per cache commits everything queued in one short transaction. ``put()``, ``flush()``, ``close()``,
``stats()``, ``prune()`` and the exports commit the queue first, and so does interpreter exit.
Each process opens its own connections (dropped after a fork); ``database is locked`` is retried
with backoff on top of SQLite's ``busy_timeout``. Within one process, concurrent identical requests
share one upstream call (single flight, per event loop); an upstream error reaches every waiter
and is not cached.

Opening a cache checks the file before any work: a directory, a file that is not SQLite, a SQLite
database that is not a tool cache (it is left untouched), another schema version, a damaged
database, or a location that cannot be read (or, in read-write mode, written) is a
:class:`~deepresearcher.errors.CacheError` naming the file. A ``sqlite3.DatabaseError`` met later
(a page damaged after the check) is one too.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import itertools
import json
import logging
import math
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

from deepresearcher.errors import (
    CacheCorrupt,
    CacheError,
    CacheIsDirectory,
    CacheLocked,
    CacheNotACache,
    CacheNotSQLite,
    CacheSchemaVersion,
    CacheUnreadable,
    CacheUnwritable,
    ConfigError,
    DataError,
    SearchError,
)
from deepresearcher.tools.base import SearchBackend
from deepresearcher.tools.usage import record
from deepresearcher.types import SearchHit, SearchResult

__all__ = [
    "DAMAGED_HINT",
    "DEFAULT_SEARCH_TTL_S",
    "MAX_IMPORT_LINE_BYTES",
    "SCHEMA_VERSION",
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

log = logging.getLogger(__name__)

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
_COLUMNS = ("namespace", "key", "params", "value", "created_at", "hits")
# PRAGMA user_version of a cache file. Files written before the stamp say 0: the same schema.
SCHEMA_VERSION = 1
# The longest line `import_jsonl` reads: a page row holds at most a few MiB of extracted text.
MAX_IMPORT_LINE_BYTES = 64 * 1024 * 1024
_EXPORT_HINT = ("a cache export holds one JSON object per line with namespace, key, params, value, "
                "created_at and hits (what `deepresearcher cache export` writes); nothing was "
                "imported")
DAMAGED_HINT = ("move the file aside (a run starts a new cache there), or rebuild one from an "
                "export: deepresearcher cache import NEW.sqlite --from EXPORT.jsonl")


class CacheMissError(SearchError):
    """Replay mode found no cached answer for a request (replay fails closed)."""

    kind = "cache_miss"

    def __init__(self, namespace: str, key: str, params: Mapping[str, Any]) -> None:
        what = params.get("query", None)
        shown = f"query {what!r}" if what is not None else f"params {_canonical(params)}"
        super().__init__(
            f"cache miss in replay mode: {namespace}/{key[:16]} ({shown}); replay mode fails "
            "closed and never calls upstream",
            hint="run again with --cache-mode read-write (tools.cache_mode in a recipe) to record "
            "it, or `deepresearcher cache import` a cache that has it",
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


# A row this process stored and the writer has not committed yet: (params, value, created_at).
# Lookups serve it from memory, so a request repeated before the commit is still a hit. Encoding
# it as JSON is the writer's work, off the event loop.
_Row = tuple[Mapping[str, Any], Any, float]

# The writer thread commits this long after the first store it is woken for: the stores of a burst
# go in one transaction, and its work lands after the burst instead of competing with it for the
# GIL. It is also the most a killed process can lose (see ToolCache.flush()).
_COMMIT_WINDOW_S = 0.05
_WRITER_IDLE_S = 1.0  # an idle writer thread exits after this long; the next store starts another
_WRITER_RETRY_S = 1.0  # after a failed commit the writer waits this long; the rows stay queued


# Multi-row statements: one sqlite3 call per chunk, not per row. Each call releases the GIL once
# (executemany releases and retakes it per row, and under load every retake waits for the event
# loop thread to give it up).
_CHUNK = 200  # rows per statement: 200 × 5 parameters, under SQLite's oldest limit of 999
_INSERT_ROWS = (
    "INSERT OR REPLACE INTO cache (namespace, key, params, value, created_at, hits) VALUES {}",
    "(?, ?, ?, ?, ?, 0)",
)
_ADD_HITS = (
    "WITH added (ns, k, n) AS (VALUES {}) UPDATE cache SET hits = hits + "
    "(SELECT n FROM added WHERE ns = cache.namespace AND k = cache.key) "
    "WHERE (namespace, key) IN (SELECT ns, k FROM added)",
    "(?, ?, ?)",
)


def _execute_rows(
    conn: sqlite3.Connection, statement: tuple[str, str], rows: list[tuple[Any, ...]]
) -> None:
    template, placeholder = statement
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        sql = template.format(", ".join([placeholder] * len(chunk)))
        conn.execute(sql, [value for row in chunk for value in row])


def _retry(op: Callable[[], T], path: Path, attempts: int = 20) -> T:
    """``op()``, retried while the database is locked; any other SQLite error (or a lock that
    outlasts the retries) is a :class:`CacheError` naming ``path``."""
    delay = 0.01
    for attempt in range(attempts):
        try:
            return op()
        except sqlite3.DatabaseError as e:
            msg = str(e).lower()
            locked = isinstance(e, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg)
            if not locked or attempt == attempts - 1:
                raise _cache_error(path, e) from e
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


def _cache_error(path: Path, exc: sqlite3.Error) -> CacheError:
    """What a SQLite error says about the cache file at ``path``."""
    msg = str(exc)
    low = msg.lower()
    if "not a database" in low:
        return CacheNotSQLite(f"{path} is not a tool cache: not a SQLite database",
                              hint="pass the path of a tool cache, or a new file name for a "
                              "new one")
    if "malformed" in low or "corrupt" in low:
        return CacheCorrupt(f"the tool cache {path} is damaged ({msg})", hint=DAMAGED_HINT)
    if "readonly" in low or "read-only" in low:
        return CacheUnwritable(f"cannot write the tool cache {path} ({msg})",
                               hint="use --cache-mode replay to only read it, or pass a "
                               "--cache path this user can write")
    if "unable to open" in low:
        unopened = CacheUnreadable if path.exists() else CacheUnwritable
        return unopened(f"cannot open the tool cache {path} ({msg})",
                        hint="check that its folder exists and this user may read and write "
                        "there, or pass another --cache path")
    if "locked" in low or "busy" in low:
        return CacheLocked(f"the tool cache {path} stayed locked ({msg})",
                           hint="another process holds a long write on it: wait, or pass another "
                           "--cache path")
    return CacheError(f"the tool cache {path} failed: {msg}")


def _check_schema(conn: sqlite3.Connection, path: Path) -> bool:
    """True for an empty database (a new cache); a :class:`CacheError` unless the file is a tool
    cache of this schema. Reads only the schema, so it costs the same for any size of file."""
    tables = sorted(name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
    if not tables:
        return True
    columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(cache)"))
    if columns != _COLUMNS:
        found = (f"its cache table has columns {', '.join(columns)}" if "cache" in tables
                 else f"its tables: {', '.join(tables[:8])}")
        raise CacheNotACache(
            f"{path} is a SQLite database but not a tool cache ({found})",
            hint="pass another --cache path; this file belongs to something else and was left "
            "as it is")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, SCHEMA_VERSION):
        raise CacheSchemaVersion(
            f"{path} is a tool cache of schema version {version}; this deepresearcher reads "
            f"version {SCHEMA_VERSION}",
            hint="use the deepresearcher version that wrote it, or pass a new --cache path")
    return False


@contextmanager
def _transaction(conn: sqlite3.Connection, write: bool) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _CacheFile:
    """One cache file as this process uses it: a read connection, a write connection, and the
    queue of stores and hit counts its writer thread commits. Every :class:`ToolCache` of a path
    in a process shares one, so what one instance stored the others serve at once."""

    def __init__(self, path: Path, busy_timeout_ms: int) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.reset()

    def reset(self) -> None:
        """Fresh connections, queue and locks (a forked child must not use its parent's)."""
        self.pid = os.getpid()
        self._read_conn: sqlite3.Connection | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()  # the read connection, used from any thread
        self.write_lock = threading.RLock()  # the write connection; held across a commit
        self._queue_lock = threading.Lock()  # _rows, _hit_counts, _writer
        self._rows: dict[tuple[str, str], _Row] = {}
        self._hit_counts: dict[tuple[str, str], int] = {}
        self._writer: threading.Thread | None = None
        self._wake = threading.Event()

    def _open(self) -> sqlite3.Connection:
        """A new connection to a checked file (see :func:`_check_schema`)."""
        if self.path.is_dir():
            raise CacheIsDirectory(f"{self.path} is a directory, not a tool cache file",
                                   hint=f"pass a file path, e.g. {self.path / 'cache.sqlite'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheUnwritable(f"cannot create the folder of the tool cache {self.path} "
                                  f"({exc.strerror or exc})",
                                  hint="pass a --cache path in a folder this user can write",
                                  ) from exc
        try:
            conn = sqlite3.connect(
                str(self.path),
                timeout=self.busy_timeout_ms / 1000,
                isolation_level=None,  # autocommit; transactions are explicit and short
                check_same_thread=False,  # guarded by _read_lock / write_lock
            )
        except sqlite3.Error as exc:
            raise _cache_error(self.path, exc) from exc

        def setup() -> None:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            # Before anything writes: another program's database is refused, not given a table.
            fresh = _check_schema(conn, self.path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if fresh:
                conn.execute(_SCHEMA)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

        try:
            _retry(setup, self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    def check(self) -> None:
        """Open the read connection now, which checks the file (once per process)."""
        with self._read_lock:
            if self._read_conn is None:
                self._read_conn = self._open()

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in one read transaction; it never waits for a writer (WAL)."""

        def op() -> T:
            with self._read_lock:
                if self._read_conn is None:
                    self._read_conn = self._open()
                with _transaction(self._read_conn, write=False) as conn:
                    return fn(conn)

        return _retry(op, self.path)

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in one write transaction, after committing what is queued."""
        with self.write_lock:
            self.flush()

            def op() -> T:
                if self._write_conn is None:
                    self._write_conn = self._open()
                with _transaction(self._write_conn, write=True) as conn:
                    return fn(conn)

            return _retry(op, self.path)

    def row(self, namespace: str, key: str) -> tuple[str, float] | None:
        """(value as JSON text, created_at), queued or committed; None when absent."""
        queued = self._rows.get((namespace, key))  # a dict read is atomic; no lock needed
        if queued is not None:
            return json.dumps(queued[1]), queued[2]  # a copy: the caller may change what it gets

        def op() -> tuple[str, float] | None:
            with self._read_lock:
                if self._read_conn is None:
                    self._read_conn = self._open()
                return self._read_conn.execute(
                    "SELECT value, created_at FROM cache WHERE namespace=? AND key=?",
                    (namespace, key),
                ).fetchone()

        return _retry(op, self.path)

    def queue(self, row: tuple[tuple[str, str], _Row] | None, hit: tuple[str, str] | None) -> None:
        """Queue a store (which wakes the writer) or a hit count (which waits for a store)."""
        with self._queue_lock:
            if row is not None:
                self._rows[row[0]] = row[1]
            if hit is not None:
                self._hit_counts[hit] = self._hit_counts.get(hit, 0) + 1
            # Held until committed: a caller that lets go of its cache (or exits) loses nothing.
            _PENDING[id(self)] = self
            if self._writer is None:
                self._writer = threading.Thread(
                    target=_write_behind,
                    args=(weakref.ref(self), self._wake),
                    name=f"tool-cache-writer {self.path.name}",
                    daemon=True,  # interpreter exit commits every cache file first (atexit)
                )
                self._writer.start()
        if row is not None:
            self._wake.set()

    def flush(self) -> int:
        """Commit every queued store and hit count in one transaction; returns rows written."""
        with self.write_lock:  # a commit by the writer thread finishes first
            with self._queue_lock:
                rows = list(self._rows.items())
                hits, self._hit_counts = self._hit_counts, {}
            if not rows and not hits:
                self._release_if_idle()
                return 0
            inserts = []
            for (ns, key), (params, value, created_at) in rows:
                try:
                    text = json.dumps(value, ensure_ascii=False)
                except (TypeError, ValueError):  # an encode() bug; put() checks before queueing
                    log.error("tool cache %s: %s/%s is not JSON; not stored", self.path, ns, key)
                    continue
                inserts.append((ns, key, _canonical(params), text, created_at))
            updates = [(ns, key, n) for (ns, key), n in hits.items()]

            def op() -> None:
                if self._write_conn is None:
                    self._write_conn = self._open()
                with _transaction(self._write_conn, write=True) as conn:
                    _execute_rows(conn, _INSERT_ROWS, inserts)
                    _execute_rows(conn, _ADD_HITS, updates)

            try:
                _retry(op, self.path)
            except BaseException:
                with self._queue_lock:  # keep the counts for the next try
                    for k, n in hits.items():
                        self._hit_counts[k] = self._hit_counts.get(k, 0) + n
                raise
            with self._queue_lock:
                for k, queued in rows:
                    if self._rows.get(k) is queued:  # not stored again meanwhile
                        del self._rows[k]
            self._release_if_idle()
            return len(rows)

    def _release_if_idle(self) -> None:
        with self._queue_lock:
            if not (self._rows or self._hit_counts):
                _PENDING.pop(id(self), None)

    def close(self) -> None:
        self.flush()
        with self.write_lock:
            if self._write_conn is not None:
                self._write_conn.close()
            self._write_conn = None
        with self._read_lock:
            if self._read_conn is not None:
                self._read_conn.close()
            self._read_conn = None

    def integrity_check(self) -> str:
        self.flush()

        def op() -> str:
            with self._read_lock:
                if self._read_conn is None:
                    self._read_conn = self._open()
                return str(self._read_conn.execute("PRAGMA integrity_check").fetchone()[0])

        return _retry(op, self.path)


def _write_behind(ref: weakref.ref[_CacheFile], wake: threading.Event) -> None:
    """The writer thread of one cache file: one transaction for whatever is queued at each wake.

    A store wakes it and it commits ``_COMMIT_WINDOW_S`` later; hit counts alone wait for the next
    store or ``_WRITER_IDLE_S``. It exits after that long with nothing queued (the next store starts
    another)."""
    while True:
        woken = wake.wait(_WRITER_IDLE_S)
        if woken:
            time.sleep(_COMMIT_WINDOW_S)
        wake.clear()  # before the commit: a store queued during it wakes the next round
        if not _write_round(ref, woken):
            return


def _write_round(ref: weakref.ref[_CacheFile], woken: bool) -> bool:
    """One round of the writer thread; False when it should exit. The strong reference lives only
    here, so an unused cache file can be collected while its writer waits."""
    file = ref()
    if file is None:
        return False
    with file._queue_lock:
        if not (file._rows or file._hit_counts):
            if woken:
                return True  # someone's flush() committed it already
            file._writer = None
            return False
    try:
        file.flush()
    except Exception:  # the rows stay queued; flush(), stats(), close() raise it to their caller
        log.warning("tool cache %s: commit failed; retrying", file.path, exc_info=True)
        time.sleep(_WRITER_RETRY_S)
    return True


# This process's cache files by absolute path: shared by its ToolCache instances, committed at
# interpreter exit, reset in a forked child.
_FILES: weakref.WeakValueDictionary[str, _CacheFile] = weakref.WeakValueDictionary()
_FILES_LOCK = threading.Lock()
# The files with queued rows or hit counts, held strongly until their commit (by id: dict
# operations are atomic, so the writer thread and callers need no lock for this).
_PENDING: dict[int, _CacheFile] = {}


def _cache_file(path: Path, busy_timeout_ms: int) -> _CacheFile:
    # The first instance's busy timeout holds for the file's connections in this process.
    with _FILES_LOCK:
        name = str(path.absolute())
        file = _FILES.get(name)
        if file is None:
            file = _FILES[name] = _CacheFile(path, busy_timeout_ms)
        return file


def _flush_at_exit() -> None:
    files = {id(f): f for f in list(_FILES.values())}
    files.update(dict(_PENDING))
    for file in files.values():
        if file.pid == os.getpid():
            try:
                file.flush()
            except Exception:
                log.error("tool cache %s: queued rows lost at exit", file.path, exc_info=True)


def _forget_parent() -> None:
    # The parent commits its own queue; the child must not write it twice (hit counts would
    # double), nor use the parent's connections, locks or writer thread.
    global _FILES_LOCK
    _FILES_LOCK = threading.Lock()
    _PENDING.clear()
    for file in list(_FILES.values()):
        file.reset()


atexit.register(_flush_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent)


class ToolCache:
    """A SQLite (WAL) cache of tool results, safe for many processes on one machine.

    ``ttl_s`` is the TTL of the ``search`` namespace; ``ttls`` sets (or overrides) the TTL of any
    namespace in seconds, ``None`` meaning never expire. ``clock`` returns seconds (tests inject it).
    The file is checked here (see the module docstring): a :class:`CacheError` says what is wrong.
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
        self._inflight: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Future[Any]]
        ] = weakref.WeakKeyDictionary()
        # never opened when off
        self._file = None if mode == "off" else _cache_file(self.path, busy_timeout_ms)
        if self._file is not None:
            self._file.check()
            if mode == "read-write":
                _check_writable(self.path)

    def flush(self) -> int:
        """Commit every queued store and hit count of this file in one transaction; returns rows
        written.

        On return, everything queued before the call is in the database (another process sees it).
        The writer thread does this for stores within ``_COMMIT_WINDOW_S``; ``put()``, ``stats()``,
        ``prune()``, the exports, ``close()`` and interpreter exit do it first. A process killed
        outright (SIGKILL, power loss) loses the answers of its last window: never a ``put()``
        that returned, and at worst an upstream call made again later.
        """
        return 0 if self._file is None else self._file.flush()

    def close(self) -> None:
        """Commit what is queued and close the connections (a later call reopens them)."""
        if self._file is not None:
            self._file.close()

    # -- reads and writes -------------------------------------------------------------------------

    def _expired(self, namespace: str, created_at: float, now: float) -> bool:
        ttl = self.ttls.get(namespace)
        return ttl is not None and now - created_at > ttl

    def _lookup(self, namespace: str, key: str) -> tuple[bool, Any]:
        """(found, value); expired rows count as missing except in replay mode."""
        if self._file is None:
            return False, None
        row = self._file.row(namespace, key)
        if row is None:
            return False, None
        if self.mode != "replay" and self._expired(namespace, row[1], self.clock()):
            return False, None
        self._file.queue(None, (namespace, key))
        return True, json.loads(row[0])

    def _store(self, namespace: str, key: str, params: Mapping[str, Any], value: Any) -> None:
        """Queue a row (read-write mode only); this process's lookups see it at once.

        ``value`` must not change afterwards: the writer encodes it later."""
        if self.mode != "read-write" or self._file is None:
            return
        self._file.queue(((namespace, key), (dict(params), value, self.clock())), None)

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
        """Store a JSON-serializable value (read-write mode only; a no-op otherwise).

        Committed on return: another process sees it, and a crash after this cannot lose it.
        """
        if self.mode != "read-write":
            return
        json.dumps(value)  # not JSON: raise here, to the caller, not in the writer
        self._store(namespace, make_key(params), params, value)
        self.flush()

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
        an upstream error is raised to every waiter and nothing is cached. The answer is stored
        write-behind: this process serves it from then on, and the writer thread commits it about
        ``_COMMIT_WINDOW_S`` (50 ms) later (see :meth:`flush`); ``encode``'s result is encoded as
        JSON then, so nothing may change it meanwhile.
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
        fresh = False
        try:
            # Inline, not in a thread: one indexed read of a local file costs less than the
            # hand-off to a thread and back, which under load was most of a request's overhead.
            found, value = self._lookup(namespace, key)
            hit = found
            if found:
                self.hits += 1
            elif self.mode == "replay":
                raise CacheMissError(namespace, key, params)
            else:
                self.upstream_calls += 1
                answer = await call()
                value = encode(answer)
                self._store(namespace, key, params, value)
                fresh = True
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
        # The leader keeps what upstream returned (waiters and hits decode their own copy).
        return (answer if fresh else decode(value)), hit

    # -- maintenance ------------------------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Rows and stored hits per namespace, expired rows, file size, and this instance's counts.

        Commits what this process has queued first, so the numbers include it."""
        rows: dict[str, int] = {}
        stored: dict[str, int] = {}
        expired = 0
        self.flush()
        if self._file is not None and self.path.exists():
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

            expired = self._file.read(fn)
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return CacheStats(rows, stored, expired, size, self.hits, self.upstream_calls)

    def prune(self, older_than_s: float | None = None) -> int:
        """Delete expired rows (per-namespace TTL), or, given ``older_than_s``, every row older
        than that in any namespace. Returns the number of rows deleted."""
        if self._file is None:
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

        return self._file.write(fn)

    def export_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Write every row (queued ones committed first) as one JSON object per line; returns the
        number of rows.

        The destination is checked (and opened) before any row is read: a directory, a missing
        folder or a place this user cannot write is a ``ConfigError``. The rows go to a temporary
        file in the same folder, renamed over ``path`` when complete."""
        if self._file is None:
            raise ConfigError("the cache is off; there is nothing to export")
        out = Path(path)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        fh = _open_export(out, tmp)
        try:
            with fh:
                self.flush()
                rows = self._file.read(
                    lambda conn: conn.execute(
                        "SELECT namespace, key, params, value, created_at, hits FROM cache "
                        "ORDER BY namespace, key"
                    ).fetchall(),
                )
                for ns, key, params, value, created_at, hits in rows:
                    record = {
                        "namespace": ns,
                        "key": key,
                        "params": json.loads(params),
                        "value": json.loads(value),
                        "created_at": created_at,
                        "hits": hits,
                    }
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return len(rows)

    def import_jsonl(self, path: str | os.PathLike[str]) -> int:
        """Add rows from :meth:`export_jsonl` output, keeping existing keys; returns rows added.

        All or nothing: every line is read and checked before the first row is written, and the
        rows go in one transaction, so a malformed line (not UTF-8, not JSON, a missing field or
        a wrong type, longer than ``MAX_IMPORT_LINE_BYTES``) is a ``DataError`` naming the line
        and leaves the cache as it was. Imports regardless of mode (except ``off``), so a replay
        cache can be seeded.
        """
        if self._file is None:
            raise ConfigError("the cache is off; it cannot import")
        records = _read_export(Path(path))

        def fn(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO cache (namespace, key, params, value, created_at, hits) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                records,
            )
            return conn.total_changes - before

        return self._file.write(fn)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` (``"ok"`` when healthy)."""
        if self._file is None:
            raise ConfigError("the cache is off; it has no database to check")
        return self._file.integrity_check()


def _check_writable(path: Path) -> None:
    """A read-write cache must be able to write the file and, for WAL, its folder."""
    where = path if path.exists() else path.parent
    if not os.access(where, os.W_OK) or not os.access(path.parent, os.W_OK):
        raise CacheUnwritable(f"cannot write the tool cache {path} (no write permission on "
                              f"{where})",
                              hint="use --cache-mode replay to only read it, or pass a "
                              "--cache path this user can write")


def _open_export(out: Path, tmp: Path) -> Any:
    """The temporary file an export is written to, after checking where it goes."""
    if out.is_dir():
        raise ConfigError(f"{out} is a directory",
                          hint=f"pass a file path, e.g. {out / 'cache.jsonl'}")
    if not out.parent.is_dir():
        raise ConfigError(f"no folder {out.parent} to write {out.name} in",
                          hint=f"create it first (mkdir -p {out.parent}) or pass another path")
    try:
        return open(tmp, "w", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {out} ({exc.strerror or exc})",
                          hint="pass a path this user can write") from exc


def _read_export(path: Path) -> list[tuple[Any, ...]]:
    """The rows of a cache export, each checked; a ``DataError`` names the first bad line."""
    rows = []
    try:
        with open(path, "rb") as fh:
            for n in itertools.count(1):
                raw = fh.readline(MAX_IMPORT_LINE_BYTES + 1)
                if not raw:
                    break
                where = f"{path}, line {n}"
                if len(raw) > MAX_IMPORT_LINE_BYTES:
                    raise DataError(f"{where}: longer than {MAX_IMPORT_LINE_BYTES >> 20} MiB",
                                    hint=_EXPORT_HINT)
                if raw.strip():
                    rows.append(_export_row(raw, where))
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc})") from exc
    return rows


def _export_row(raw: bytes, where: str) -> tuple[Any, ...]:
    """One line of an export as a row to insert."""
    try:
        r = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text (byte {exc.start + 1} of the line)",
                        hint=_EXPORT_HINT) from exc
    except ValueError as exc:
        raise DataError(f"{where}: not valid JSON ({exc})", hint=_EXPORT_HINT) from exc
    if not isinstance(r, dict):
        raise DataError(f"{where}: a {type(r).__name__}, not a JSON object", hint=_EXPORT_HINT)
    missing = [f for f in _COLUMNS if f not in r and f != "hits"]
    if missing:
        raise DataError(f"{where}: no {', '.join(missing)}", hint=_EXPORT_HINT)
    created, hits = r["created_at"], r.get("hits", 0)
    problem = None
    if not isinstance(r["namespace"], str) or not r["namespace"]:
        problem = "namespace must be a non-empty string"
    elif not isinstance(r["key"], str) or not r["key"]:
        problem = "key must be a non-empty string"
    elif not isinstance(r["params"], dict):
        problem = "params must be a JSON object"
    elif isinstance(created, bool) or not isinstance(created, int | float) \
            or not math.isfinite(created):
        problem = "created_at must be a number (seconds since the epoch)"
    elif isinstance(hits, bool) or not isinstance(hits, int) or hits < 0:
        problem = "hits must be a whole number, 0 or more"
    if problem is not None:
        raise DataError(f"{where}: {problem}", hint=_EXPORT_HINT)
    return (r["namespace"], r["key"], _canonical(r["params"]),
            json.dumps(r["value"], ensure_ascii=False), float(created), hits)


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
