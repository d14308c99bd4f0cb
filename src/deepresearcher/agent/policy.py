"""What a policy is: the model behind an agent, as one async ``generate`` call.

Implementations live next to this file: ``policy_openai`` (any OpenAI-compatible server) and
``policy_hf`` (local transformers, batched across concurrent episodes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from deepresearcher.errors import PolicyError, PolicyMissingDependency, PolicyModelNotFound
from deepresearcher.protocol.base import RenderedPrompt

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one turn. ``temperature=0`` means greedy decoding.

    ``stop`` strings end the turn (they are not part of the returned text); the model's own end-of-turn
    tokens always do. ``seed`` asks the backend for reproducible sampling where it supports it.
    ``logprobs`` asks for the log-probability of every sampled token (needed for training).
    """

    max_tokens: int = 2000
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = True


@dataclass(frozen=True)
class Generation:
    """One generated turn.

    ``text`` is the generated text without the end-of-turn token and without a matched stop string.
    ``token_ids`` are the sampled tokens, through the end-of-turn token when one was sampled (so they
    can be trained on as-is); ``logprobs`` has one entry per token id. Either is None when the backend
    cannot provide it. ``tool_calls`` holds native tool calls from a chat API, in the OpenAI wire
    format (``{"id", "type": "function", "function": {"name", "arguments": "<json>"}}``).
    """

    text: str
    token_ids: list[int] | None
    logprobs: list[float] | None
    finish_reason: FinishReason
    prompt_tokens: int | None
    completion_tokens: int | None
    tool_calls: list[dict[str, Any]] | None = None
    latency_s: float = 0.0


@runtime_checkable
class Policy(Protocol):
    """A model that produces one assistant turn at a time.

    Everything the episode loop uses of a policy is declared here. ``name`` goes into each
    trajectory's ``model``. ``tokenizer`` is optional: the model's Hugging Face tokenizer when
    known (profiles render prompts with its chat template; episodes record token ids with it),
    else None (a chat-API policy; text-rendering profiles then cannot be used). ``context_window``
    is in tokens. ``aclose`` releases the backend's connections or engine.
    """

    name: str
    context_window: int
    tokenizer: Any

    async def generate(self, prompt: RenderedPrompt, sampling: SamplingParams) -> Generation: ...

    def count_tokens(self, text: str) -> int: ...

    async def aclose(self) -> None: ...


def looks_like_path(name_or_path: str) -> bool:
    """True when ``name_or_path`` names a local directory rather than a Hub repo id.

    Hub ids are ``name`` or ``owner/name``; anything absolute, relative (``./``, ``../``), with a
    home directory or with more than one slash is a path, and an existing directory always is.
    """
    if os.path.isdir(name_or_path):
        return True
    return (
        name_or_path.startswith(("/", "./", "../", "~", ".\\"))
        or name_or_path.count("/") > 1
        or "\\" in name_or_path
    )


def model_not_found(name_or_path: str, cause: BaseException | None = None) -> PolicyError:
    """The error for a model or tokenizer that is neither a local directory nor downloadable."""
    if looks_like_path(name_or_path):
        message = f"no model or tokenizer at {name_or_path!r} (not a readable directory)"
        hint = (
            "pass a directory written by save_pretrained (config.json, tokenizer.json, ...), "
            "or a Hugging Face repo id such as GAIR/DeepResearcher-7b"
        )
    else:
        message = f"could not load {name_or_path!r} from the Hugging Face Hub or its local cache"
        hint = (
            f"download it on a machine with network access (`hf download {name_or_path}`) and copy "
            "the cache, or pass a local directory; set HF_HUB_OFFLINE=1 to fail fast offline"
        )
    if cause is not None:
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        message = f"{message}: {first}"
    return PolicyModelNotFound(message, hint=hint)


def resolve_model_name(name_or_path: str | Path) -> str:
    """A Hub repo id as is, or a local path expanded; a missing local directory is an error now
    (transformers would otherwise try the path as a Hub id over the network)."""
    name = str(name_or_path)
    if looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise model_not_found(name)
        name = str(path)
    return name


def import_torch() -> Any:
    """torch, or a clear error saying which extra installs it."""
    try:
        import torch
    except ImportError as exc:
        raise PolicyMissingDependency(
            "PyTorch is not installed",
            hint="pip install 'deepresearcher[hf]'",
        ) from exc
    return torch


def load_tokenizer(name_or_path: str | Path) -> Any:
    """The Hugging Face tokenizer of a model (a local directory or a Hub repo id).

    Raises ``PolicyModelNotFound`` with a hint when it cannot be found, including
    when the Hub cannot be reached and the tokenizer is not in the local cache.
    """
    name = resolve_model_name(name_or_path)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise model_not_found(name, exc) from exc
