"""Re-scoring finished rollouts: the original's rollout_step_N.json and our own files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_helpers import make_records
from typer.testing import CliRunner

from deepresearcher.cli.main import app
from deepresearcher.data.paper_format import write_records
from deepresearcher.errors import DataError
from deepresearcher.eval.rescore import rescore
from deepresearcher.eval.rollouts import last_assistant_answer, read_rollouts
from servers.openai_compat import OpenAICompatServer

ORIGINAL = Path(__file__).parent / "fixtures" / "rollout_step_0.json"


def test_only_the_last_assistant_turn_is_scored():
    tail = "<|im_start|>assistant\n<think>a</think>\n<answer>X</answer><|im_end|>\n"
    assert last_assistant_answer("<|im_start|>system\n<answer></answer>…" + tail) == \
        ("answered", "X", 1)
    assert last_assistant_answer("no assistant at all") == ("format_error", None, 0)


def test_original_rollouts_map_idx_to_data_rows(tmp_path):
    data = write_records(make_records(3), tmp_path / "data.parquet")
    from deepresearcher.eval.data import load_eval_data

    rollouts = read_rollouts(ORIGINAL, load_eval_data(str(data)).records)
    assert [(r.question_id, r.sample, r.status, r.prediction) for r in rollouts] == [
        ("world_1_0", 0, "answered", "Tarrowmere"),
        ("world_1_0", 1, "answered", "Ostrevan"),
        ("world_2_1", 0, "format_error", None),
        ("world_3_2", 0, "format_error", None),
    ]
    assert rollouts[0].turns == 2 and rollouts[0].golds == ["Tarrowmere"]
    with pytest.raises(DataError, match="carry no gold answers"):
        read_rollouts(ORIGINAL, None)
    wrong = write_records(make_records(1), tmp_path / "other.parquet")
    with pytest.raises(DataError, match=r"rollout_step_0\.json, item 2: no row"):
        read_rollouts(ORIGINAL, load_eval_data(str(wrong)).records)


def test_eval_score_cli_on_an_original_rollout_file_with_a_judge(tmp_path):
    data = write_records(make_records(3), tmp_path / "data.parquet")
    out = tmp_path / "scored"
    with OpenAICompatServer(models=("judge-1",)) as judge:
        judge.push(json.dumps({"rationale": "another town", "verdict": "incorrect"}))
        result = CliRunner().invoke(app, ["eval", "score", str(ORIGINAL), "--data", str(data),
                                          "--out", str(out), "--judge-model", "judge-1",
                                          "--judge-base-url", judge.base_url])
        assert result.exit_code == 0, result.output
        # Exact matches and missing answers needed no call: only "Ostrevan" was judged.
        assert len(judge.generation_requests()) == 1
    scores = json.loads((out / "scores.json").read_text())
    wiki2 = scores["by_source"]["wiki2"]
    assert wiki2["questions"] == 1 and wiki2["episodes"] == 2
    assert wiki2["metrics"]["f1"]["mean"] == 0.5 and wiki2["metrics"]["f1"]["pass@2"] == 1.0
    assert wiki2["metrics"]["mbe"]["mean"] == 0.5
    assert scores["by_source"]["wikihop"]["metrics"]["f1"]["mean"] == 0.0
    assert scores["overall"]["statuses"]["format_error"] == 2
    assert scores["overall"]["judge"]["exact"] == 1 and scores["overall"]["judge"]["incorrect"] == 1
    report = (out / "report.md").read_text()
    assert "## Judge" in report and "| wikihop | 2 |" in report
    card = json.loads((out / "protocol.json").read_text())
    assert card["judge"]["model"] == "judge-1" and card["rescored_from"]["episodes"] == 4


def test_rescoring_our_results_gives_the_same_scores(tmp_path):
    rows = [
        {"key": "world_1_0#0", "id": "world_1_0", "sample": 0, "data_source": "wiki2",
         "question": "Q?", "golds": ["Tarrowmere"], "status": "answered", "answer": "tarrowmere",
         "scores": {}, "usage": {"search_calls": 2}, "turns": 3},
        {"key": "world_2_1#0", "id": "world_2_1", "sample": 0, "data_source": "wikihop",
         "question": "Q2?", "golds": ["Lenivar"], "status": "max_turns", "answer": "Lenivar",
         "scores": {}, "usage": {"search_calls": 10}, "turns": 10},
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scores = rescore(path, tmp_path / "out")
    assert scores["by_source"]["wiki2"]["metrics"]["em"]["mean"] == 1.0
    # Not answered: the answer field is ignored, it scores 0.
    assert scores["by_source"]["wikihop"]["metrics"]["em"]["mean"] == 0.0
    assert scores["overall"]["tool_calls_per_episode"]["search_calls"] == 6.0
