"""Failed episodes as a user meets them: a policy server that answers 500, one that is too slow
for ``--timeout``, one that fails some questions; the warning in the console and the report, the
exit codes, and a resumed run that finishes what failed (its progress counts every episode).
Real processes, the loopback OpenAI-compatible server, the mini world's real tools.

The tests that start several CLI processes are marked slow; the in-process ones here and in
test_eval_runner.py / test_eval_report.py cover the same features fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eval_helpers import make_records, server_script

from deepresearcher.data.paper_format import write_records


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "deepresearcher.cli.main", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _eval_args(data: Path, out: Path, server, tokenizer_dir: Path, world: Path,
               *extra: str) -> list[str]:
    return ["eval", "--data", str(data), "--world", str(world), "--base-url", server.base_url,
            "--model", "tiny", "--tokenizer", str(tokenizer_dir), "--date", "2025-04-03",
            "--max-turns", "4", "--out", str(out), *extra]


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def server(tiny_tokenizer):
    from servers.openai_compat import OpenAICompatServer

    with OpenAICompatServer(models=("tiny",), tokenizer=tiny_tokenizer,
                            script=server_script) as s:
        yield s


@pytest.mark.slow
def test_every_episode_failing_exits_3_says_why_and_a_rerun_finishes_them(
        server, tiny_tokenizer_dir, eval_world, questions_file, tmp_path):
    from servers.openai_compat import Fault

    out = tmp_path / "run"
    args = _eval_args(questions_file, out, server, tiny_tokenizer_dir, eval_world)
    server.script = lambda request: Fault.server_error()
    result = cli(*args)
    assert result.returncode == 3, result.stderr
    err = _one_line(result.stderr)
    assert "Traceback" not in err
    assert "error: no episode could be run: all 3 failed (policy http_error × 3)" in err
    assert "run the same command again" in err
    scores = json.loads((out / "scores.json").read_text())
    assert scores["failed_episodes"] == 3 and scores["failed_share"] == 1.0
    assert scores["failure_kinds"] == {"policy http_error": 3}
    assert "answered 500" in scores["failure_examples"]["policy http_error"]
    assert scores["overall"]["failed"] == 3 and scores["overall"]["statuses"]["error"] == 3
    report = (out / "report.md").read_text()
    warning = report.split("## Scores", 1)[0]
    assert "**Warning: no episode could be run: all 3 failed" in warning
    assert "`policy http_error` × 3, e.g. `policy http_error:" in warning
    # Nothing saved is lost: the three failed episodes are in the results file.
    assert [r["status"] for r in _lines(out / "results.jsonl")] == ["error"] * 3

    server.script = server_script  # the server is fixed
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert "0 episodes already done, 3 failed ones to run again" in _one_line(again.stderr)
    scores = json.loads((out / "scores.json").read_text())
    assert scores["failed_episodes"] == 0 and scores["overall"]["metrics"]["f1"]["mean"] == 1.0
    assert "Warning" not in (out / "report.md").read_text()
    rows = _lines(out / "results.jsonl")
    assert len(rows) == 6  # each new line supersedes a failed one; the failed ones stay as history
    # And a third run has nothing left to do.
    before = len(server.generation_requests())
    assert cli(*args).returncode == 0
    assert len(server.generation_requests()) == before


def test_a_server_that_fails_everything_stops_before_any_episode(
        server, tiny_tokenizer_dir, eval_world, questions_file, tmp_path):
    from servers.openai_compat import Fault

    server.fault_all = Fault.server_error()  # the model list too
    out = tmp_path / "run"
    result = cli(*_eval_args(questions_file, out, server, tiny_tokenizer_dir, eval_world))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "answered 500" in errors[0]
    assert not (out / "results.jsonl").exists()


@pytest.mark.slow
def test_a_failed_share_above_the_threshold_exits_4_and_progress_counts_resumed_episodes(
        server, tiny_tokenizer_dir, eval_world, questions_file, tmp_path):
    """world_2 ("country") gets a 500, world_3 ("founded") a wrong answer, world_1 the right one:
    one episode of three failed, one is wrong."""
    from eval_helpers import research_turn

    from scripted import answer_turn
    from servers.openai_compat import Fault

    def flaky(request):
        prompt = str(request.json.get("prompt", ""))
        question = prompt.split("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]
        if "country" in question:
            return Fault.server_error()
        if "founded" in question:
            return answer_turn("Nobody")
        return research_turn(prompt)

    server.script = flaky
    out = tmp_path / "run"
    args = _eval_args(questions_file, out, server, tiny_tokenizer_dir, eval_world)
    result = cli(*args)
    assert result.returncode == 4, result.stderr
    err = _one_line(result.stderr)
    assert "error: 1 of 3 episodes failed (33%) (policy http_error × 1)" in err
    assert "more than --max-failed-share 0.1" in err and "Traceback" not in err
    assert "**Warning: 1 of 3 episodes failed (33%)" in (out / "report.md").read_text()

    # Under the threshold: the same warning, exit 0 (and, kept, the failed episode is not rerun).
    tolerant = cli(*args, "--keep-errors", "--max-failed-share", "0.5")
    assert tolerant.returncode == 0, tolerant.stderr
    assert "warning: 1 of 3 episodes failed (33%)" in _one_line(tolerant.stderr)
    assert "3 episodes already done" in _one_line(tolerant.stderr)

    # The server is fixed: the rerun runs the failed episode only, and its progress shows the
    # F1 of all three episodes (1 + 1 + 0) / 3, not of the one it ran (100).
    server.script = server_script
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    err = _one_line(resumed.stderr)
    assert "2 episodes already done, 1 failed ones to run again" in err
    assert "3/3" in err and "F1 66.7" in err and "F1 100.0" not in err
    scores = json.loads((out / "scores.json").read_text())
    assert scores["failed_episodes"] == 0
    assert round(scores["overall"]["metrics"]["f1"]["mean"], 3) == 0.667


@pytest.mark.slow
def test_timeout_reaches_the_policy(tiny_tokenizer, tiny_tokenizer_dir, eval_world, tmp_path):
    """A server slower than --timeout: each generation fails as a timeout, in eval and in ask."""
    from servers.openai_compat import OpenAICompatServer

    data = write_records(make_records(2), tmp_path / "q.parquet")
    with OpenAICompatServer(models=("tiny",), tokenizer=tiny_tokenizer, script=server_script,
                            latency_s=3.0) as slow:
        out = tmp_path / "run"
        result = cli(*_eval_args(data, out, slow, tiny_tokenizer_dir, eval_world,
                                 "--timeout", "0.5"))
        assert result.returncode == 3, result.stderr
        assert "all 2 failed (policy timeout × 2)" in _one_line(result.stderr)
        example = json.loads((out / "scores.json").read_text())["failure_examples"]
        assert "within 0.5 s" in example["policy timeout"]

        asked = cli("ask", "Who founded the Brackenhold Institute?", "--world", str(eval_world),
                    "--base-url", slow.base_url, "--model", "tiny", "--tokenizer",
                    str(tiny_tokenizer_dir), "--timeout", "0.5")
        assert asked.returncode == 3, asked.stderr
        assert "within 0.5 s" in _one_line(asked.stdout)
    result = cli("ask", "q", "--world", str(eval_world), "--model", "m", "--timeout", "5")
    assert result.returncode == 2 and "a timeout is for a policy server" in result.stderr


def test_a_worlds_own_questions_file_is_accepted(server, tiny_tokenizer_dir, tmp_path):
    """``world build`` writes questions/<split>.jsonl beside the parquet: the same questions."""
    from deepresearcher.eval.data import load_eval_data
    from deepresearcher.world.build import build_world

    world = tmp_path / "world"
    build_world(world, entities=300)
    jsonl, parquet = world / "questions" / "test.jsonl", world / "questions" / "test.parquet"

    def key(r):
        return r.id, r.question, r.golds, r.data_source

    assert [key(r) for r in load_eval_data(str(jsonl)).records] == \
        [key(r) for r in load_eval_data(str(parquet)).records]
    out = tmp_path / "run"
    result = cli(*_eval_args(jsonl, out, server, tiny_tokenizer_dir, world, "--limit", "2"))
    assert result.returncode == 0, result.stderr
    ids = [r["id"] for r in _lines(out / "results.jsonl")]
    assert len(ids) == 2 and all(i.startswith("world_") for i in ids)


def test_timeout_reaches_the_policy_in_process(tiny_tokenizer, tiny_tokenizer_dir):
    """``build_policy(timeout=...)`` (what --timeout sets) bounds each generation request."""
    import asyncio

    from deepresearcher.agent.build import build_policy
    from deepresearcher.agent.policy import SamplingParams
    from deepresearcher.errors import ConfigError, PolicyError, PolicyTimeout
    from deepresearcher.protocol.base import RenderedPrompt
    from servers.openai_compat import OpenAICompatServer

    with OpenAICompatServer(models=("tiny",), tokenizer=tiny_tokenizer, latency_s=2.0) as slow:
        policy = build_policy("tiny", base_url=slow.base_url, api="chat",
                              tokenizer=str(tiny_tokenizer_dir), timeout=0.3)
        assert policy.timeout == 0.3

        async def generate() -> None:
            try:
                await policy.generate(RenderedPrompt(text=None, messages=[{"role": "user", "content": "q"}]),
                                      SamplingParams(max_tokens=8))
            finally:
                await policy.aclose()

        with pytest.raises(PolicyError, match=r"within 0\.3 s") as caught:
            asyncio.run(generate())
        assert isinstance(caught.value, PolicyTimeout) and "--timeout" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match="a timeout is for a policy server"):
        build_policy("tiny", timeout=5)


def test_progress_means_count_the_episodes_of_earlier_runs():
    """A resumed run's progress shows the means over every episode done so far."""
    import io

    from rich.console import Console

    from deepresearcher.cli.eval import _Progress

    shown = io.StringIO()
    console = Console(file=shown, width=200)
    earlier = [{"scores": {"f1": 1.0, "em": 1.0}}, {"scores": {"f1": 0.0, "em": 0.0}}]
    with _Progress(console, 3, earlier) as progress:
        assert progress._shown() == "F1 50.0 EM 50.0"
        progress.update({"scores": {"f1": 1.0, "em": 0.0}})
        assert progress._shown() == "F1 66.7 EM 33.3"
    assert "3/3" in shown.getvalue() and "F1 66.7 EM 33.3" in shown.getvalue()
