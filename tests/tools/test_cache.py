"""The tool cache against real SQLite files: modes, TTL, single flight, many processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deepresearcher.errors import (
    CacheCorrupt,
    CacheUnwritable,
    ConfigError,
    DataError,
    DeepResearcherError,
    SearchError,
)
from deepresearcher.tools.base import SearchBackend
from deepresearcher.tools.cache import (
    CachedSearch,
    CacheMissError,
    ToolCache,
    make_key,
    search_result_from_json,
    search_result_to_json,
)
from deepresearcher.types import SearchHit, SearchResult


class FakeUpstream:
    """A search backend that sleeps 50 ms per call and counts calls."""

    name = "fake"

    def __init__(self, *, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    async def search(self, query: str, *, k: int = 10) -> SearchResult:
        self.calls += 1
        await asyncio.sleep(0.05)
        if self.fail:
            raise SearchError("upstream exploded", kind="quota")
        return SearchResult(
            query=query,
            hits=tuple(
                SearchHit(
                    title=f"{query} #{i}",
                    url=f"https://example.org/{i}?q=é",
                    snippet="snippet ünïcode 中文",
                    score=0.1 + i / 3 if i % 2 else None,
                    doc_id=str(i) if i % 3 else None,
                )
                for i in range(k)
            ),
        )


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_key_is_stable_and_order_free() -> None:
    assert make_key({"a": 1, "b": "x"}) == make_key({"b": "x", "a": 1})
    assert make_key({"a": 1}) != make_key({"a": 2})


def test_search_result_json_round_trip() -> None:
    result = asyncio.run(FakeUpstream().search("q", k=7))
    data = json.loads(json.dumps(search_result_to_json(result)))
    assert search_result_from_json(data) == result


def test_cached_search_round_trip(tmp_path: Path) -> None:
    upstream = FakeUpstream()
    cached = CachedSearch(upstream, ToolCache(tmp_path / "c.sqlite"))
    assert isinstance(cached, SearchBackend)
    assert cached.name == "fake"
    first = asyncio.run(cached.search("alpha", k=5))
    cached.cache.flush()  # committed (the writer thread would within 50 ms)
    # a fresh instance (as another process would) reads the same row back exactly
    cached2 = CachedSearch(upstream, ToolCache(tmp_path / "c.sqlite"))
    second = asyncio.run(cached2.search("alpha", k=5))
    assert first == second == asyncio.run(FakeUpstream().search("alpha", k=5))
    assert upstream.calls == 1
    assert cached.cache_stats() == (0, 1)
    assert cached2.cache_stats() == (1, 1)
    asyncio.run(cached2.search("alpha", k=3))  # k is part of the key
    assert upstream.calls == 2


def test_web_search_region_and_language_are_part_of_the_cache_key(tmp_path: Path,
                                                                  monkeypatch) -> None:
    from deepresearcher.agent.build import ToolSettings, build_cache, build_search

    monkeypatch.setenv("SERPER_API_KEY", "test-key")
    settings = ToolSettings(search="serper", region="de", language="de",
                            cache=tmp_path / "c.sqlite")
    cached = build_search(settings, build_cache(settings))
    assert isinstance(cached, CachedSearch)
    assert cached.params == {"region": "de", "language": "de"}
    # Rate limits are settings of the provider, not of the answers: not in the key.
    from deepresearcher.train.recipes import ToolsConfig

    limited = ToolSettings.from_config(ToolsConfig(search="serper", search_qps=2.5,
                                                   search_concurrency=3))
    limited_search = build_search(limited, build_cache(settings))
    assert limited_search.params == {}
    assert limited_search.backend.limiter.concurrency == 3
    assert limited_search.backend.limiter.qps == 2.5


def test_get_put_and_wal(tmp_path: Path) -> None:
    cache = ToolCache(tmp_path / "c.sqlite")
    assert cache.get("pages", {"url": "u"}) is None
    cache.put("pages", {"url": "u"}, {"text": "hello", "n": [1, 2.5, None]})
    assert cache.get("pages", {"url": "u"}) == {"text": "hello", "n": [1, 2.5, None]}
    assert cache.get("extracts", {"url": "u"}) is None  # namespaces are separate
    conn = sqlite3.connect(tmp_path / "c.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert cache.stats().stored_hits == {"pages": 1}  # hit counts are batched; stats commits them
    assert conn.execute("SELECT hits FROM cache").fetchone()[0] == 1
    with pytest.raises(TypeError):
        cache.put("pages", {"url": "v"}, {"not json": object()})  # raised to the caller


def test_ttl_expiry(tmp_path: Path) -> None:
    clock = Clock()
    cache = ToolCache(tmp_path / "c.sqlite", ttl_s=100, ttls={"verdicts": 10}, clock=clock)
    cache.put("search", {"q": "a"}, 1)
    cache.put("pages", {"u": "a"}, 2)
    cache.put("verdicts", {"v": "a"}, 3)
    clock.t += 50
    assert (cache.get("search", {"q": "a"}), cache.get("verdicts", {"v": "a"})) == (1, None)
    clock.t += 51
    assert cache.get("search", {"q": "a"}) is None
    clock.t += 10**9
    assert cache.get("pages", {"u": "a"}) == 2  # pages never expire by default
    assert cache.stats().expired == 2
    # replay serves expired rows: it re-executes a recorded run exactly
    assert (
        ToolCache(tmp_path / "c.sqlite", mode="replay", clock=clock).get("search", {"q": "a"}) == 1
    )
    assert cache.prune() == 2
    assert cache.stats().rows == {"pages": 1}
    assert cache.prune(older_than_s=5) == 1
    assert cache.stats().rows == {}


def test_expired_search_is_refreshed(tmp_path: Path) -> None:
    clock = Clock()
    upstream = FakeUpstream()
    cached = CachedSearch(upstream, ToolCache(tmp_path / "c.sqlite", clock=clock))
    asyncio.run(cached.search("q"))
    clock.t += 6 * 24 * 3600
    asyncio.run(cached.search("q"))
    assert upstream.calls == 1
    clock.t += 2 * 24 * 3600  # past 7 days
    asyncio.run(cached.search("q"))
    assert upstream.calls == 2


def test_replay_fails_closed_and_serves_hits(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    recorder = CachedSearch(FakeUpstream(), ToolCache(path))
    recorded = asyncio.run(recorder.search("known"))
    upstream = FakeUpstream()
    replay_cache = ToolCache(path, mode="replay")
    replay = CachedSearch(upstream, replay_cache)
    assert asyncio.run(replay.search("known")) == recorded
    with pytest.raises(CacheMissError) as info:
        asyncio.run(replay.search("unknown query"))
    err = info.value
    assert isinstance(err, SearchError) and isinstance(err, DeepResearcherError)
    assert isinstance(err, CacheMissError)
    assert "unknown query" in str(err) and "replay" in str(err) and "fails closed" in str(err)
    assert upstream.calls == 0
    with pytest.raises(CacheMissError):
        replay_cache.get("pages", {"url": "nope"})
    replay_cache.put("pages", {"url": "nope"}, 1)  # replay never writes
    assert ToolCache(path).get("pages", {"url": "nope"}) is None


def test_off_mode_never_touches_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.sqlite"
    cache = ToolCache(path, mode="off")
    upstream = FakeUpstream()
    cached = CachedSearch(upstream, cache)
    asyncio.run(cached.search("q"))
    asyncio.run(cached.search("q"))
    cache.put("pages", {"u": 1}, 1)
    assert cache.get("pages", {"u": 1}) is None
    assert upstream.calls == 2
    assert cached.cache_stats() == (0, 2)
    assert cache.prune() == 0
    assert cache.stats().rows == {}
    assert not path.parent.exists()


def test_bad_mode() -> None:
    with pytest.raises(ConfigError):
        ToolCache("x.sqlite", mode="write-only")


def test_single_flight_one_upstream_call(tmp_path: Path) -> None:
    upstream = FakeUpstream()
    cached = CachedSearch(upstream, ToolCache(tmp_path / "c.sqlite"))

    async def main() -> list[SearchResult]:
        return await asyncio.gather(*(cached.search("same question", k=4) for _ in range(16)))

    results = asyncio.run(main())
    assert upstream.calls == 1
    assert len(results) == 16 and all(r == results[0] for r in results)
    assert len(results[0].hits) == 4
    assert cached.cache_stats() == (15, 16)
    assert cached.cache.upstream_calls == 1


def test_single_flight_error_reaches_all_and_is_not_cached(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    failing = FakeUpstream(fail=True)
    cached = CachedSearch(failing, ToolCache(path))

    async def main() -> list[SearchResult | BaseException]:
        return await asyncio.gather(
            *(cached.search("doomed") for _ in range(16)), return_exceptions=True
        )

    outcomes = asyncio.run(main())
    assert failing.calls == 1
    assert len(outcomes) == 16
    assert all(isinstance(o, SearchError) and o.kind == "quota" for o in outcomes)
    assert ToolCache(path).stats().rows == {}
    healthy = FakeUpstream()
    assert asyncio.run(CachedSearch(healthy, ToolCache(path)).search("doomed")).hits
    assert healthy.calls == 1


def test_single_flight_survives_a_cancelled_leader(tmp_path: Path) -> None:
    upstream = FakeUpstream()
    cached = CachedSearch(upstream, ToolCache(tmp_path / "c.sqlite"))

    async def main() -> SearchResult:
        leader = asyncio.create_task(cached.search("q"))
        # Wait until the leader is inside its upstream call: a fixed sleep is a race on a
        # loaded machine.
        while upstream.calls == 0:
            await asyncio.sleep(0.001)
        follower = asyncio.create_task(cached.search("q"))
        await asyncio.sleep(0.01)
        leader.cancel()
        return await follower

    assert asyncio.run(main()).query == "q"
    assert upstream.calls == 2


_WORKER = textwrap.dedent(
    """
    import sys
    from deepresearcher.tools.cache import ToolCache
    path, worker = sys.argv[1], int(sys.argv[2])
    cache = ToolCache(path)
    for i in range(200):
        params = {"worker": worker, "i": i}
        cache.put("pages", params, {"worker": worker, "i": i, "text": "x" * 200})
        assert cache.get("pages", params)["i"] == i
        cache.get("pages", {"worker": (worker + 1) % 4, "i": i})  # read others' rows too
    """
)


def test_many_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), str(w)], stderr=subprocess.PIPE, text=True
        )
        for w in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    cache = ToolCache(path)
    assert cache.stats().rows == {"pages": 800}
    for w in range(4):
        for i in range(200):
            assert cache.get("pages", {"worker": w, "i": i}) == {
                "worker": w,
                "i": i,
                "text": "x" * 200,
            }
    assert cache.integrity_check() == "ok"


def test_export_import_round_trip(tmp_path: Path) -> None:
    clock = Clock()
    src = ToolCache(tmp_path / "a.sqlite", clock=clock)
    asyncio.run(CachedSearch(FakeUpstream(), src).search("q1"))
    src.put("verdicts", {"question": "who?", "answer": "me"}, {"correct": True})
    src.put("pages", {"url": "u"}, "ünïcode text")
    out = tmp_path / "dump.jsonl"
    assert src.export_jsonl(out) == 3
    dst = ToolCache(tmp_path / "b.sqlite", mode="replay", clock=clock)
    assert dst.import_jsonl(out) == 3
    assert dst.import_jsonl(out) == 0  # dedupe by key
    assert dst.get("verdicts", {"answer": "me", "question": "who?"}) == {"correct": True}
    assert dst.get("pages", {"url": "u"}) == "ünïcode text"
    upstream = FakeUpstream()
    assert asyncio.run(CachedSearch(upstream, dst).search("q1")) == asyncio.run(
        FakeUpstream().search("q1")
    )
    assert upstream.calls == 0
    out2 = tmp_path / "dump2.jsonl"
    dst.export_jsonl(out2)
    strip = lambda p: [  # noqa: E731
        {k: v for k, v in json.loads(line).items() if k != "hits"}
        for line in p.read_text().splitlines()
    ]
    assert strip(out) == strip(out2)


def _rows_in_file(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM cache").fetchone()[0])
    finally:
        conn.close()


async def _misses(cached: CachedSearch, n: int) -> None:
    await asyncio.gather(*(cached.search(f"query {i}", k=2) for i in range(n)))


def test_queued_stores_are_served_and_committed_by_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    upstream = FakeUpstream()
    cached = CachedSearch(upstream, ToolCache(path))

    async def main() -> None:
        await _misses(cached, 50)
        await _misses(cached, 50)  # queued or committed, this process serves them

    asyncio.run(main())
    assert upstream.calls == 50
    assert cached.cache_stats() == (50, 100)
    # nobody flushes: the writer thread commits on its own, where another connection sees it
    for _ in range(500):
        if _rows_in_file(path) == 50:
            break
        time.sleep(0.01)
    assert _rows_in_file(path) == 50


@pytest.mark.parametrize("then", ["stats", "export", "close", "prune"])
def test_stats_export_close_prune_see_every_queued_store(tmp_path: Path, then: str) -> None:
    path = tmp_path / "c.sqlite"
    cache = ToolCache(path)
    cached = CachedSearch(FakeUpstream(), cache)
    asyncio.run(_misses(cached, 300))
    asyncio.run(_misses(cached, 10))  # 10 hits, counted in memory
    if then == "stats":
        stats = cache.stats()
        assert stats.rows == {"search": 300}
        assert stats.stored_hits == {"search": 10}
    elif then == "export":
        assert cache.export_jsonl(tmp_path / "rows.jsonl") == 300
        hits = [json.loads(line)["hits"] for line in (tmp_path / "rows.jsonl").open()]
        assert sum(hits) == 10
    elif then == "close":
        cache.close()
        assert ToolCache(path).stats().stored_hits == {"search": 10}
    else:
        assert cache.prune(older_than_s=-1) == 300  # sees (and deletes) every queued row
    if then != "prune":
        assert _rows_in_file(path) == 300


_EXITING_WORKER = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from deepresearcher.tools.cache import CachedSearch, ToolCache
    from deepresearcher.types import SearchResult

    class Upstream:
        name = "fake"
        async def search(self, query, *, k=10):
            return SearchResult(query=query, hits=())

    path, how = sys.argv[1], sys.argv[2]
    cache = ToolCache(path)
    for i in range(20):
        cache.put("verdicts", {"i": i}, {"ok": i})  # committed on return
    cached = CachedSearch(Upstream(), cache)

    async def main():
        await asyncio.gather(*(cached.search(f"q{i}") for i in range(500)))

    if how != "drop":
        asyncio.run(main())
    print("done", flush=True)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "drop":  # a short burst, then the caller lets go of its cache at once
        import gc
        async def burst():
            await asyncio.gather(*(cached.search(f"last{i}") for i in range(50)))
        asyncio.run(burst())
        del cached, cache
        gc.collect()
    """
)


# "exit": 500 searches, then a normal exit; "drop": a short burst, then the caller drops its cache
# at once, before the writer's commit window ends (the file must outlive it until committed).
@pytest.mark.parametrize(("how", "searches"), [("exit", 500), ("drop", 50)])
def test_a_process_that_exits_commits_its_queue(tmp_path: Path, how: str, searches: int) -> None:
    path = tmp_path / "c.sqlite"
    done = subprocess.run(
        [sys.executable, "-c", _EXITING_WORKER, str(path), how],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert ToolCache(path).stats().rows == {"search": searches, "verdicts": 20}


def test_a_killed_process_keeps_every_put(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    done = subprocess.run(
        [sys.executable, "-c", _EXITING_WORKER, str(path), "kill"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.stdout.strip() == "done" and done.returncode == -signal.SIGKILL, done.stderr
    # what put() returned from is never lost (searches of the last commit window may be)
    assert ToolCache(path).stats().rows["verdicts"] == 20


def _child_counts_one_hit(path: str) -> None:
    cache = ToolCache(path)
    assert cache.get("pages", {"u": 1}) == "x"
    cache.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_commit_its_parents_queue(tmp_path: Path) -> None:
    import multiprocessing

    path = tmp_path / "c.sqlite"
    cache = ToolCache(path)
    cache.put("pages", {"u": 1}, "x")
    for _ in range(3):
        assert cache.get("pages", {"u": 1}) == "x"  # 3 hits queued in the parent
    child = multiprocessing.get_context("fork").Process(
        target=_child_counts_one_hit, args=(str(path),)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert cache.stats().stored_hits == {"pages": 4}  # the parent's 3 + the child's 1, once


# -- a file that is not a usable cache: one typed error when the cache is opened ------------------


def _cache_with_rows(path: Path, n: int = 300) -> Path:
    store = ToolCache(path)
    for i in range(n):
        store.put("search", {"q": f"q{i}"}, {"text": "x" * 200, "i": i})
    store.close()
    return path


def test_a_file_that_is_not_a_cache_is_refused_when_opened(tmp_path: Path) -> None:
    from deepresearcher.errors import CacheError

    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    folder = tmp_path / "folder"
    folder.mkdir()
    other = tmp_path / "app.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    wrong_columns = tmp_path / "wrong.sqlite"
    with sqlite3.connect(wrong_columns) as conn:
        conn.execute("CREATE TABLE cache (k TEXT, v TEXT)")
    newer = _cache_with_rows(tmp_path / "newer.sqlite", 1)
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 7")
    cases = {
        text: ("not_sqlite", "not a SQLite database"),
        folder: ("is_directory", "is a directory"),
        other: ("not_a_cache", "not a tool cache (its tables: users)"),
        wrong_columns: ("not_a_cache", "its cache table has columns k, v"),
        newer: ("schema_version", "schema version 7; this deepresearcher reads version 1"),
        text / "sub" / "c.sqlite": ("unwritable", "cannot create the folder"),
    }
    for path, (kind, words) in cases.items():
        for mode in ("read-write", "replay"):
            with pytest.raises(CacheError, match=re.escape(words)) as caught:
                ToolCache(path, mode=mode)
            assert caught.value.kind == kind and caught.value.hint
            assert isinstance(caught.value, DeepResearcherError)
    # Another program's database is left exactly as it was: no table added to it.
    with sqlite3.connect(other) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]
    ToolCache(folder, mode="off")  # off never opens anything


def test_a_new_cache_is_stamped_and_an_unstamped_one_still_opens(tmp_path: Path) -> None:
    path = _cache_with_rows(tmp_path / "c.sqlite", 2)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        conn.execute("PRAGMA user_version = 0")  # a file written before the stamp
    assert ToolCache(path).get("search", {"q": "q1"}) == {"text": "x" * 200, "i": 1}


def test_a_damaged_cache_is_a_cache_error_at_open_or_at_the_damaged_page(tmp_path: Path) -> None:
    from deepresearcher.errors import CacheError

    path = _cache_with_rows(tmp_path / "c.sqlite")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match="is damaged") as caught:
        ToolCache(truncated)
    assert isinstance(caught.value, CacheCorrupt) and "cache import" in (caught.value.hint or "")
    # Damage past the schema passes the open check, and is named where it is met.
    damaged = tmp_path / "damaged.sqlite"
    middle = bytearray(data)
    middle[len(data) // 2: len(data) // 2 + 8192] = os.urandom(8192)
    damaged.write_bytes(middle)
    cache = ToolCache(damaged, mode="replay")
    with pytest.raises(CacheError, match="is damaged"):
        cache.stats()
    with pytest.raises(CacheError, match="is damaged"):
        cache.integrity_check()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_a_read_only_cache_is_refused_in_read_write_mode_and_read_in_replay(
        tmp_path: Path) -> None:
    from deepresearcher.errors import CacheError

    path = _cache_with_rows(tmp_path / "c.sqlite", 1)
    path.chmod(0o444)
    try:
        with pytest.raises(CacheError, match="cannot write the tool cache") as caught:
            ToolCache(path)
        assert isinstance(caught.value, CacheUnwritable) and "--cache-mode replay" in caught.value.hint
        assert ToolCache(path, mode="replay").get("search", {"q": "q0"})["i"] == 0
    finally:
        path.chmod(0o644)


def _export_line(**fields: object) -> str:
    row = {"namespace": "search", "key": "k", "params": {"q": "new"}, "value": {"v": 1},
           "created_at": 1.5, "hits": 0, **fields}
    return json.dumps({k: v for k, v in row.items() if v is not ...})


@pytest.mark.parametrize(("bad", "words"), [
    ("this is not json", "line 2: not valid JSON"),
    ('["a", "list"]', "line 2: a list, not a JSON object"),
    (_export_line(key=...), "line 2: no key"),
    (_export_line(namespace=3), "line 2: namespace must be a non-empty string"),
    (_export_line(params="q=1"), "line 2: params must be a JSON object"),
    (_export_line(created_at="yesterday"), "line 2: created_at must be a number"),
    (_export_line(created_at=True), "line 2: created_at must be a number"),
    (_export_line(hits=-1), "line 2: hits must be a whole number"),
    (b"\xff\xfe\x00binary", "line 2: not UTF-8 text"),
])
def test_a_malformed_export_imports_nothing_and_names_the_line(tmp_path: Path, bad: str | bytes,
                                                               words: str) -> None:
    cache = ToolCache(tmp_path / "c.sqlite")
    cache.put("search", {"q": "old"}, {"v": 0})
    export = tmp_path / "rows.jsonl"
    good = _export_line(key="k1").encode()
    export.write_bytes(good + b"\n" + (bad if isinstance(bad, bytes) else bad.encode()) + b"\n"
                       + _export_line(key="k3").encode() + b"\n")
    with pytest.raises(DataError, match=words) as caught:
        cache.import_jsonl(export)
    assert str(export) in str(caught.value) and "nothing was imported" in caught.value.hint
    assert cache.stats().rows == {"search": 1}  # all or nothing: the good first line is not in


def test_a_line_longer_than_the_limit_is_refused(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import deepresearcher.tools.cache as cache_module

    monkeypatch.setattr(cache_module, "MAX_IMPORT_LINE_BYTES", 1024)
    export = tmp_path / "rows.jsonl"
    export.write_text(_export_line() + "\n" + _export_line(value="x" * 5000) + "\n")
    cache = ToolCache(tmp_path / "c.sqlite")
    with pytest.raises(DataError, match="line 2: longer than 0 MiB"):
        cache.import_jsonl(export)
    assert cache.stats().rows == {}


def test_export_checks_where_it_writes_before_reading(tmp_path: Path) -> None:
    cache = ToolCache(_cache_with_rows(tmp_path / "c.sqlite", 2), mode="replay")
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        cache.export_jsonl(folder)
    with pytest.raises(ConfigError, match=r"no folder .*missing"):
        cache.export_jsonl(tmp_path / "missing" / "rows.jsonl")
    with pytest.raises(ConfigError, match="cannot write"):
        cache.export_jsonl(Path("/proc/rows.jsonl"))
    assert list(folder.iterdir()) == []
    out = folder / "rows.jsonl"
    assert cache.export_jsonl(out) == 2
    assert [p.name for p in folder.iterdir()] == ["rows.jsonl"]  # no temporary file left
