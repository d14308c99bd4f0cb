"""The expert policy: good, honest demonstrations through the real agent loop and real tools."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from deepresearcher.agent.trajectory import read_jsonl
from deepresearcher.protocol.base import Answer, ToolCall
from deepresearcher.protocol.deepresearcher7b import parse_turn
from deepresearcher.train.expert import (
    ExpertCase,
    ExpertPolicy,
    generate_expert_trajectories,
    load_cases,
    mention,
)

N_QUESTIONS = 30


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from deepresearcher.world import build_world

    root = tmp_path_factory.mktemp("expert") / "world"
    build_world(root, seed=0, entities=150)
    return root


@pytest.fixture(scope="module")
def run(world, tiny_tokenizer, tmp_path_factory):
    """The expert on 30 train questions spread over all six sources."""
    from deepresearcher.agent.config import AgentConfig

    out = tmp_path_factory.mktemp("expert-out") / "traj.jsonl"
    stats = asyncio.run(
        generate_expert_trajectories(
            world,
            "train",
            tokenizer=tiny_tokenizer,
            out=out,
            limit=N_QUESTIONS,
            spread=True,
            config=AgentConfig(temperature=0.0, date="2025-01-31"),
        )
    )
    cases = {c.question: c for c in load_cases(world / "questions" / "train.jsonl")}
    return stats, list(read_jsonl(out)), cases


def test_answers_at_least_90_percent_exactly_across_sources(run):
    stats, trajectories, _ = run
    assert stats.episodes == len(trajectories) == N_QUESTIONS
    assert len(stats.by_source) == 6  # the spread sample covers every source
    assert stats.success_rate >= 0.9, stats.to_json()
    exact = [t for t in trajectories if t.status == "answered" and t.metrics["f1"] == 1.0]
    assert len(exact) == stats.exact


def test_every_turn_parses_and_the_episode_reads_its_supporting_pages(run):
    _, trajectories, cases = run
    for t in trajectories:
        case = cases[t.question]
        actions = [parse_turn(turn.text) for turn in t.turns]
        assert all(isinstance(a, ToolCall | Answer) for a in actions), t.id
        assert all(isinstance(a, ToolCall) for a in actions[:-1])
        if t.status != "answered":
            continue
        assert isinstance(actions[-1], Answer) and actions[-1].answer == case.answers[0]
        assert actions[0].name == "web_search"  # research first, never answer from memory
        assert set(case.supporting_urls) <= set(t.sources), t.id  # browsed every hop's page


def test_answers_only_after_the_evidence_was_observed(run):
    """Honesty: every hop's evidence was shown to the agent by a tool before it answered."""
    _, trajectories, cases = run
    for t in [t for t in trajectories if t.status == "answered"]:
        seen = "\n".join(turn.observation or "" for turn in t.turns).casefold()
        for evidence in cases[t.question].evidence:
            assert evidence.casefold() in seen, (t.id, evidence)


def test_tool_turns_are_written_as_the_template_re_serializes_them(run):
    """The sampled text equals the re-rendered assistant turn, so SFT trains on what the model
    itself would generate."""
    _, trajectories, _ = run
    for t in trajectories:
        assistant = [m for m in t.messages if m["role"] == "assistant"]
        for turn, message in zip(t.turns, assistant, strict=True):
            action = parse_turn(turn.text)
            if isinstance(action, ToolCall):
                call = json.dumps(
                    {"name": action.name, "arguments": action.arguments}, ensure_ascii=False
                )
                assert turn.text == f"{message['content']}\n<tool_call>\n{call}\n</tool_call>"


def test_tokens_and_loss_mask_cover_exactly_the_assistant_turns(run, tiny_tokenizer):
    _, trajectories, _ = run
    for t in trajectories:
        assert t.tokens is not None
        ids, mask = t.tokens.completion_ids, t.tokens.loss_mask
        assert len(ids) == len(mask)
        trained = tiny_tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
        masked = tiny_tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if not m])
        for turn in t.turns:
            assert turn.text in trained
            if turn.observation:
                assert turn.observation in masked and "<tool_response>" not in trained
        assert tiny_tokenizer.decode(t.tokens.prompt_ids).endswith("<|im_start|>assistant\n")


def test_wording_is_seeded_and_varied(world, tiny_tokenizer):
    cases = load_cases(world / "questions" / "train.jsonl", limit=40)
    policy = ExpertPolicy(cases, tiny_tokenizer, seed=1)
    first = [
        policy.turn(c, [{"role": "system", "content": ""}, {"role": "user", "content": c.question}])
        for c in cases
    ]
    again = ExpertPolicy(cases, tiny_tokenizer, seed=1)
    assert first == [
        again.turn(c, [{"role": "system", "content": ""}, {"role": "user", "content": c.question}])
        for c in cases
    ]
    thinks = {text.split("</think>")[0].split(".")[-2] for text in first}
    assert len(thinks) >= 3  # several templates in use, not one sentence for everything


def test_an_unknown_question_ends_the_episode_with_an_error(world, tiny_tokenizer):
    from deepresearcher.agent.build import ToolSettings, build_toolbox
    from deepresearcher.agent.loop import Agent

    policy = ExpertPolicy(load_cases(world / "questions" / "train.jsonl", limit=2), tiny_tokenizer)
    agent = Agent(policy, build_toolbox(ToolSettings(world=world)))
    trajectory = asyncio.run(agent.run("a question the expert has no record of"))
    assert trajectory.status == "error" and "no record" in (trajectory.error or "")


def test_mention_finds_how_the_question_names_a_page():
    assert (
        mention(
            "Which came out first, The Iron Mirror or Tasgraeth: A Lantern?",
            "local://wiki/tasgraeth-a-lantern",
        )
        == "Tasgraeth: A Lantern"
    )
    assert (
        mention("when was the saldford museum founded", "local://wiki/saldford-museum")
        == "saldford museum"
    )
    assert mention("unrelated", "local://wiki/glass-tround") == "Glass Tround"


def test_a_record_without_evidence_is_a_clear_error():
    from deepresearcher.errors import DataError

    with pytest.raises(DataError, match="supporting_urls"):
        ExpertCase.from_record({"question": "q", "answers": ["a"]})


def test_expert_command_writes_trajectories(world, tmp_path, tiny_tokenizer_dir):
    import typer
    from typer.testing import CliRunner

    from deepresearcher.cli.sft import register

    app = typer.Typer()
    register(app)
    out = tmp_path / "traj.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "expert",
            str(world),
            "--out",
            str(out),
            "--limit",
            "6",
            "--tokenizer",
            str(tiny_tokenizer_dir),
            "--split",
            "dev",
        ],
    )
    assert result.exit_code == 0, result.output
    trajectories = list(read_jsonl(out))
    assert len(trajectories) == 6 and all(t.tokens is not None for t in trajectories)
    assert "answered, F1 = 1" in result.stdout


def test_expert_command_rejects_a_folder_that_is_not_a_world(tmp_path):
    import typer
    from typer.testing import CliRunner

    from deepresearcher.cli.sft import register
    from deepresearcher.errors import DataError

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["expert", str(tmp_path), "--out", str(tmp_path / "t.jsonl")])
    assert isinstance(result.exception, DataError)


def test_terse_style_copies_the_question_and_names_results_by_rank(world, tiny_tokenizer,
                                                                   tmp_path):
    """The style for tiny models: one fixed sentence a turn, the question itself as the first
    query of a single-hop question, the result to read named by its rank; still answers right."""
    from deepresearcher.agent.config import AgentConfig

    out = tmp_path / "terse.jsonl"
    stats = asyncio.run(generate_expert_trajectories(
        world, "train", tokenizer=tiny_tokenizer, out=out, limit=20, spread=True,
        config=AgentConfig(temperature=0.0, date="2025-01-31", profile="compact"),
        style="terse"))
    assert stats.success_rate >= 0.9, stats.to_json()
    answered = [t for t in read_jsonl(out) if t.status == "answered"]
    assert answered and all(t.profile == "compact" for t in answered)
    cases = {c.question: c for c in load_cases(world / "questions" / "train.jsonl")}
    single = [t for t in answered if cases[t.question].question_type == "single_hop"]
    assert single
    for t in single:
        first = parse_turn("<think>" + t.turns[0].text.removeprefix("<think>"))
        assert isinstance(first, ToolCall) and first.think.strip() == "Let me search."
        assert first.arguments["query"][0] == t.question
        for turn in t.turns[1:]:
            action = parse_turn("<think>" + turn.text.removeprefix("<think>"))
            if isinstance(action, ToolCall) and action.name == "browse_webpage":
                assert action.think.strip().startswith("Let me read the ")
        assert isinstance(parse_turn("<think>" + t.turns[-1].text.removeprefix("<think>")),
                          Answer)
    with pytest.raises(ValueError, match="unknown expert style"):
        ExpertPolicy([], tiny_tokenizer, style="chatty")
