"""The toolbox over the web, end to end on loopback: a Serper-format search server, a web site,
an OpenAI-compatible reader model, the shared cache, and the cost of it all."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepresearcher.agent.build import ToolSettings, build_toolbox
from deepresearcher.agent.toolbox import Toolbox
from deepresearcher.agent.trajectory import Trajectory
from deepresearcher.tools.llm_reader import LLMReader
from deepresearcher.tools.web_fetch import WebFetcher
from deepresearcher.types import BrowseMemory
from servers.openai_compat import OpenAICompatServer
from servers.search_providers import SearchProviderServer
from servers.web_pages import WebSiteServer

FIXTURES = Path(__file__).parent / "fixtures"
QUESTION = "When did Ray Lake die?"


@pytest.fixture
def web(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WebSiteServer, SearchProviderServer]]:
    with WebSiteServer() as site:
        site.add_page("/ray", (FIXTURES / "article.html").read_bytes())
        site.add_page("/secret", b"<html><body><p>internal</p></body></html>")
        hits = [{"title": "Ray Lake", "url": site.url("/ray"), "snippet": "Ray Lake, singer"},
                {"title": "Gone", "url": site.url("/missing"), "snippet": "a dead link"}]
        with SearchProviderServer("serper", key="serper-key", hits=hits) as search:
            monkeypatch.setenv("SERPER_API_KEY", "serper-key")
            yield site, search


def settings(search: SearchProviderServer, tmp_path: Path, **more: object) -> ToolSettings:
    values: dict[str, object] = {"prices": {"search": {"serper": 2.0}}, **more}
    return ToolSettings(search="serper", endpoint=search.base_url, cache=tmp_path / "c.sqlite",
                        allow_hosts=("127.0.0.1",), chunk_chars=400, **values)  # type: ignore[arg-type]


def episode(toolbox: Toolbox, queries: list[str], urls: list[str]) -> BrowseMemory:
    memory = BrowseMemory()

    async def go() -> None:
        await toolbox.search(queries, memory)
        outcome = await toolbox.browse(urls, QUESTION, memory)
        episode.outcome = outcome  # type: ignore[attr-defined]

    asyncio.run(go())
    return memory


def test_search_browse_and_cost_over_the_web(web, tmp_path: Path) -> None:
    site, search = web
    toolbox = build_toolbox(settings(search, tmp_path))
    assert isinstance(toolbox.fetcher, WebFetcher)
    ray, missing = site.url("/ray"), site.url("/missing")

    first = episode(toolbox, ["Ray Lake death", "Ray Lake singer"], [ray, missing])
    outcome = episode.outcome  # type: ignore[attr-defined]
    assert outcome.failed == {missing: "http_status"}
    [result] = [r for r in outcome.results if r.url == ray]
    assert any("Ray Lake" in e.page_summary for e in result.information)
    cost = toolbox.episode_cost(first)
    assert (cost.search_queries, cost.search_upstream, cost.search_cached) == (2, 2, 0)
    assert (cost.pages, cost.pages_fetched, cost.pages_cached) == (1, 1, 0)
    assert cost.fetch_bytes == len((FIXTURES / "article.html").read_bytes())
    assert cost.usd == pytest.approx(2 * 2.0 / 1000)

    # A second episode asks one known query and one new one, and reads the same page.
    second = episode(toolbox, ["Ray Lake death", "Ray Lake band"], [ray])
    cost2 = toolbox.episode_cost(second)
    assert (cost2.search_queries, cost2.search_upstream, cost2.search_cached) == (2, 1, 1)
    assert (cost2.pages, cost2.pages_fetched, cost2.pages_cached) == (1, 0, 1)
    assert cost2.fetch_bytes == 0 and cost2.usd == pytest.approx(2.0 / 1000)
    assert len(search.requests) == 3 and site.hits("/ray") == 1

    run = toolbox.cost(toolbox.usage)
    assert (run.search_queries, run.search_upstream, run.pages, run.pages_fetched) == (4, 3, 2, 1)
    # Stored in a trajectory, it round-trips; a trajectory without it (older files) still loads.
    t = Trajectory(id="x", question=QUESTION, profile="p", model="m", cost=cost)
    assert Trajectory.model_validate_json(t.to_json()).cost == cost
    old = json.loads(t.to_json())
    del old["cost"]
    assert Trajectory.model_validate(old).cost is None


def test_browse_refuses_private_targets_from_search_results(web, tmp_path: Path) -> None:
    site, search = web
    search.hits.append({"title": "Metadata", "url": "http://169.254.169.254/latest/",
                        "snippet": "x"})
    toolbox = build_toolbox(settings(search, tmp_path))
    episode(toolbox, ["q"], ["http://169.254.169.254/latest/"])
    assert episode.outcome.failed == {"http://169.254.169.254/latest/": "blocked"}  # type: ignore[attr-defined]
    # Without the allow-list, the loopback site itself is refused.
    toolbox = build_toolbox(ToolSettings(search="serper", endpoint=search.base_url))
    episode(toolbox, ["q"], [site.url("/ray")])
    assert episode.outcome.failed == {site.url("/ray"): "blocked"}  # type: ignore[attr-defined]
    assert site.hits("/ray") == 0


def test_llm_reader_in_the_toolbox_prices_tokens(web, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    site, search = web
    monkeypatch.setenv("READER_KEY", "sk-r")
    reply = json.dumps({"information": "Ray Lake died in 2000.", "read_more": False})
    with OpenAICompatServer(models=("reader-1",), api_key="sk-r", default_text=reply) as llm:
        toolbox = build_toolbox(settings(
            search, tmp_path, reader="llm", reader_model="reader-1", reader_base_url=llm.base_url,
            reader_api_key_env="READER_KEY",
            prices={"search": {"serper": 0.0},
                    "reader": {"reader-1": {"prompt": 1000.0, "completion": 2000.0}}}))
        assert isinstance(toolbox.reader, LLMReader)
        memory = episode(toolbox, ["Ray Lake death"], [site.url("/ray")])
        [result] = episode.outcome.results  # type: ignore[attr-defined]
        assert [e.page_summary for e in result.information] == ["Ray Lake died in 2000."]
        [request] = llm.generation_requests()
        prompt_tokens = len(json.dumps(request.json["messages"]))
        cost = toolbox.episode_cost(memory)
        assert (cost.reader_calls, cost.reader_upstream) == (1, 1)
        assert cost.reader_prompt_tokens == prompt_tokens
        assert cost.reader_completion_tokens == len(reply)
        assert cost.usd == pytest.approx(prompt_tokens * 1000 / 1e6 + len(reply) * 2000 / 1e6)
        # the same browse in a new episode comes from the cache: no call, no tokens
        again = episode(toolbox, ["Ray Lake death"], [site.url("/ray")])
        assert len(llm.generation_requests()) == 1
        assert toolbox.episode_cost(again).reader_cached == 1
        assert toolbox.episode_cost(again).usd == 0.0


def test_the_webs_limits_from_a_recipe_reach_the_fetcher_and_the_search(web, tmp_path) -> None:
    from deepresearcher.train.recipes import load_recipe

    site, search = web
    recipe = load_recipe("deepresearcher-7b-paper", [
        "tools.search=serper", f"tools.endpoint={search.base_url}", "tools.allow_hosts=[127.0.0.1]",
        "tools.max_page_bytes=1000", "tools.fetch_timeout_s=7", "tools.reader=extractive", "tools.max_redirects=1",
        "tools.extract_timeout_s=3", "tools.search_timeout_s=2", "tools.cache=null",
    ])
    toolbox = build_toolbox(ToolSettings.from_config(recipe.tools))
    fetcher = toolbox.fetcher
    assert isinstance(fetcher, WebFetcher)
    assert (fetcher.max_bytes, fetcher.total_timeout_s, fetcher.max_redirects,
            fetcher.extract_timeout_s) == (1000, 7, 1, 3)
    assert toolbox.search_backend.timeout == 2  # type: ignore[attr-defined]
    # The article is over 1,000 bytes: refused.
    episode(toolbox, ["q"], [site.url("/ray")])
    assert episode.outcome.failed == {site.url("/ray"): "too_large"}  # type: ignore[attr-defined]
