"""The tiny Qwen2.5-shaped tokenizer and model used by the tests and the quickstart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from deepresearcher.models.tiny import SPECIAL_TOKENS, TOOL_TOKENS, build_tokenizer
from deepresearcher.protocol.deepresearcher7b import TOOLS, system_prompt

CONVERSATION = [
    {"role": "system", "content": system_prompt("2025-01-31")},
    {"role": "user", "content": "What is the capital of France?"},
    {
        "role": "assistant",
        "content": "<think>Search first.</think>",
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "web_search", "arguments": {"query": ["capital of France"]}},
            }
        ],
    },
    {
        "role": "tool",
        "name": "web_search",
        "content": "[{'search_query': 'capital of France', 'web_page_info_list': []}]",
    },
]


def test_qwen_template_round_trips_with_tools(tiny_tokenizer):
    text = tiny_tokenizer.apply_chat_template(
        CONVERSATION, tools=TOOLS, add_generation_prompt=True, tokenize=False
    )
    # Qwen2.5's own rendering: tools block in the system turn, tool result as a user turn.
    assert text.startswith("<|im_start|>system\n## Background information \n")
    assert "# Tools" in text and '"name": "web_search"' in text
    assert (
        '<tool_call>\n{"name": "web_search", "arguments": {"query": ["capital of France"]}}'
        "\n</tool_call><|im_end|>"
    ) in text
    assert "<|im_start|>user\n<tool_response>\n[{'search_query'" in text
    assert text.endswith("<|im_start|>assistant\n")

    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(ids) == text
    for token in (*SPECIAL_TOKENS[1:], *TOOL_TOKENS):
        single = tiny_tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(single) == 1, token
        assert single[0] in ids, token


def test_special_and_tool_tokens_are_like_qwen(tiny_tokenizer):
    assert tiny_tokenizer.eos_token == "<|im_end|>"
    assert tiny_tokenizer.pad_token == "<|endoftext|>"
    assert tiny_tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == [0, 1, 2]
    ids = tiny_tokenizer("<tool_call>x</tool_call><|im_end|>", add_special_tokens=False)[
        "input_ids"
    ]
    # Tool tags are added but not special: they survive skip_special_tokens, <|im_end|> does not.
    assert tiny_tokenizer.decode(ids, skip_special_tokens=True) == "<tool_call>x</tool_call>"


def test_protocol_strings_tokenize_compactly(tiny_tokenizer):
    def n(text: str) -> int:
        return len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])

    # As with Qwen2.5 itself, the pre-tokenizer splits "<" and ">" from the tag name.
    assert n("<think>") <= 3 and n("</think>") <= 3 and n("<answer>") <= 3
    # One token per pre-tokenizer piece: every word of the format was merged whole.
    assert n('{"name": "web_search", "arguments": {"query": [') <= 15
    prompt = system_prompt("2025-01-31")
    assert n(prompt) < len(prompt) / 4  # far better than bytes
    # Any text still encodes (byte-level): unseen scripts and emoji round-trip.
    odd = "Zürich — 東京 🙂"
    assert tiny_tokenizer.decode(tiny_tokenizer(odd, add_special_tokens=False)["input_ids"]) == odd


def test_tokenizer_reloads_without_trl_and_is_deterministic(tiny_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    config = json.loads((tiny_tokenizer_dir / "tokenizer_config.json").read_text())
    saved_template = (
        config.get("chat_template") or (tiny_tokenizer_dir / "chat_template.jinja").read_text()
    )
    assert "<tool_call>" in saved_template  # the template travels with the files
    reloaded = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    assert reloaded.chat_template == saved_template
    again = build_tokenizer(tmp_path / "again")
    assert again.get_vocab() == reloaded.get_vocab()


def test_custom_texts_and_vocab_size(tmp_path):
    tok = build_tokenizer(
        tmp_path,
        texts=["tiny corpus " * 20],
        vocab_size=300,
        chat_template="{{ messages[0]['content'] }}",
    )
    assert len(tok) <= 300 + len(TOOL_TOKENS)
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "hi"


def test_tiny_model_saves_reloads_and_is_seeded(tiny_tokenizer, tiny_model_dir, tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deepresearcher.models.tiny import build_tiny_qwen2

    state = torch.random.get_rng_state()
    started = time.perf_counter()
    built = build_tiny_qwen2(tmp_path / "a", tiny_tokenizer, seed=0)
    assert time.perf_counter() - started < 10
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.vocab_size == len(tiny_tokenizer)
    assert model.config.max_position_embeddings == 4096
    same = dict(built.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(param, same[name]), name  # same seed, same weights

    other = build_tiny_qwen2(tmp_path / "b", tiny_tokenizer, seed=1)
    assert not torch.equal(other.lm_head.weight, built.lm_head.weight)

    eos = set(model.generation_config.eos_token_id)
    assert eos == set(tiny_tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"]))
    # The tokenizer is saved next to the model: one path loads both (as TRL does).
    assert AutoTokenizer.from_pretrained(tiny_model_dir).get_vocab() == tiny_tokenizer.get_vocab()


def test_missing_tokenizer_path_is_model_not_found(tmp_path: Path):
    from deepresearcher.agent.policy import load_tokenizer
    from deepresearcher.errors import PolicyError

    with pytest.raises(PolicyError) as info:
        load_tokenizer(tmp_path / "nothing-here")
    assert info.value.kind == "model_not_found"
    assert "save_pretrained" in info.value.hint
    with pytest.raises(PolicyError) as info:
        load_tokenizer(tmp_path)  # a directory, but no tokenizer in it
    assert info.value.kind == "model_not_found"


def test_load_tokenizer_reads_a_local_directory(tiny_tokenizer_dir):
    from deepresearcher.agent.policy import load_tokenizer

    assert load_tokenizer(tiny_tokenizer_dir).eos_token == "<|im_end|>"
    assert load_tokenizer(str(tiny_tokenizer_dir)).pad_token == "<|endoftext|>"


def test_model_tiny_vocab_size_is_a_maximum_and_the_output_says_what_was_built(tmp_path):
    pytest.importorskip("torch")
    from transformers import AutoConfig, AutoTokenizer
    from typer.testing import CliRunner

    from deepresearcher.cli.main import app

    def build(name: str, size: int) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["model", "tiny", "--out", str(tmp_path / name),
                                          "--vocab-size", str(size)], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        built = len(AutoTokenizer.from_pretrained(tmp_path / name))
        assert AutoConfig.from_pretrained(tmp_path / name).vocab_size == built
        return built, " ".join(result.output.split())

    built, said = build("small", 512)  # the tool tags count: 512 in all, not 516
    assert built == 512 and "vocabulary of 512 tokens)" in said
    built, said = build("large", 4096)  # the built-in text has no merges left long before
    assert built < 4096 and f"vocabulary of {built:,} tokens; 4,096 asked" in said
