"""The LLM judge against a real loopback OpenAI-compatible chat endpoint: verdicts, malformed
replies, retries, errors, the key from the environment, and the SQLite verdict cache."""

from __future__ import annotations

import asyncio
import json

import pytest

from deepresearcher.eval.judge import PROMPT_HASH, Judge, parse_reply
from deepresearcher.tools.cache import ToolCache
from servers.openai_compat import Fault, OpenAICompatServer

QUESTION = "Who founded the Brackenhold Institute?"
GOLDS = ["Velmora Quist"]


def verdict(v: str, why: str = "same person") -> str:
    return json.dumps({"rationale": why, "verdict": v})


@pytest.fixture
def chat():
    with OpenAICompatServer(models=("judge-1",)) as server:
        yield server


def judge_of(server, **kw) -> Judge:
    kw.setdefault("backoff_s", 0.01)
    return Judge("judge-1", server.base_url, **kw)


def run(judge: Judge, prediction: str | None, golds=GOLDS):
    async def go():
        try:
            return await judge.judge(QUESTION, prediction, golds)
        finally:
            await judge.aclose()
    return asyncio.run(go())


def test_parse_reply_accepts_fenced_json_and_rejects_anything_else():
    assert parse_reply('```json\n{"rationale": "r", "verdict": "Correct"}\n```') == ("correct", "r")
    assert parse_reply('{"verdict": "incorrect"}') == ("incorrect", "")
    assert parse_reply('{"rationale": "r", "verdict": "partially correct"}') is None
    assert parse_reply("correct") is None
    assert parse_reply('{"verdict": ') is None


def test_exact_match_and_missing_answer_need_no_call(chat):
    assert run(judge_of(chat), "velmora quist!").outcome == "exact"
    assert run(judge_of(chat), None).outcome == "no_answer"
    assert chat.generation_requests() == []


def test_a_verdict_with_its_rationale_and_the_recorded_temperature(chat):
    chat.push(verdict("correct", "Quist is her surname"))
    v = run(judge_of(chat, temperature=0.7), "Quist")
    assert (v.outcome, v.rationale, v.calls, v.correct) == ("correct", "Quist is her surname", 1,
                                                           True)
    request = chat.generation_requests()[0]
    assert request.path == "/v1/chat/completions" and request.json["temperature"] == 0.7
    assert request.json["model"] == "judge-1"
    user = request.json["messages"][1]["content"]
    assert "Candidate answer: Quist" in user and '["Velmora Quist"]' in user


def test_malformed_replies_are_re_asked_then_counted_unparseable(chat):
    chat.push("I think it is correct.", verdict("incorrect", "different person"))
    v = run(judge_of(chat), "Brackenhold")
    assert (v.outcome, v.calls) == ("incorrect", 2)
    chat.push("nope", "still nope", '{"verdict": "maybe"}')
    v = run(judge_of(chat, reasks=2), "Somebody")
    assert v.outcome == "unparseable" and v.calls == 3 and not v.correct
    assert len(chat.generation_requests()) == 5


def test_rate_limits_and_server_errors_are_retried_then_reported(chat):
    chat.push(Fault.rate_limited(retry_after=0.01), Fault.server_error(503), verdict("correct"))
    assert run(judge_of(chat), "Quist").outcome == "correct"
    chat.push(*[Fault.server_error(500)] * 4)
    v = run(judge_of(chat, max_retries=3), "Quist")
    assert v.outcome == "error" and "500" in v.rationale
    assert len(chat.generation_requests()) == 3 + 4


def test_the_key_comes_from_the_environment(monkeypatch):
    with OpenAICompatServer(models=("judge-1",), api_key="sk-test-123") as server:
        monkeypatch.setenv("JUDGE_KEY", "sk-test-123")
        server.push(verdict("correct"))
        judge = judge_of(server, api_key_env="JUDGE_KEY")
        assert run(judge, "Quist").outcome == "correct"
        assert "sk-test-123" not in json.dumps(judge.settings())
        monkeypatch.delenv("JUDGE_KEY")
        v = run(judge_of(server, api_key_env="JUDGE_KEY"), "Quist")
        assert v.outcome == "error" and "401" in v.rationale


def test_verdicts_are_cached_in_sqlite(chat, tmp_path):
    cache = ToolCache(tmp_path / "cache.sqlite")
    chat.push(verdict("incorrect", "a place, not a person"))
    first = run(judge_of(chat, cache=cache), "Tarrowmere")
    second = run(judge_of(chat, cache=ToolCache(tmp_path / "cache.sqlite")), "Tarrowmere")
    assert first.outcome == second.outcome == "incorrect"
    assert not first.cached and second.cached and second.calls == 0
    assert len(chat.generation_requests()) == 1
    # Another temperature is another protocol: not served from the cache.
    chat.push(verdict("correct"))
    assert not run(judge_of(chat, cache=cache, temperature=0.7), "Tarrowmere").cached
    assert cache.stats().rows == {"judge": 2}
    # Unparseable replies are not cached (a later run may get a proper verdict).
    chat.push("x", "y", "z")
    assert run(judge_of(chat, cache=cache), "Ostrevan").outcome == "unparseable"
    assert cache.stats().rows == {"judge": 2}
    assert len(PROMPT_HASH) == 16
