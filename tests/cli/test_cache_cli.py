"""``deepresearcher cache``: stats, prune, export and import on a real cache file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from deepresearcher.tools.cache import ToolCache


def cache(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepresearcher.cli.main", "cache", *args],
                          capture_output=True, text=True, timeout=60)


def test_stats_export_import_prune(tmp_path):
    path = tmp_path / "tools.sqlite"
    store = ToolCache(path)
    for i in range(5):
        store.put("search", {"provider": "local", "q": f"q{i}"}, {"hits": [i]})
    store.put("pages", {"url": "local://wiki/x"}, {"text": "x"})
    store.close()

    result = cache("stats", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == {"search": 5, "pages": 1}

    export = tmp_path / "rows.jsonl"
    assert cache("export", str(path), "--out", str(export)).returncode == 0
    assert len(export.read_text().splitlines()) == 6
    copy = tmp_path / "copy.sqlite"
    result = cache("import", str(copy), "--from", str(export))
    assert result.returncode == 0 and "imported 6 rows" in result.stdout
    assert ToolCache(copy).get("search", {"provider": "local", "q": "q3"}) == {"hits": [3]}

    result = cache("prune", str(path), "--older-than-days", "0")
    assert result.returncode == 0 and "removed 6 rows" in result.stdout


def test_a_missing_cache_is_a_clear_error(tmp_path):
    result = cache("stats", str(tmp_path / "none.sqlite"))
    assert result.returncode == 2 and "no cache file" in result.stderr
    assert not (tmp_path / "none.sqlite").exists()


def _fails_in_one_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The error line of a command refused with exit 2 (and at most a hint after it)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) <= 2, result.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def test_a_file_that_is_not_a_cache_is_one_clear_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not sqlite\n" * 50)
    other = tmp_path / "app.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    truncated = tmp_path / "truncated.sqlite"
    store = ToolCache(tmp_path / "full.sqlite")
    for i in range(300):
        store.put("search", {"q": i}, {"text": "x" * 200})
    store.close()
    full = (tmp_path / "full.sqlite").read_bytes()
    truncated.write_bytes(full[: len(full) // 2])
    _fails_in_one_line(cache("stats", str(text)), str(text), "not a SQLite database")
    _fails_in_one_line(cache("stats", str(other)), "not a tool cache", "users")
    _fails_in_one_line(cache("stats", str(tmp_path)), "is a directory")
    _fails_in_one_line(cache("stats", str(truncated)), "is damaged")
    _fails_in_one_line(cache("prune", str(text)), "not a SQLite database")
    _fails_in_one_line(cache("export", str(other), "--out", str(tmp_path / "x.jsonl")),
                       "not a tool cache")
    _fails_in_one_line(cache("import", str(text), "--from", str(text)), "not a SQLite database")
    with sqlite3.connect(other) as conn:  # refused, and left as it was
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("users",)]
    assert not (tmp_path / "x.jsonl").exists()


def test_check_reads_the_whole_file(tmp_path):
    path = tmp_path / "c.sqlite"
    store = ToolCache(path)
    for i in range(300):
        store.put("search", {"q": i}, {"text": "x" * 200})
    store.close()
    result = cache("check", str(path))
    assert result.returncode == 0 and result.stdout.strip() == f"{path}: ok"
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 8192] = b"\x00" * 8192
    path.write_bytes(data)
    _fails_in_one_line(cache("check", str(path)), "is damaged")


def test_a_malformed_export_imports_nothing(tmp_path):
    good = json.dumps({"namespace": "search", "key": "k1", "params": {"q": 1}, "value": 1,
                       "created_at": 1.0, "hits": 0})
    export = tmp_path / "rows.jsonl"
    export.write_text(good + "\n" + good.replace('"value": 1', '"value": 1, "x"') + "\n")
    new = tmp_path / "new.sqlite"
    _fails_in_one_line(cache("import", str(new), "--from", str(export)),
                       f"{export}, line 2: not valid JSON")
    assert not new.exists()  # no empty cache left behind
    existing = tmp_path / "existing.sqlite"
    ToolCache(existing).put("search", {"q": "old"}, {"v": 0})
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(good.encode() + b"\n\xff\xfe\x00\x01garbage\n")
    _fails_in_one_line(cache("import", str(existing), "--from", str(binary)),
                       f"{binary}, line 2: not UTF-8 text")
    stats = json.loads(cache("stats", str(existing), "--json").stdout)
    assert stats["rows"] == {"search": 1}


def test_export_to_a_place_it_cannot_write_fails_before_work(tmp_path):
    path = tmp_path / "c.sqlite"
    ToolCache(path).put("search", {"q": 1}, {"v": 1})
    _fails_in_one_line(cache("export", str(path), "--out", str(tmp_path)), "is a directory")
    _fails_in_one_line(cache("export", str(path), "--out", str(tmp_path / "no" / "r.jsonl")),
                       "no folder", "no")
    _fails_in_one_line(cache("export", str(path), "--out", "/proc/rows.jsonl"), "cannot write")
    # Refused before any row was read or written: nothing was made on the way.
    assert not (tmp_path / "no").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("c.sqlite")) == []


def test_ask_and_browse_check_the_cache_before_any_work(tmp_path, openai_server):
    """Before this check, every search of `ask` failed on the bad file as an internal error and
    the run still answered (exit 0)."""
    from miniworld import write_mini_world

    text = tmp_path / "notes.txt"
    text.write_text("not sqlite\n")
    mini_world = write_mini_world(tmp_path / "world")
    (mini_world / "world.json").write_text(json.dumps({"site": "wiki"}), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    for args in (["ask", "Who founded the Brackenhold Institute?", "--world", str(mini_world),
                  "--base-url", openai_server.base_url, "--model", "tiny", "--api", "chat",
                  "--cache", str(text)],
                 ["browse", "local://wiki/Tarrowmere", "--world", str(mini_world), "--cache",
                  str(text)]):
        result = subprocess.run([sys.executable, "-m", "deepresearcher.cli.main", *args],
                                capture_output=True, text=True, timeout=120, env=env)
        _fails_in_one_line(result, str(text), "not a SQLite database")
    assert openai_server.generation_requests() == []
