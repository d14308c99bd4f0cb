"""A run directory end to end in process: card, refusal on a changed protocol, report, compare."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from eval_helpers import research_turn

from deepresearcher.agent.build import ToolSettings, build_toolbox
from deepresearcher.agent.config import AgentConfig
from deepresearcher.errors import ConfigError
from deepresearcher.eval import session
from deepresearcher.eval.compare import compare_runs
from deepresearcher.eval.runner import EvalRunner
from scripted import ScriptedPolicy


def _run(out, questions_file, tiny_tokenizer, eval_world, *, max_turns=4, samples=1):
    selection = session.Selection(data=str(questions_file))
    data, records = session.select_questions(selection)
    config = AgentConfig(date="2025-04-03", max_turns=max_turns, temperature=0.0,
                         record_tokens=False)
    tools = session.ToolsInfo(search="local", reader="ExtractiveReader", cache_mode="off",
                              world=str(eval_world))
    card = session.build_card(selection=selection, data=data, records=records,
                              model={"name": "scripted", "base_url": None}, config=config,
                              samples=samples, tools=tools, judge=None)
    session.open_run(out, card, records)
    policy = ScriptedPolicy(lambda prompt, turn: research_turn(prompt.text), tiny_tokenizer)
    runner = EvalRunner(policy, build_toolbox(ToolSettings(world=eval_world)), config,
                        samples=samples, concurrency=4)
    asyncio.run(session.run_session(out, card, records, runner))
    return card, session.finish(out, card, records, samples, paper=False)


def test_run_directory_card_report_and_refusal(tmp_path, questions_file, tiny_tokenizer,
                                               eval_world):
    out = tmp_path / "run"
    card, scores = _run(out, questions_file, tiny_tokenizer, eval_world, samples=2)
    assert json.loads((out / "protocol.json").read_text()) == card
    assert scores["samples_per_question"] == 2 and scores["complete"]
    f1 = scores["overall"]["metrics"]["f1"]
    assert f1["mean"] == 1.0 and f1["pass@2"] == 1.0 and f1["ci95"] == [1.0, 1.0]
    assert "F1 pass@2" in (out / "report.md").read_text()
    assert (out / "scores.png").stat().st_size > 1000
    # The run's trajectory file re-scores to the same numbers.
    from deepresearcher.eval.rescore import rescore

    again = rescore(out / "trajectories.jsonl", tmp_path / "rescored", data=str(questions_file))
    assert again["overall"]["metrics"] == scores["overall"]["metrics"]
    # No secrets and no absolute surprises in the card: a URL loses its credentials.
    changed = session.build_card(
        selection=session.Selection(data=str(questions_file)),
        data=session.select_questions(session.Selection(data=str(questions_file)))[0],
        records=session.select_questions(session.Selection(data=str(questions_file)))[1],
        model={"name": "scripted", "base_url": "https://user:s3cret@host:8000/v1?key=abc"},
        config=AgentConfig(date="2025-04-03", max_turns=4, temperature=0.0),
        samples=2, tools=session.ToolsInfo(search="local", reader="ExtractiveReader",
                                           cache_mode="off", world=str(eval_world)),
        judge=None)
    assert changed["model"]["base_url"] == "https://host:8000/v1"
    assert "s3cret" not in json.dumps(changed) and "abc" not in json.dumps(changed)
    with pytest.raises(ConfigError, match=r"different protocol: model\.base_url"):
        session.open_run(out, changed, [])


def test_compare_lists_metrics_and_every_protocol_difference(tmp_path, questions_file,
                                                             tiny_tokenizer, eval_world):
    a, b = tmp_path / "a", tmp_path / "b"
    _run(a, questions_file, tiny_tokenizer, eval_world, max_turns=4)
    _run(b, questions_file, tiny_tokenizer, eval_world, max_turns=1)  # never gets to answer
    result = compare_runs(a, b)
    assert [d["field"] for d in result["protocol_differences"]] == ["decoding.max_turns"]
    overall = result["sources"][-1]
    assert overall["source"] == "all" and overall["f1_a"] == 1.0 and overall["f1_b"] == 0.0
    assert overall["f1_delta"] == -1.0


def test_selection_is_part_of_the_protocol(questions_file):
    base = session.Selection(data=str(questions_file))
    _, all_records = session.select_questions(base)
    _, some = session.select_questions(replace(base, limit=2))
    assert len(all_records) == 3 and len(some) == 2
    assert session.is_paper_test(session.select_questions(session.Selection("paper-test"))[0])
    assert not session.is_paper_test(session.select_questions(base)[0])
