"""The rollout's conversion of trajectories into TRL's rollout contract."""

from __future__ import annotations

import asyncio
import math

from deepresearcher.agent.config import AgentConfig
from deepresearcher.agent.loop import Agent, Task
from deepresearcher.train.rollout import AgentRollout, prompt_question
from scripted import ScriptedPolicy, answer_turn, browse_turn, search_turn


def test_contract_fields_line_up_token_by_token(tiny_tokenizer, toolbox):
    script = [search_turn("Velmora Quist"), browse_turn("local://wiki/Velmora_Quist"),
              answer_turn("Tarrowmere")]
    policy = ScriptedPolicy(script, tiny_tokenizer)
    t = asyncio.run(Agent(policy, toolbox, AgentConfig(date="2025-04-03")).run(
        Task("Where was Velmora Quist born?", ["Tarrowmere"])))
    out = AgentRollout.to_trl([t], eos_id=tiny_tokenizer.eos_token_id)
    ids, mask, logprobs = out["completion_ids"][0], out["env_mask"][0], out["logprobs"][0]
    assert len(ids) == len(mask) == len(logprobs)
    assert out["prompt_ids"][0] == t.tokens.prompt_ids
    assert out["status"] == ["answered"] and out["reward"] == [t.reward] == [1.0]
    think_ids = tiny_tokenizer("<think>", add_special_tokens=False)["input_ids"]
    spans, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append((start, i))
            start = None
    assert len(spans) == 3  # one assistant span per turn
    for start, end in spans:
        forced = range(start, start + len(think_ids))
        assert all(math.isnan(logprobs[i]) for i in forced)  # the forced prefix was not sampled
        assert all(logprobs[i] == -0.5 for i in range(start + len(think_ids), end))
    assert all(lp == 0.0 for lp, m in zip(logprobs, mask, strict=True) if not m)


def test_a_turn_without_sampled_ids_keeps_its_place(tiny_tokenizer, toolbox):
    class NoIdsFirst(ScriptedPolicy):
        async def generate(self, prompt, sampling):
            from dataclasses import replace

            generation = await super().generate(prompt, sampling)
            first = len(self.prompts) == 1
            return replace(generation, token_ids=None, logprobs=None) if first else generation

    policy = NoIdsFirst([search_turn("Tarrowmere"), answer_turn("Lenivar")], tiny_tokenizer)
    t = asyncio.run(Agent(policy, toolbox, AgentConfig(date="2025-04-03")).run("q"))
    out = AgentRollout.to_trl([t], eos_id=0)
    mask, logprobs = out["env_mask"][0], out["logprobs"][0]
    first_end = mask.index(0)
    assert all(math.isnan(x) for x in logprobs[:first_end])
    assert logprobs[-1] == -0.5  # the second turn's sampled ids still line up


def test_a_turn_with_missing_logprobs_does_not_shift_the_others(tiny_tokenizer, toolbox):
    """A backend that returned fewer log-probs than tokens for a turn: that turn gets none
    (NaN: no importance correction), and the completion keeps one log-prob per token."""

    class ShortLogprobsFirst(ScriptedPolicy):
        async def generate(self, prompt, sampling):
            from dataclasses import replace

            generation = await super().generate(prompt, sampling)
            if len(self.prompts) == 1:
                return replace(generation, logprobs=list(generation.logprobs)[:-3])
            return generation

    policy = ShortLogprobsFirst([search_turn("Tarrowmere"), answer_turn("Lenivar")], tiny_tokenizer)
    t = asyncio.run(Agent(policy, toolbox, AgentConfig(date="2025-04-03")).run("q"))
    out = AgentRollout.to_trl([t], eos_id=0)
    ids, mask, logprobs = out["completion_ids"][0], out["env_mask"][0], out["logprobs"][0]
    assert len(logprobs) == len(ids) == len(mask)
    assert all(math.isnan(x) for x in logprobs[:mask.index(0)])
    assert logprobs[-1] == -0.5


def test_evaluation_episodes_decode_with_the_eval_config(tiny_tokenizer, toolbox):
    temperatures = []

    class Recording(ScriptedPolicy):
        async def generate(self, prompt, sampling):
            temperatures.append(sampling.temperature)
            return await super().generate(prompt, sampling)

    class Model:
        training = True

    class Trainer:
        model = Model()
        processing_class = tiny_tokenizer

    config = AgentConfig(date="2025-04-03", temperature=1.0, record_tokens=True)
    rollout = AgentRollout(
        toolbox, config, eval_config=config.model_copy(update={"temperature": 0.0}),
        policy_factory=lambda trainer: Recording([answer_turn("Tarrowmere")], tiny_tokenizer))
    trainer = Trainer()
    assert rollout(["Where was Velmora Quist born?"], trainer)["status"] == ["answered"]
    trainer.model.training = False  # the trainer evaluates
    rollout(["Where was Velmora Quist born?"], trainer)
    assert temperatures == [1.0, 0.0]
    # Without an eval config, evaluation samples like training (the original's behaviour).
    rollout.eval_config = None
    rollout(["Where was Velmora Quist born?"], trainer)
    assert temperatures[-1] == 1.0


def test_prompt_question_reads_the_papers_prompt():
    assert prompt_question([{"role": "user", "content": "q?"}]) == "q?"
    assert prompt_question("plain") == "plain"


def test_fsdp_with_several_processes_needs_vllm():
    """Each forward of an FSDP model is a collective call and the processes of a multi-turn
    rollout make different numbers of them: refused before training, unless vLLM generates."""
    from types import SimpleNamespace

    import pytest

    from deepresearcher.errors import ConfigError
    from deepresearcher.train.grpo import check_generation_backend

    def trainer(processes, fsdp=None, zero=None):
        state = SimpleNamespace(
            fsdp_plugin=SimpleNamespace(fsdp_version=fsdp) if fsdp else None,
            deepspeed_plugin=SimpleNamespace(zero_stage=zero) if zero else None)
        return SimpleNamespace(accelerator=SimpleNamespace(num_processes=processes, state=state))

    with pytest.raises(ConfigError, match="vLLM") as caught:
        check_generation_backend(trainer(8, fsdp=2), use_vllm=False)
    assert "backend.use_vllm=true" in caught.value.hint
    check_generation_backend(trainer(8, fsdp=2), use_vllm=True)
    check_generation_backend(trainer(1, fsdp=2), use_vllm=False)
    check_generation_backend(trainer(8, zero=3), use_vllm=False)  # weights gathered instead
    check_generation_backend(trainer(2), use_vllm=False)  # DDP


def test_each_step_logs_its_own_cache_hit_rate_and_closes_the_tool_pools(tiny_tokenizer,
                                                                         mini_world, tmp_path):
    """The search cache counts since it opened: a step logs its own hits (the second step of the
    same questions hits every time), and the tools' connection pools are closed at the end of
    each rollout (each runs in its own event loop, and would otherwise leave its sockets open)."""
    from collections import defaultdict

    from deepresearcher.agent.build import ToolSettings, build_toolbox
    from deepresearcher.tools.cache import CachedSearch, ToolCache

    toolbox = build_toolbox(ToolSettings(index=mini_world / "index", pages=mini_world / "pages"))
    # A cached search, as web search is (a local index answers faster than a cache lookup).
    toolbox.search_backend = CachedSearch(toolbox.search_backend,
                                          ToolCache(tmp_path / "tools.sqlite"))
    closed = []
    original = toolbox.aclose

    async def aclose():
        closed.append(True)
        await original()

    toolbox.aclose = aclose

    class Model:
        training = True

    class Trainer:
        model = Model()
        processing_class = tiny_tokenizer

        def __init__(self):
            self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    rollout = AgentRollout(
        toolbox, AgentConfig(date="2025-04-03", record_tokens=True),
        policy_factory=lambda trainer: ScriptedPolicy(
            [search_turn("Tarrowmere"), answer_turn("Lenivar")], tiny_tokenizer))
    trainer = Trainer()
    for _ in range(2):
        rollout(["In which country is Tarrowmere?"], trainer)
    assert trainer._metrics["train"]["tools/search_cache_hit_rate"] == [0.0, 1.0]
    assert len(closed) == 2
