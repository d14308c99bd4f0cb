"""The quality and contamination filters against a real loopback OpenAI server and a tiny model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from deepresearcher.agent.policy_openai import OpenAIChatPolicy, OpenAICompletionsPolicy
from deepresearcher.cli.data import register
from deepresearcher.data.decisions import DecisionLog
from deepresearcher.data.filters import (
    answer_is_correct,
    contamination_prompt,
    filter_contamination,
    filter_quality,
    parse_judgement,
)
from deepresearcher.data.paper_format import QARecord, read_parquet, write_parquet
from deepresearcher.errors import ConfigError, PolicyError

SRC = Path(__file__).resolve().parents[2] / "src"


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Stand-in root."""

    register(app)
    return app


def _verdict(time_sensitive: bool = False, subjective: bool = False, harmful: bool = False) -> str:
    return json.dumps(
        {
            "time_sensitive": time_sensitive,
            "subjective": subjective,
            "harmful": harmful,
            "reason": "r",
        }
    )


def _question_of(request: Any) -> str:
    """The question a judge or closed-book request is about (the text after 'Question: ')."""
    body = request.json
    text = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
    return text.split("Question: ", 1)[1].split("<|im_end|>")[0].strip()


def test_parse_judgement_is_lenient() -> None:
    fenced = "Sure!\n```json\n" + _verdict(subjective=True) + "\n```\nHope this helps."
    assert parse_judgement(fenced).flags == ["subjective"]  # type: ignore[union-attr]
    loose = (
        'Thinking {not json}. {"Time_Sensitive": "yes", "subjective": "no", '
        '"harmful": false, "reason": "changes"}'
    )
    j = parse_judgement(loose)
    assert j is not None and j.flags == ["time_sensitive"] and j.reason == "changes"
    assert parse_judgement('{"time_sensitive": false}') is None  # flags missing
    assert parse_judgement("I cannot decide.") is None
    assert parse_judgement('{"time_sensitive": maybe}') is None


def test_answer_rule() -> None:
    assert answer_is_correct("The Beatles!", ["the beatles"])
    assert answer_is_correct("beatles the", ["the beatles"])  # F1 = 1.0 on word sets
    assert not answer_is_correct("beatles", ["the beatles"])
    assert answer_is_correct("beatles", ["the beatles"], f1_threshold=0.6)
    assert not answer_is_correct("", ["x"])


def _records(n: int, prefix: str = "q") -> list[QARecord]:
    return [
        QARecord(f"{prefix}_{i}", f"{prefix} question {i}?", [f"gold {i}"], "hotpotqa")
        for i in range(n)
    ]


def test_quality_filter_against_loopback_server(openai_server: Any, tmp_path: Path) -> None:
    records = [
        QARecord("ok_1", "Who wrote Hamlet?", ["Shakespeare"], "nq"),
        QARecord("ts_1", "Who is the current president of France?", ["Macron"], "nq"),
        QARecord("subj_1", "What is the best film ever made?", ["Vertigo"], "tq"),
        QARecord("bad_1", "Garbled judge reply?", ["x"], "tq"),
        QARecord("flaky_1", "When did the Berlin Wall fall?", ["1989"], "hotpotqa"),
    ]
    failed_once: set[str] = set()

    def script(request: Any) -> Any:
        from servers.openai_compat import Fault

        q = _question_of(request)
        if q.startswith("Who is the current"):
            return "```json\n" + _verdict(time_sensitive=True) + "\n```"
        if q.startswith("What is the best"):
            return "Here you go: " + _verdict(subjective=True)
        if q.startswith("Garbled"):
            return '{"time_sensitive": fals'
        if q.startswith("When did") and q not in failed_once:
            failed_once.add(q)
            return Fault.server_error(500)
        return _verdict()

    openai_server.script = script
    policy = OpenAIChatPolicy(openai_server.base_url, "tiny", backoff_s=0.01)
    input_path = write_parquet(records, tmp_path / "in.parquet")
    runner = CliRunner()
    result = runner.invoke(
        _app(),
        [
            "data",
            "filter-quality",
            str(input_path),
            "--out",
            str(tmp_path / "q"),
            "--base-url",
            openai_server.base_url,
            "--model",
            "tiny",
            "--concurrency",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "q"
    decisions = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    by_id = {d["id"]: d for d in decisions}
    assert len(decisions) == 5
    assert (by_id["ok_1"]["keep"], by_id["ok_1"]["reason"]) == (True, "ok")
    assert (by_id["ts_1"]["keep"], by_id["ts_1"]["reason"]) == (False, "time_sensitive")
    assert (by_id["subj_1"]["keep"], by_id["subj_1"]["reason"]) == (False, "subjective")
    assert by_id["bad_1"]["unparseable"] and by_id["bad_1"]["keep"]  # default: keep
    assert by_id["flaky_1"]["keep"]  # the 500 was retried by the policy
    assert [r.id for r in read_parquet(out / "kept.parquet")] == ["ok_1", "bad_1", "flaky_1"]
    assert [r.id for r in read_parquet(out / "dropped.parquet")] == ["ts_1", "subj_1"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["total"], summary["kept"], summary["dropped"], summary["unparseable"]) == (
        5,
        3,
        2,
        1,
    )
    assert summary["by_reason"] == {"ok": 2, "subjective": 1, "time_sensitive": 1, "unparseable": 1}
    assert "kept" in result.output and "unparseable" in result.output
    # The judge saw our system prompt and the question.
    sent = openai_server.generation_requests()[0].json
    assert (
        sent["messages"][0]["role"] == "system"
        and "time_sensitive" in sent["messages"][0]["content"]
        and sent["temperature"] == 0.0
    )

    # Rerunning decides nothing again; other settings in the same directory are refused.
    before = len(openai_server.generation_requests())
    again = asyncio.run(filter_quality(records, policy, out, on_unparseable="keep"))
    assert again.resumed == 5 and again.decided_now == 0
    assert len(openai_server.generation_requests()) == before
    with pytest.raises(ConfigError, match="other settings"):
        asyncio.run(filter_quality(records, policy, out, on_unparseable="drop"))
    dropped = asyncio.run(filter_quality(records, policy, tmp_path / "q2", on_unparseable="drop"))
    assert dropped.kept == 2 and dropped.unparseable == 1


def test_contamination_drops_what_the_model_answers(openai_server: Any, tmp_path: Path) -> None:
    records = _records(4)

    asked: dict[int, int] = {}

    def script(request: Any) -> str:
        q = _question_of(request)
        i = int(q.split()[-1].rstrip("?"))
        asked[i] = asked.get(i, 0) + 1
        if i == 0:
            return "<answer>Gold 0.</answer>"  # the gold, after normalization
        if i == 1:  # first a tagged wrong answer, then the gold without tags
            return "<answer>nope</answer>" if asked[i] == 1 else "gold 1"
        return "<answer>something else</answer>" if i == 2 else "no tags at all"

    openai_server.script = script
    policy = OpenAIChatPolicy(openai_server.base_url, "tiny")
    summary = asyncio.run(filter_contamination(records, policy, tmp_path / "c", k=3, concurrency=2))
    log = DecisionLog(tmp_path / "c" / "decisions.jsonl").load()
    assert not log["q_0"].keep and log["q_0"].reason == "answered_without_search"
    assert log["q_0"].detail["pass_at_k"] == "3/3"
    # An untagged reply still counts when it is exactly the gold.
    assert not log["q_1"].keep
    assert log["q_2"].keep and log["q_2"].reason == "not_answered"
    assert log["q_3"].keep and log["q_3"].unparseable
    assert (summary.kept, summary.dropped, summary.unparseable) == (2, 2, 1)
    assert len(openai_server.generation_requests()) == 12  # k samples per question


def test_contamination_completions_renders_the_chat_template(
    openai_server: Any, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    openai_server.push("<answer>gold 0</answer>")
    policy = OpenAICompletionsPolicy(openai_server.base_url, "tiny", tokenizer=tiny_tokenizer)
    summary = asyncio.run(
        filter_contamination(
            _records(1),
            policy,
            tmp_path / "c",
            k=1,
            render=lambda q: contamination_prompt(q, tiny_tokenizer),
        )
    )
    assert summary.dropped == 1
    prompt = openai_server.generation_requests()[0].json["prompt"]
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    assert "q question 0?" in prompt


def test_contamination_with_tiny_hf_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    records = _records(5)
    input_path = write_parquet(records, tmp_path / "in.parquet")
    result = CliRunner().invoke(
        _app(),
        [
            "data",
            "filter-contamination",
            str(input_path),
            "--out",
            str(tmp_path / "c"),
            "--model",
            str(tiny_model_dir),
            "--k",
            "2",
            "--max-tokens",
            "8",
            "--concurrency",
            "5",
            "--dtype",
            "float32",
        ],
    )
    assert result.exit_code == 0, result.output
    log = DecisionLog(tmp_path / "c" / "decisions.jsonl").load()
    assert sorted(log) == [r.id for r in records]
    for r in records:
        d = log[r.id]
        assert len(d.detail["answers"]) == 2
        # The decision follows from what the model produced.
        correct = [answer_is_correct(a, r.golds) for a in d.detail["answers"]]
        assert d.detail["correct"] == correct and d.keep == (not any(correct))
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["total"] == 5 and summary["kept"] + summary["dropped"] == 5
    assert summary["settings"]["k"] == 2
    assert len(read_parquet(tmp_path / "c" / "kept.parquet")) == summary["kept"]


def test_policy_failure_stops_the_run_and_keeps_decisions(tmp_path: Path) -> None:
    policy = OpenAIChatPolicy("http://127.0.0.1:9/v1", "tiny", max_retries=0)
    with pytest.raises(PolicyError, match="cannot connect"):
        asyncio.run(filter_quality(_records(3), policy, tmp_path / "q"))
    assert (tmp_path / "q" / "filter.json").exists()
    assert not (tmp_path / "q" / "summary.json").exists()


def test_torn_last_line_is_repaired(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    path.write_text('{"id": "a", "keep": true, "reason": "ok"}\n{"id": "b", "ke')
    log = DecisionLog(path)
    assert list(log.load()) == ["a"]
    from deepresearcher.data.decisions import Decision

    log.append(Decision("b", keep=False, reason="x"))
    log.close()
    assert sorted(DecisionLog(path).load()) == ["a", "b"]


def test_resume_after_sigkill(tmp_path: Path, tiny_tokenizer: Any) -> None:
    from servers.openai_compat import OpenAICompatServer

    records = _records(24)
    input_path = write_parquet(records, tmp_path / "in.parquet")
    out = tmp_path / "q"
    code = (
        "import sys, typer\n"
        "from deepresearcher.cli.data import register\n"
        "app = typer.Typer()\n"
        "@app.callback()\n"
        "def _root() -> None:\n"
        "    pass\n"
        "register(app)\n"
        "app(sys.argv[1:])\n"
    )
    with OpenAICompatServer(models=("tiny",), default_text=_verdict(), latency_s=0.15) as server:
        args = [
            "data",
            "filter-quality",
            str(input_path),
            "--out",
            str(out),
            "--base-url",
            server.base_url,
            "--model",
            "tiny",
            "--concurrency",
            "2",
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        decisions = out / "decisions.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if decisions.exists() and decisions.read_text().count("\n") >= 4:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        decided_before = DecisionLog(decisions).load()
        assert 4 <= len(decided_before) < 24
        assert not (out / "summary.json").exists()
        seen_before = len(server.generation_requests())

        result = CliRunner().invoke(_app(), args)
        assert result.exit_code == 0, result.output
        lines = [json.loads(x) for x in decisions.read_text().splitlines()]
        ids = [d["id"] for d in lines]
        assert len(ids) == len(set(ids)) == 24  # no duplicate, none missing
        assert sorted(ids) == sorted(r.id for r in records)
        # The rerun asked only about the questions that had no decision.
        assert len(server.generation_requests()) - seen_before == 24 - len(decided_before)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["resumed"] == len(decided_before) and summary["kept"] == 24


def test_concurrency_is_bounded(tmp_path: Path, tiny_tokenizer: Any) -> None:
    from servers.openai_compat import OpenAICompatServer

    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def script(request: Any) -> str:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return _verdict()

    with OpenAICompatServer(models=("tiny",), script=script) as server:
        policy = OpenAIChatPolicy(server.base_url, "tiny")
        summary = asyncio.run(filter_quality(_records(12), policy, tmp_path / "q", concurrency=3))
    assert summary.kept == 12
    assert state["max"] == 3
