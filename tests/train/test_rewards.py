"""The training reward: scored once per episode in the rollout, against the episode's own row,
recorded in its trajectory and handed unchanged to TRL."""

from __future__ import annotations

import asyncio
import json

import pytest

from deepresearcher.agent.config import AgentConfig
from deepresearcher.agent.loop import Agent, Task
from deepresearcher.errors import ConfigError
from deepresearcher.protocol.metrics import f1_score, paper_reward
from deepresearcher.train import rewards
from deepresearcher.train.rollout import prompt_task, step_tasks, task_prompt
from scripted import ScriptedPolicy, answer_turn, search_turn

QUESTION = "In which country is Tarrowmere?"


def episode(tokenizer, toolbox, script, golds=("Lenivar",), reward=None):
    agent = Agent(ScriptedPolicy(script, tokenizer), toolbox, AgentConfig(date="2025-04-03"),
                  reward=reward)
    return asyncio.run(agent.run(Task(QUESTION, list(golds))))


def test_each_reward_scores_the_episode(tiny_tokenizer, toolbox):
    partly = episode(tiny_tokenizer, toolbox, [search_turn("Tarrowmere"),
                                               answer_turn("the coast of Lenivar")])
    assert rewards.get_reward("f1")(partly) == pytest.approx(f1_score("the coast of Lenivar",
                                                                      ["Lenivar"]))
    assert rewards.get_reward("em")(partly) == 0.0
    assert rewards.get_reward("cover_em")(partly) == 1.0
    # The paper's reads the conversation as the original trained on it (tool turns re-rendered).
    assert rewards.get_reward("paper")(partly) == paper_reward(partly.response_text(), ["Lenivar"])
    assert partly.reward == rewards.get_reward("paper")(partly)  # the agent's default
    malformed = episode(tiny_tokenizer, toolbox, ["<answer>Lenivar"])
    assert malformed.status == "format_error"
    assert [rewards.get_reward(n)(malformed) for n in ("paper", "f1", "em", "cover_em")] == [
        -1.0, 0.0, 0.0, 0.0]


def test_the_agent_scores_each_episode_once_with_the_reward_it_is_given(tiny_tokenizer, toolbox):
    calls = []

    def shorter_is_better(trajectory):
        calls.append(trajectory.id)
        return 1.0 / len(trajectory.turns)

    t = episode(tiny_tokenizer, toolbox, [search_turn("Tarrowmere"), answer_turn("Lenivar")],
                reward=shorter_is_better)
    assert t.reward == 0.5 and calls == [t.id]


def test_a_registered_reward_is_chosen_by_name(monkeypatch):
    monkeypatch.setattr(rewards, "REWARDS", dict(rewards.REWARDS))

    def turns(trajectory):
        return float(len(trajectory.turns))

    rewards.register_reward("turns", turns)
    assert rewards.get_reward("turns") is turns
    assert rewards.trl_reward_func("turns").__name__ == "turns"
    with pytest.raises(ConfigError, match="unknown reward 'nope'") as caught:
        rewards.get_reward("nope")
    assert "turns" in caught.value.hint and "register_reward" in caught.value.hint
    with pytest.raises(ConfigError, match="identifier"):
        rewards.register_reward("two words", turns)


def test_trl_gets_the_rollouts_rewards_unchanged():
    func = rewards.trl_reward_func("f1")
    assert func(["c1", "c2", "c3"], reward=[0.25, None, -1.0], golds=[["x"]] * 3) == [
        0.25, None, -1.0]


def test_a_prompt_carries_its_row_and_its_place_in_its_group():
    rows = [task_prompt(Task(QUESTION, ["Lenivar"], id="a", data_source="mini")),
            task_prompt(Task(QUESTION, ["Ostrevan"], id="b", data_source="mini"))]
    assert prompt_task(rows[1]) == Task(QUESTION, ["Ostrevan"], id="b", data_source="mini")
    # This process holds the second half of a step of two groups of four.
    tasks = step_tasks([rows[0]] * 2 + [rows[1]] * 4, group_size=4, offset=2)
    assert [(t.id, t.group, t.rollout) for t in tasks] == [
        ("a#2", 0, 2), ("a#3", 0, 3), ("b#0", 1, 0), ("b#1", 1, 1), ("b#2", 1, 2), ("b#3", 1, 3)]
    assert [t.golds for t in tasks] == [["Lenivar"]] * 2 + [["Ostrevan"]] * 4
    # A group whose copies differ means the trainer's grouping changed: refused.
    with pytest.raises(RuntimeError, match="GRPO group 0"):
        step_tasks([rows[0], rows[1]], group_size=2)
    assert prompt_task("plain text") == Task("plain text")


# Two rows with the same question and different golds, in one step of 2 questions × 4 rollouts.
# The k-th episode to generate gives answer k % 4; the last is malformed (paper −1, F1 0).
ROWS = {"lenivar": ["Lenivar"], "ostrevan": ["Ostrevan"]}
TURNS = [answer_turn("Lenivar"), answer_turn("Lenivar coast"), answer_turn("Ostrevan"),
         "<answer>Lenivar"]
F1 = {("lenivar", "Lenivar"): 1.0, ("lenivar", "Lenivar coast"): 2 / 3,
      ("lenivar", "Ostrevan"): 0.0, ("lenivar", None): 0.0,
      ("ostrevan", "Lenivar"): 0.0, ("ostrevan", "Lenivar coast"): 0.0,
      ("ostrevan", "Ostrevan"): 1.0, ("ostrevan", None): 0.0}


@pytest.fixture(scope="module")
def step(tmp_path_factory, tiny_model_dir, tiny_tokenizer, mini_world):
    """One GRPO step of a recipe with ``grpo.reward=f1`` through ``build_trainer``: TRL's own
    sampler draws the rows, our rollout runs scripted episodes (the k-th episode to generate
    gives ``TURNS[k % 4]``) and counts every call of the reward."""
    pytest.importorskip("trl")
    from deepresearcher.data.paper_format import QARecord, write_records
    from deepresearcher.train.grpo import build_trainer
    from deepresearcher.train.recipes import load_recipe

    root = tmp_path_factory.mktemp("rewards")
    write_records([QARecord(id=k, question=QUESTION, golds=g, data_source="mini")
                   for k, g in ROWS.items()], root / "train.jsonl")
    (root / "recipe.yaml").write_text(f"""
model: {tiny_model_dir}
tools: {{index: {mini_world / "index"}, pages: {mini_world / "pages"}}}
data: {{train: train.jsonl}}
agent: {{date: "2025-04-03", max_turns: 2, max_tokens_per_turn: 24, context_window: 4096}}
grpo: {{questions_per_step: 2, rollouts_per_question: 4, reward: f1, kl_beta: 0, max_steps: 1}}
run: {{output_dir: out, report_to: []}}
backend: {{device: cpu}}
""", encoding="utf-8")
    calls = []

    def counted_f1(trajectory):
        calls.append(trajectory.id)
        return rewards.f1(trajectory)

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(rewards.REWARDS, "f1", counted_f1)
        trainer, rollout = build_trainer(load_recipe(root / "recipe.yaml"))
    rollout.policy_factory = lambda trainer: ScriptedPolicy(
        lambda prompt, k: TURNS[k % 4], tiny_tokenizer)
    trainer.current_gradient_accumulation_steps = 1
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    inputs = trainer._generate_and_score_completions(batch)
    saved = [json.loads(line) for line in
             (root / "out" / "trajectories" / "train_step_000000.jsonl").read_text().splitlines()]
    return trainer, inputs, saved, calls


def test_rows_with_the_same_question_are_scored_against_their_own_golds(step):
    _, _, saved, _ = step
    assert len(saved) == 8
    for group in (saved[:4], saved[4:]):
        row = group[0]["id"].split("#")[0]
        assert [t["id"] for t in group] == [f"{row}#{k}" for k in range(4)]
        assert [t["rollout"] for t in group] == [0, 1, 2, 3]
        assert {t["group"] for t in group} == {saved.index(group[0]) // 4}
        assert all(t["golds"] == ROWS[row] and t["data_source"] == "mini" for t in group)
        assert sorted(str(t["answer"]) for t in group) == [
            "Lenivar", "Lenivar coast", "None", "Ostrevan"]
        assert [t["reward"] for t in group] == pytest.approx([F1[row, t["answer"]] for t in group])
    assert {t["id"].split("#")[0] for t in saved} == set(ROWS)


def test_the_saved_reward_is_the_answers_f1_and_what_the_trainer_trained_on(step):
    trainer, inputs, saved, _ = step
    torch = pytest.importorskip("torch")
    saved_rewards = [t["reward"] for t in saved]
    assert saved_rewards == pytest.approx(
        [f1_score(t["answer"], t["golds"]) if t["answer"] else 0.0 for t in saved])
    assert -1.0 not in saved_rewards  # not the paper's reward (a malformed answer scores −1)
    assert saved_rewards == pytest.approx(list(trainer._logs["rewards"]["f1"]))
    # TRL's logged prompts are this step's, in this order: each carries the row it came from.
    assert [p[0]["task"]["id"] for p in trainer._logs["prompt"]] == [
        t["id"].split("#")[0] for t in saved]
    grouped = torch.tensor(saved_rewards).view(2, 4)
    expected = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)
    assert torch.allclose(inputs["advantages"], expected.flatten(), atol=1e-5)


def test_the_reward_is_computed_once_per_episode(step):
    _, _, saved, calls = step
    assert sorted(calls) == sorted(t["id"] for t in saved)
