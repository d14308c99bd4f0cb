"""The runner on the mini world: a scripted policy in process, scored, durable, resumable."""

from __future__ import annotations

import asyncio
import json

from eval_helpers import make_records, research_turn

from deepresearcher.agent.build import ToolSettings, build_toolbox
from deepresearcher.agent.config import AgentConfig
from deepresearcher.agent.trajectory import Trajectory
from deepresearcher.eval.results import ResultStore
from deepresearcher.eval.runner import EvalRunner
from scripted import ScriptedPolicy


def _runner(tiny_tokenizer, eval_world, **kw):
    policy = ScriptedPolicy(lambda prompt, turn: research_turn(prompt.text), tiny_tokenizer)
    toolbox = build_toolbox(ToolSettings(world=eval_world))
    config = AgentConfig(date="2025-04-03", max_turns=4, temperature=0.0, seed=7,
                         record_tokens=False)
    return EvalRunner(policy, toolbox, config, **kw), policy


def test_runner_scores_every_question_and_writes_trajectories(tiny_tokenizer, eval_world,
                                                              tmp_path):
    runner, _ = _runner(tiny_tokenizer, eval_world, concurrency=3)
    store = ResultStore(tmp_path / "results.jsonl")
    records = make_records()
    seen = []
    summary = asyncio.run(runner.run(records, store, on_result=seen.append))
    assert (summary.total, summary.ran, summary.done_before) == (3, 3, 0)
    rows = store.load()
    assert set(rows) == {f"{r.id}#0" for r in records} and len(seen) == 3
    for row in rows.values():
        assert row["status"] == "answered" and row["scores"]["f1"] == 1.0
        assert row["scores"]["em"] == 1.0 and row["usage"]["search_calls"] == 1
        # The per-question output carries the episode in the trajectory schema.
        t = Trajectory.model_validate(row["trajectory"])
        assert t.id == row["id"] and t.turns[0].tool.name == "web_search"
    # Decoding is explicit: greedy, and the seed reached the policy.
    assert json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])["trajectory"][
        "settings"]["temperature"] == 0.0


def test_samples_get_distinct_seeds_and_resume_skips_done_keys(tiny_tokenizer, eval_world,
                                                               tmp_path):
    runner, policy = _runner(tiny_tokenizer, eval_world, samples=2, concurrency=2)
    store = ResultStore(tmp_path / "results.jsonl")
    records = make_records()
    asyncio.run(runner.run(records[:1], store))
    assert sorted({s.seed for s in policy.samplings}) == [7, 8]
    summary = asyncio.run(runner.run(records, store))
    assert (summary.done_before, summary.ran) == (2, 4)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6 and len({json.loads(x)["key"] for x in lines}) == 6
    again = asyncio.run(runner.run(records, store))
    assert again.ran == 0


def test_a_torn_last_line_is_dropped_and_repaired(tmp_path):
    path = tmp_path / "results.jsonl"
    store = ResultStore(path)
    store.append({"key": "a#0", "id": "a"})
    with path.open("ab") as fh:
        fh.write(b'{"key": "b#0", "id": "b", "scor')  # a kill in the middle of a write
    assert set(store.load(repair=True)) == {"a#0"} and store.torn_bytes > 0
    store.append({"key": "b#0", "id": "b"})
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["a#0", "b#0"]


def test_a_corrupt_middle_line_is_a_typed_error(tmp_path):
    import pytest

    from deepresearcher.errors import DataError

    path = tmp_path / "results.jsonl"
    path.write_text('{"key": "a#0"}\nnot json\n{"key": "b#0"}\n')
    with pytest.raises(DataError, match=r"results\.jsonl, line 2"):
        ResultStore(path).load()


def test_judge_errors_are_judged_again_on_resume(tiny_tokenizer, eval_world, tmp_path):
    """A verdict of ``error`` (the judge endpoint down, a bad key) counted as MBE 0 though
    nothing was decided: the next run of the same command judges those episodes again, without
    running them again."""
    from deepresearcher.eval.judge import Verdict

    class FlakyJudge:
        def __init__(self):
            self.down, self.calls = True, 0

        async def judge(self, question, prediction, golds):
            self.calls += 1
            if self.down:
                return Verdict("error", "503 from the judge endpoint")
            return Verdict("correct", "same answer", 1)

    judge = FlakyJudge()
    runner, policy = _runner(tiny_tokenizer, eval_world, judge=judge, concurrency=3)
    store = ResultStore(tmp_path / "results.jsonl")
    records = make_records()
    asyncio.run(runner.run(records, store))
    rows = store.load()
    assert {r["judge"]["outcome"] for r in rows.values()} == {"error"}
    assert {r["scores"]["mbe"] for r in rows.values()} == {0.0}
    episodes = len(policy.samplings)
    judge.down = False
    summary = asyncio.run(runner.run(records, store))
    assert summary.ran == 0 and len(policy.samplings) == episodes  # no episode ran again
    rows = store.load()
    assert {r["judge"]["outcome"] for r in rows.values()} == {"correct"}
    assert {r["scores"]["mbe"] for r in rows.values()} == {1.0}
    assert judge.calls == 6
    asyncio.run(runner.run(records, store))
    assert judge.calls == 6  # decided verdicts are not asked again


def test_failed_episodes_are_run_again_on_resume_unless_kept(tiny_tokenizer, eval_world,
                                                              tmp_path):
    """An episode that failed (the server down) ran nothing: a resumed run runs it again by
    default, and its new line supersedes the failed one; ``retry_errors=False`` keeps it."""
    from deepresearcher.errors import PolicyError
    from deepresearcher.eval.runner import still_done

    down = {"yes": True}

    def script(prompt, turn):
        question = prompt.text.split("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]
        if down["yes"] and "country" in question:
            raise PolicyError("http://x/v1/completions answered 500: boom", kind="http_error")
        return research_turn(prompt.text)

    runner, _ = _runner(tiny_tokenizer, eval_world, concurrency=3)
    runner.agents[0].policy.script = script
    store = ResultStore(tmp_path / "results.jsonl")
    records = make_records()
    asyncio.run(runner.run(records, store))
    failed = [k for k, r in store.load().items() if r["status"] == "error"]
    assert failed == ["world_2_1#0"]
    assert store.load()[failed[0]]["error"].startswith("policy http_error:")
    assert set(still_done(store.load(), retry_errors=True)) == {"world_1_0#0", "world_3_2#0"}
    down["yes"] = False
    kept = asyncio.run(runner.run(records, store, retry_errors=False))
    assert kept.ran == 0
    again = asyncio.run(runner.run(records, store))
    assert (again.done_before, again.ran) == (2, 1)
    assert {r["status"] for r in store.load().values()} == {"answered"}
