"""A tiny Qwen2.5-shaped tokenizer and model, built locally in seconds, for tests and the quickstart.

The tokenizer is a byte-level BPE with Qwen2.5's special tokens and chat template, trained on a small
built-in sample plus the DeepResearcher prompt and tool-call formats (so tags are compact). The model
is a randomly initialized ``Qwen2ForCausalLM``: it shares the real architecture, so code that works
on it (left padding, KV cache, TRL's reference-model rebuild) works on Qwen2.5-7B.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deepresearcher.agent.policy import import_torch
from deepresearcher.errors import PolicyError

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
# Qwen2.5's special tokens, in its id order; <|endoftext|> doubles as the pad token.
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
# Qwen2.5 registers these as added but not special tokens: they survive skip_special_tokens.
TOOL_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")

_SAMPLE = """\
The quick brown fox jumps over the lazy dog. A research assistant answers questions by searching the
web, reading pages and checking facts before it answers. Paris is the capital of France, and Berlin
is the capital of Germany. The river flows through the old town, past the cathedral and the market.
In 1969, the first people walked on the Moon. Who wrote the novel? When was the bridge built? Which
city hosted the games, and how many people lived there at the time? The answer is yes or no.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 12 100 1999 2024 2025-01-31. Punctuation: , . ; : ! ? ' " ( ) [ ] { }
The company was founded by two engineers in a small garage and later moved to a larger office.
She studied physics at the university, then worked as a teacher, a writer and a politician.
The album was released in the spring and reached the top of the charts within a week.
"""


def default_texts() -> list[str]:
    """Training texts: the English sample plus every string the DeepResearcher format uses."""
    from deepresearcher.protocol.deepresearcher7b import TOOLS, system_prompt

    call = {"name": "web_search", "arguments": {"query": ["capital of France", "Paris"]}}
    browse = {"name": "browse_webpage", "arguments": {"url_list": ["https://example.com/a"]}}
    result = (
        "[{'search_query': 'capital of France', 'web_page_info_list': [{'quick_summary': "
        "'Paris is the capital.', 'title': 'Paris', 'url': 'https://example.com/a'}]}]"
    )
    turn = (
        "<think>I should search first.</think>\n<tool_call>\n" + json.dumps(call) + "\n</tool_call>"
        "\n<tool_response>\n" + result + "\n</tool_response>\n"
        "<think>Read the page.</think>\n<tool_call>\n" + json.dumps(browse) + "\n</tool_call>\n"
        "<think>I know it now.</think>\n<answer>Paris</answer>"
    )
    chat = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    tools = "\n".join(json.dumps(t) for t in TOOLS)
    return [_SAMPLE, system_prompt("2025-01-31"), tools, turn, chat] * 4


def build_tokenizer(
    out_dir: Path,
    texts: Iterable[str] | None = None,
    vocab_size: int = 2048,
    *,
    chat_template: str | None = None,
) -> Any:
    """Train a byte-level BPE tokenizer shaped like Qwen2.5's, save it to ``out_dir`` and return it.

    ``vocab_size`` is the most the BPE learns, special tokens included; the four tool tags are
    added on top. It stops earlier when the texts have no pair left to merge: the default texts
    give 1,146 (1,150 tokens in all), whatever the size asked above that.

    ``chat_template`` defaults to Qwen2.5's own (TRL's copy, ``trl.chat_template_utils``); it is
    saved with the tokenizer, so ``AutoTokenizer.from_pretrained(out_dir)`` needs no TRL.
    Deterministic: the same texts give the same vocabulary.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    template = chat_template or _qwen2_5_chat_template()
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()  # as Qwen2.5
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
        show_progress=False,
    )
    # The template's own prose (its tools block) is part of every prompt: train on it too.
    corpus = list(texts) if texts is not None else [*default_texts(), template]
    bpe.train_from_iterator(corpus, trainer)
    bpe.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        model_max_length=32768,
        padding_side="left",  # generation batches pad on the left
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = template
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def build_tiny_qwen2(
    out_dir: Path,
    tokenizer: Any,
    *,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    seed: int = 0,
    max_position_embeddings: int = 4096,
    init_std: float = 0.1,
) -> Any:
    """A random ``Qwen2ForCausalLM`` sized for ``tokenizer``, saved with its tokenizer to ``out_dir``.

    The same ``seed`` gives the same weights; the global torch RNG is left untouched. The saved
    generation config stops at ``<|im_end|>`` and ``<|endoftext|>``, like Qwen2.5-Instruct.
    ``init_std`` is larger than transformers' 0.02: at 0.02 this small a model is nearly uniform
    and greedy decoding gives the same token for every prompt, which would hide batching bugs.
    """
    torch = import_torch()
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    eos_ids = [tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(ENDOFTEXT)]
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        initializer_range=init_std,
        bos_token_id=None,
        eos_token_id=eos_ids[0],
        pad_token_id=eos_ids[1],
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.eval()
    model.generation_config = GenerationConfig(
        eos_token_id=eos_ids,
        pad_token_id=eos_ids[1],
        bos_token_id=None,
        do_sample=False,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)  # TRL and HFPolicy load both from one path
    return model


def _qwen2_5_chat_template() -> str:
    try:
        from trl.chat_template_utils import qwen2_5_chat_template
    except ImportError as exc:
        raise PolicyError(
            "the tiny tokenizer takes Qwen2.5's chat template from TRL, which is not installed",
            kind="missing_dependency",
            hint="pip install 'deepresearcher[train]', or pass chat_template=...",
        ) from exc
    return str(qwen2_5_chat_template)
