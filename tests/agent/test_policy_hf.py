"""The local transformers policy on the real tiny Qwen2 model: batching, log-probs, stopping."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from transformers import AutoModelForCausalLM, LogitsProcessor  # noqa: E402

from deepresearcher.agent.policy import Generation, Policy, SamplingParams  # noqa: E402
from deepresearcher.agent.policy_hf import HFPolicy  # noqa: E402
from deepresearcher.errors import (  # noqa: E402
    ContextOverflowError,
    PolicyBadRequest,
    PolicyError,
    PolicyGenerationFailed,
    PolicyModelNotFound,
)
from deepresearcher.protocol.base import RenderedPrompt  # noqa: E402

GREEDY = SamplingParams(max_tokens=12, temperature=0.0)


def chat(question: str) -> RenderedPrompt:
    text = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n<think>"
    return RenderedPrompt(
        text=text, messages=[{"role": "user", "content": question}], prefix="<think>"
    )


# Different lengths on purpose: a batch of them is left-padded.
PROMPTS = [chat("Who? " * n + "Which city hosted the games?") for n in range(8)]


class ForceTokens(LogitsProcessor):
    """Forces ``ids`` one per step from the first generated token on (an untrained model never
    writes the tags or the end-of-turn token by itself)."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.width: int | None = None

    def __call__(self, input_ids, scores):
        if self.width is None:
            self.width = input_ids.shape[1]
        step = input_ids.shape[1] - self.width
        if step < len(self.ids):
            forced = torch.full_like(scores, float("-inf"))
            forced[:, self.ids[step]] = 0.0
            return forced
        return scores


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


@pytest.fixture
def policy(model, tiny_tokenizer) -> HFPolicy:
    return HFPolicy(model, tiny_tokenizer, name="tiny")


def run(coro):
    return asyncio.run(coro)


def teacher_forced_logprobs(
    model, tokenizer, prompt: str, ids: list[int], temperature: float
) -> list[float]:
    """Log-probs of ``ids`` after ``prompt`` from one forward pass, scaled by ``temperature``."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = torch.tensor([prompt_ids + ids])
    with torch.no_grad():
        logits = model(full).logits[0, len(prompt_ids) - 1 : -1].float()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return logp.gather(-1, torch.tensor(ids).unsqueeze(-1)).squeeze(-1).tolist()


def test_from_pretrained_loads_a_saved_model(tiny_model_dir):
    policy = HFPolicy.from_pretrained(tiny_model_dir)
    assert isinstance(policy, Policy)
    assert policy.context_window == 4096  # the config's max_position_embeddings
    im_end = policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    endoftext = policy.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert set(policy.eos_token_ids) == {im_end, endoftext}
    gen = run(policy.generate(PROMPTS[0], GREEDY))
    assert len(gen.token_ids) == 12 and gen.finish_reason == "length"


def test_auto_device_is_cuda_when_available_else_cpu(tiny_model_dir, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    policy = HFPolicy.from_pretrained(tiny_model_dir, device="auto")
    assert next(policy.model.parameters()).device.type == "cpu"


def test_missing_model_path_is_model_not_found(tmp_path):
    with pytest.raises(PolicyError) as info:
        HFPolicy.from_pretrained(tmp_path / "no-such-model")
    assert isinstance(info.value, PolicyModelNotFound)
    assert info.value.hint


def test_a_directory_without_a_model_is_model_not_found(tmp_path):
    with pytest.raises(PolicyError) as info:
        HFPolicy.from_pretrained(tmp_path)
    assert isinstance(info.value, PolicyModelNotFound)


def test_concurrent_calls_are_batched_and_match_unbatched_greedy(policy):
    singles = [run(policy.generate(p, GREEDY)) for p in PROMPTS]
    assert policy.stats.batches == 8 and policy.stats.max_batch_size == 1

    async def together() -> list[Generation]:
        return await asyncio.gather(*[policy.generate(p, GREEDY) for p in PROMPTS])

    batched = run(together())
    assert policy.stats.batches - 8 <= 2
    assert policy.stats.max_batch_size >= 4
    assert (
        len({tuple(g.token_ids) for g in singles}) > 1
    )  # the prompts do lead to different outputs
    for single, many in zip(singles, batched, strict=True):
        # Left padding must not change a row's result.
        assert many.token_ids == single.token_ids
        assert many.text == single.text
        assert many.logprobs == pytest.approx(single.logprobs, abs=1e-4)
        assert many.prompt_tokens == single.prompt_tokens


def test_max_batch_size_caps_a_batch(model, tiny_tokenizer):
    policy = HFPolicy(model, tiny_tokenizer, max_batch_size=3, max_wait_ms=50)

    async def together() -> list[Generation]:
        return await asyncio.gather(*[policy.generate(p, GREEDY) for p in PROMPTS[:7]])

    run(together())
    assert policy.stats.sizes == [3, 3, 1]
    assert policy.stats.mean_batch_size == pytest.approx(7 / 3)


def test_a_token_budget_caps_a_batch_of_long_requests(model, tiny_tokenizer):
    """Rows × (longest prompt + largest max_tokens) stays within max_batch_tokens: late turns of
    long episodes run in smaller batches; a request over the budget still runs, alone."""
    from deepresearcher.agent.policy_hf import within_tokens

    policy = HFPolicy(model, tiny_tokenizer, max_batch_size=16, max_wait_ms=50,
                      max_batch_tokens=3 * (max(len(tiny_tokenizer(p.text)["input_ids"])
                                                for p in PROMPTS[:7]) + GREEDY.max_tokens))

    async def together() -> list[Generation]:
        return await asyncio.gather(*[policy.generate(p, GREEDY) for p in PROMPTS[:7]])

    run(together())
    assert max(policy.stats.sizes) <= 3 and sum(policy.stats.sizes) == 7
    one = SamplingParams(max_tokens=10)
    requests = [SimpleNamespace(ids=[1] * n, sampling=one) for n in (30, 5, 5)]
    assert len(within_tokens(requests, 10)) == 1  # over the budget alone: still one
    assert len(within_tokens(requests[1:], 30)) == 2  # 2 × (5 + 10)
    assert len(within_tokens(requests[1:], 29)) == 1


def test_different_sampling_settings_are_not_mixed(policy):
    sampled = SamplingParams(max_tokens=12, temperature=0.7, seed=3)

    async def together() -> list[Generation]:
        return await asyncio.gather(
            *[policy.generate(p, GREEDY if i % 2 else sampled) for i, p in enumerate(PROMPTS[:6])]
        )

    results = run(together())
    assert sorted(policy.stats.sizes) == [3, 3]
    assert all(len(r.token_ids) == 12 for r in results)


def test_greedy_logprobs_are_the_models_log_softmax(policy, model, tiny_tokenizer):
    gen = run(policy.generate(PROMPTS[3], GREEDY))
    assert len(gen.logprobs) == len(gen.token_ids) == gen.completion_tokens
    expected = teacher_forced_logprobs(model, tiny_tokenizer, PROMPTS[3].text, gen.token_ids, 1.0)
    assert gen.logprobs == pytest.approx(expected, abs=1e-4)


def test_sampled_logprobs_are_temperature_scaled(policy, model, tiny_tokenizer):
    sampling = SamplingParams(max_tokens=16, temperature=0.6, seed=11)
    gen = run(policy.generate(PROMPTS[2], sampling))
    expected = teacher_forced_logprobs(model, tiny_tokenizer, PROMPTS[2].text, gen.token_ids, 0.6)
    assert gen.logprobs == pytest.approx(expected, abs=1e-4)
    untempered = teacher_forced_logprobs(model, tiny_tokenizer, PROMPTS[2].text, gen.token_ids, 1)
    assert gen.logprobs != pytest.approx(untempered, abs=1e-3)
    # The same seed samples the same turn again.
    again = run(policy.generate(PROMPTS[2], sampling))
    assert again.token_ids == gen.token_ids


def test_generation_stops_at_the_end_of_turn_token(model, tiny_tokenizer):
    body = tiny_tokenizer(" Paris.</think>\n<answer>Paris</answer>", add_special_tokens=False)[
        "input_ids"
    ]
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    policy = HFPolicy(model, tiny_tokenizer, logits_processor=[ForceTokens([*body, im_end])])
    gen = run(policy.generate(PROMPTS[0], SamplingParams(max_tokens=100, temperature=1.0)))
    assert gen.finish_reason == "stop"
    assert gen.token_ids == [*body, im_end]  # through the EOS token, nothing after it
    assert gen.text == " Paris.</think>\n<answer>Paris</answer>"  # without the EOS text
    assert len(gen.logprobs) == len(gen.token_ids)
    # Forced tokens had probability 1 under the distribution that was sampled from.
    assert gen.logprobs == pytest.approx([0.0] * len(gen.token_ids))


def test_generation_stops_at_a_stop_string(model, tiny_tokenizer):
    body = tiny_tokenizer(
        " Done.</think>\n<answer>Paris</answer> and more text", add_special_tokens=False
    )["input_ids"]
    policy = HFPolicy(model, tiny_tokenizer, logits_processor=[ForceTokens(body)])
    gen = run(
        policy.generate(PROMPTS[0], SamplingParams(max_tokens=len(body) + 5, stop=("</answer>",)))
    )
    assert gen.finish_reason == "stop"
    assert gen.text == " Done.</think>\n<answer>Paris"
    decoded = tiny_tokenizer.decode(gen.token_ids)
    assert decoded.endswith("</answer>") or decoded.rstrip().endswith("</answer>")
    assert len(gen.token_ids) < len(body)


def test_each_request_keeps_its_own_token_budget(policy):
    async def together() -> list[Generation]:
        return await asyncio.gather(
            policy.generate(PROMPTS[0], SamplingParams(max_tokens=4, temperature=0)),
            policy.generate(PROMPTS[1], SamplingParams(max_tokens=9, temperature=0)),
        )

    short, long = run(together())
    assert policy.stats.sizes == [2]
    assert len(short.token_ids) == 4 and len(long.token_ids) == 9
    assert short.finish_reason == long.finish_reason == "length"
    assert len(short.logprobs) == 4


def test_context_guard(model, tiny_tokenizer):
    policy = HFPolicy(model, tiny_tokenizer, context_window=64)
    n = policy.count_tokens(PROMPTS[7].text)
    with pytest.raises(ContextOverflowError) as info:
        run(policy.generate(PROMPTS[7], SamplingParams(max_tokens=64 - n + 1)))
    assert isinstance(info.value, ContextOverflowError)
    assert policy.stats.batches == 0
    gen = run(policy.generate(PROMPTS[7], SamplingParams(max_tokens=64 - n, temperature=0)))
    assert gen.prompt_tokens == n


def test_chat_prompt_without_text_is_rendered_with_the_template(policy, tiny_tokenizer):
    prompt = RenderedPrompt(text=None, messages=[{"role": "user", "content": "Hi"}])
    gen = run(policy.generate(prompt, GREEDY))
    rendered = tiny_tokenizer.apply_chat_template(
        prompt.messages, add_generation_prompt=True, tokenize=False
    )
    assert gen.prompt_tokens == policy.count_tokens(rendered)


def test_the_event_loop_keeps_running_during_generation(policy):
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        await policy.generate(PROMPTS[0], SamplingParams(max_tokens=200, temperature=0))
        stop.set()
        await task

    run(go())
    assert ticks > 5  # generation ran in a worker thread, not on the loop


def test_checkpoint_sampling_defaults_do_not_leak_in(tiny_model_dir, tiny_tokenizer):
    # Qwen2.5-Instruct ships these; SamplingParams alone must decide the distribution.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    model.generation_config.update(top_k=2, top_p=0.5, temperature=0.3, repetition_penalty=1.5)
    policy = HFPolicy(model, tiny_tokenizer)
    gen = run(policy.generate(PROMPTS[4], SamplingParams(max_tokens=12, temperature=1.0, seed=5)))
    expected = teacher_forced_logprobs(model, tiny_tokenizer, PROMPTS[4].text, gen.token_ids, 1.0)
    assert gen.logprobs == pytest.approx(expected, abs=1e-4)
    greedy = run(policy.generate(PROMPTS[4], GREEDY))
    expected = teacher_forced_logprobs(model, tiny_tokenizer, PROMPTS[4].text, greedy.token_ids, 1)
    assert greedy.logprobs == pytest.approx(expected, abs=1e-4)


def test_unknown_dtype_is_a_clear_error(tiny_model_dir):
    with pytest.raises(PolicyError) as info:
        HFPolicy.from_pretrained(tiny_model_dir, dtype="float99")
    assert isinstance(info.value, PolicyBadRequest)


class Explode(LogitsProcessor):
    def __call__(self, input_ids, scores):
        raise RuntimeError("boom")


def test_a_failed_batch_fails_its_requests_not_the_policy(model, tiny_tokenizer):
    policy = HFPolicy(model, tiny_tokenizer, logits_processor=[Explode()])

    async def together() -> list:
        return await asyncio.gather(
            *[policy.generate(p, GREEDY) for p in PROMPTS[:3]], return_exceptions=True
        )

    errors = run(together())
    assert all(isinstance(e, PolicyError) and isinstance(e, PolicyGenerationFailed) for e in errors)
    assert "boom" in str(errors[0])
    policy.logits_processor = []
    assert len(run(policy.generate(PROMPTS[0], GREEDY)).token_ids) == 12


def test_cuda_where_there_is_none_is_a_config_error_naming_the_setting():
    import pytest
    import torch

    from deepresearcher.agent.policy_hf import resolve_device
    from deepresearcher.errors import ConfigError

    assert resolve_device("cpu") == "cpu"
    if torch.cuda.is_available():
        assert resolve_device("auto") == resolve_device("cuda") == "cuda"
        return
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match=r"backend\.device is cuda, but CUDA") as caught:
        resolve_device("cuda", setting="backend.device")
    assert "backend.device to auto" in caught.value.hint


def test_a_float32_checkpoint_runs_in_bfloat16_on_a_gpu_that_has_it(tiny_model_dir, monkeypatch):
    """Models trained here are saved in float32; on a GPU with native bfloat16 ``auto`` runs them
    in bfloat16 (a 7B model in float32 needs 30 GB), elsewhere in the checkpoint's dtype."""
    from transformers import AutoConfig

    from deepresearcher.agent.policy_hf import gpu_dtype

    assert str(AutoConfig.from_pretrained(tiny_model_dir).dtype).endswith("float32")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert gpu_dtype(tiny_model_dir, torch) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert gpu_dtype(tiny_model_dir, torch) == "auto"
