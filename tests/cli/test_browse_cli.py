"""``deepresearcher browse`` and ``ask`` over the web, as a user runs them: real processes, real
HTTP servers on loopback (a web site, a Serper-format search API, OpenAI-compatible models)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripted import answer_turn, browse_turn, search_turn
from servers.openai_compat import OpenAICompatServer
from servers.search_providers import SearchProviderServer
from servers.web_pages import WebSiteServer

FIXTURES = Path(__file__).parents[1] / "tools" / "fixtures"
QUESTION = "When did Ray Lake die?"


def run(command: str, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_ENDPOINT"))}
    return subprocess.run(
        [sys.executable, "-m", "deepresearcher.cli.main", command, *args],
        capture_output=True, text=True, timeout=timeout,
        env={**clean, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture(scope="module")
def site() -> Iterator[WebSiteServer]:
    with WebSiteServer() as server:
        server.add_page("/ray", (FIXTURES / "article.html").read_bytes())
        server.add_page("/junk", (FIXTURES / "junk.bin").read_bytes(), "text/html")
        yield server


def test_browse_prints_the_payload(site: WebSiteServer) -> None:
    result = run("browse", site.url("/ray"), "--question", QUESTION, "--allow-host", "127.0.0.1",
                 "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["title"] == "The Real Thing (British band)"
    [entry] = out["payload"]
    assert entry["url"] == site.url("/ray")
    assert any("died on 9 March 2000" in i["page_summary"] for i in entry["information"])
    assert out["usage"]["pages_fetched"] == 1 and out["usage"]["fetch_bytes"] > 0

    shown = run("browse", site.url("/ray"), "-q", QUESTION, "--allow-host", "127.0.0.1")
    assert shown.returncode == 0, shown.stderr
    assert "what the model sees" in shown.stdout and "'page_summary'" in shown.stdout


@pytest.mark.parametrize(("url", "kind"), [
    ("{site}/ray", "blocked"),  # loopback without the allow-list
    ("file:///etc/passwd", "blocked"),
    ("http://169.254.169.254/latest/meta-data/", "blocked"),
])
def test_refused_fetch_exits_non_zero_with_the_kind(site: WebSiteServer, url: str,
                                                    kind: str) -> None:
    result = run("browse", url.format(site=site.base_url), "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["error"]["kind"] == kind
    assert f"fetch failed ({kind})" in result.stderr


def test_failed_fetch_kinds(site: WebSiteServer) -> None:
    junk = run("browse", site.url("/junk"), "--allow-host", "127.0.0.1")
    assert junk.returncode == 3 and "(unsupported_type)" in junk.stderr
    missing = run("browse", site.url("/nope"), "--allow-host", "127.0.0.1")
    assert missing.returncode == 3 and "(http_status)" in missing.stderr


def test_browse_a_world_page(tmp_path: Path) -> None:
    from deepresearcher.world import build_world

    build_world(tmp_path / "world", seed=0, entities=40, index=True)
    record = json.loads(run("world", "question", str(tmp_path / "world"), "--json").stdout)
    url = record["supporting_urls"][0]
    result = run("browse", url, "--world", str(tmp_path / "world"), "-q", record["question"],
                 "--json")
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)["payload"]
    assert entry["url"] == url
    text = " ".join(i["page_summary"] for i in entry["information"])
    assert record["evidence"][0]["text"] in text  # the page holds the answer's evidence
    shown = run("browse", url, "--world", str(tmp_path / "world"))
    assert shown.returncode == 0 and "a local page" in shown.stdout

    missing = run("browse", url.rsplit("/", 1)[0] + "/nowhere", "--world", str(tmp_path / "world"))
    assert missing.returncode == 3 and "(not_found)" in missing.stderr
    unplaced = run("browse", url)  # a local page without its world: a usage error with a hint
    assert unplaced.returncode == 2 and "--world" in unplaced.stderr


def test_browse_with_the_llm_reader(site: WebSiteServer) -> None:
    reply = json.dumps({"information": "Ray Lake died on 9 March 2000.", "read_more": False})
    with OpenAICompatServer(models=("reader",), api_key="sk-browse", default_text=reply) as llm:
        result = run("browse", site.url("/ray"), "-q", QUESTION, "--allow-host", "127.0.0.1",
                     "--reader", "llm", "--reader-model", "reader", "--reader-base-url",
                     llm.base_url, "--reader-key-env", "BROWSE_READER_KEY", "--json",
                     env={"BROWSE_READER_KEY": "sk-browse"})
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["payload"][0]["information"] == [
            {"page_number": 0, "page_summary": "Ray Lake died on 9 March 2000."}]
        assert out["usage"]["reader_calls"] == 1 and out["usage"]["reader_prompt_tokens"] > 0
        assert "sk-browse" not in result.stdout + result.stderr


@pytest.mark.slow  # two `ask` processes, ~8 s each here: most of it importing transformers
def test_ask_over_the_web_reports_cost(site: WebSiteServer, openai_server, tiny_tokenizer_dir,
                                       tmp_path: Path) -> None:
    hits = [{"title": "The Real Thing", "url": site.url("/ray"), "snippet": "a British band"}]
    prices = tmp_path / "prices.yaml"
    prices.write_text("search:\n  serper: 3.0\n", encoding="utf-8")
    page_hits = site.hits("/ray")
    with SearchProviderServer("serper", key="serper-secret", hits=hits) as search:
        openai_server.push(search_turn("Ray Lake death", "The Real Thing band"),
                           browse_turn(site.url("/ray")), answer_turn("2000"))
        env = {"SERPER_API_KEY": "serper-secret"}
        common = ["--base-url", openai_server.base_url, "--model", "tiny", "--tokenizer",
                  str(tiny_tokenizer_dir), "--search", "serper", "--endpoint", search.base_url,
                  "--allow-host", "127.0.0.1", "--cache", str(tmp_path / "cache.sqlite"),
                  "--prices", str(prices)]
        result = run("ask", QUESTION, *common, "--json", env=env)
        assert result.returncode == 0, result.stderr
        trajectory = json.loads(result.stdout)
        assert trajectory["answer"] == "2000"
        assert trajectory["sources"] == [site.url("/ray")]
        cost = trajectory["cost"]
        assert (cost["search_queries"], cost["search_upstream"], cost["search_cached"]) == (2, 2, 0)
        assert (cost["pages"], cost["pages_fetched"]) == (1, 1)
        assert cost["usd"] == pytest.approx(2 * 3.0 / 1000)
        assert "serper-secret" not in result.stdout

        # The same episode again: everything from the cache, nothing spent; the summary says so.
        openai_server.push(search_turn("Ray Lake death", "The Real Thing band"),
                           browse_turn(site.url("/ray")), answer_turn("2000"))
        again = run("ask", QUESTION, *common, env=env)
        assert again.returncode == 0, again.stderr
        assert "cost: search 0 upstream / 2 cached" in again.stdout
        assert "pages 0 fetched / 1 cached" in again.stdout and "$0.0000" in again.stdout
        assert len(search.requests) == 2 and site.hits("/ray") == page_hits + 1


HOSTILE = "clear\x1b[2J title\x1b]0;pwned\x07 csi\x9b31m rlo\u202eevil"
HOSTILE_SHOWN = r"clear\x1b[2J title\x1b]0;pwned\x07 csi\x9b31m rlo\u202eevil"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def test_a_hostile_page_reaches_the_terminal_inert(site: WebSiteServer) -> None:
    """A page's <title> and what the reader makes of its text are shown as given, with control
    and bidi characters as escapes and markup as text; --json keeps the exact characters."""
    title = f"Ray {HOSTILE} [/x] [bold]"
    site.add_page("/hostile", (
        f"<html><head><title>{title}</title></head><body><article><h1>Ray Lake</h1>"
        "<p>Ray Lake died on 9 March 2000. He sang in The Real Thing for many years.</p>"
        "</article></body></html>").encode(), "text/html; charset=utf-8")
    summary = f"Ray Lake died in 2000. {HOSTILE} [/x] [bold]"
    reply = json.dumps({"information": summary, "read_more": False})
    with OpenAICompatServer(models=("reader",), api_key="sk-browse", default_text=reply) as llm:
        common = ["browse", site.url("/hostile"), "-q", QUESTION, "--allow-host", "127.0.0.1",
                  "--reader", "llm", "--reader-model", "reader", "--reader-base-url",
                  llm.base_url, "--reader-key-env", "BROWSE_READER_KEY"]
        env = {"BROWSE_READER_KEY": "sk-browse"}
        shown = run(*common, env=env)
        assert shown.returncode == 0, shown.stderr
        assert [raw for raw in RAW if raw in shown.stdout + shown.stderr] == []
        assert shown.stdout.startswith(f"Ray {HOSTILE_SHOWN} [/x] [bold]  {site.url('/hostile')}")
        assert f"\n{summary.replace(HOSTILE, HOSTILE_SHOWN)}\n" in shown.stdout

        as_json = run(*common, "--json", env=env)
        assert as_json.returncode == 0, as_json.stderr
        assert [raw for raw in RAW if raw in as_json.stdout] == []
        out = json.loads(as_json.stdout)
        assert out["title"] == title
        assert out["payload"][0]["information"][0]["page_summary"] == summary


def test_a_failed_url_holding_markup_is_named_exactly(site: WebSiteServer) -> None:
    url = site.url("/x[/x]y [bold]z")
    result = run("browse", url, "--allow-host", "127.0.0.1")
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: fetch failed (http_status): '{url}' answered")


@pytest.mark.parametrize("flag", ["--max-page-bytes", "--max-bytes"])
def test_the_page_cap_flag_and_its_old_name(site: WebSiteServer, flag: str) -> None:
    result = run("browse", site.url("/ray"), "--allow-host", "127.0.0.1", flag, "1000")
    assert result.returncode == 3 and "fetch failed (too_large)" in result.stderr
    assert "--max-page-bytes" in result.stderr  # the hint names the flag


def test_ask_passes_the_page_limits_to_the_fetcher(site: WebSiteServer, openai_server,
                                                   tiny_tokenizer_dir) -> None:
    hits = [{"title": "The Real Thing", "url": site.url("/ray"), "snippet": "a British band"}]
    with SearchProviderServer("serper", key="serper-secret", hits=hits) as search:
        openai_server.push(search_turn("Ray Lake death"), browse_turn(site.url("/ray")),
                           answer_turn("2000"))
        result = run("ask", QUESTION, "--base-url", openai_server.base_url, "--model", "tiny",
                     "--tokenizer", str(tiny_tokenizer_dir), "--search", "serper", "--endpoint",
                     search.base_url, "--allow-host", "127.0.0.1", "--max-page-bytes", "1000",
                     "--fetch-timeout", "5", "--extract-timeout", "5", "--json",
                     env={"SERPER_API_KEY": "serper-secret"})
    assert result.returncode == 0, result.stderr
    [browse] = [t["tool"] for t in json.loads(result.stdout)["turns"]
                if (t.get("tool") or {}).get("name") == "browse_webpage"]
    assert browse["failed_urls"] == {site.url("/ray"): "too_large"}


def test_a_refused_url_holding_markup_and_controls_is_named_exactly() -> None:
    """The error quotes the URL as typed: markup as text, control characters as escapes."""
    url = f"gopher://host/[/x] [bold red]loud[/] {HOSTILE}"
    result = run("browse", url)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
    assert [raw for raw in RAW if raw in result.stderr] == []
    [line, hint] = result.stderr.splitlines()
    assert line.startswith("error: fetch failed (blocked): blocked URL 'gopher://host/[/x] "
                           "[bold red]loud[/] clear\\x1b[2J")
    assert hint.startswith("hint: ")

    as_json = run("browse", url, "--json")
    assert as_json.returncode == 3
    error = json.loads(as_json.stdout)["error"]
    assert error["kind"] == "blocked" and error["step"] == "fetch" and repr(url) in error["message"]
