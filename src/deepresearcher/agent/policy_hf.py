"""A local Hugging Face transformers policy, batched across concurrent episodes.

Episodes run concurrently on one event loop, each awaiting ``generate``. Requests that arrive within
``max_wait_ms`` of each other (up to ``max_batch_size``) and share sampling settings are run as one
left-padded ``model.generate`` in a worker thread, so the event loop keeps serving tools meanwhile.
While a batch runs, new requests queue up and form the next batch.

torch and transformers are imported lazily: ``deepresearcher ask`` against an HTTP server never
loads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearcher.agent.policy import (
    FinishReason,
    Generation,
    SamplingParams,
    import_torch,
    model_not_found,
    resolve_model_name,
)
from deepresearcher.errors import (
    ConfigError,
    ContextOverflowError,
    PolicyBadRequest,
    PolicyError,
    PolicyGenerationFailed,
)
from deepresearcher.protocol.base import RenderedPrompt

# Qwen2.5's end-of-turn tokens; generation stops at whichever of them the tokenizer knows.
EOS_TOKENS = ("<|im_end|>", "<|endoftext|>")


@dataclass
class BatchStats:
    """How requests were batched: for tests and benchmarks."""

    batches: int = 0
    requests: int = 0
    sizes: list[int] = field(default_factory=list)
    generate_seconds: float = 0.0

    @property
    def mean_batch_size(self) -> float:
        return self.requests / self.batches if self.batches else 0.0

    @property
    def max_batch_size(self) -> int:
        return max(self.sizes, default=0)


@dataclass
class _Request:
    ids: list[int]
    sampling: SamplingParams
    future: asyncio.Future[Generation]
    queued_at: float

    @property
    def key(self) -> tuple[Any, ...]:
        # Requests batch together only when one generate call can honor all of their settings;
        # max_tokens differs freely (each row is cut at its own budget afterwards).
        s = self.sampling
        greedy = s.temperature <= 0
        return (
            greedy,
            None if greedy else s.temperature,
            None if greedy else s.top_p,
            s.seed,
            s.stop,
        )


# Padded tokens a generate call may hold on a GPU when the caller does not say (ask, eval).
GPU_BATCH_TOKENS = 65536


def resolve_device(device: str, *, setting: str = "--device") -> str:
    """``cpu`` or ``cuda`` for a device setting: ``auto`` is CUDA when there is one; ``cuda``
    where there is none is a :class:`ConfigError` naming ``setting`` (not a silent CPU run, nor
    torch's error at the first tensor moved)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting} is cuda, but CUDA is not available here",
                          hint=f"set {setting} to auto (CUDA when there is one) or cpu")
    return device


class HFPolicy:
    """A causal LM run in-process with transformers.

    Log-probs: for each sampled token, the log-softmax of the logits *after* the logits processors
    that chose it, i.e. under the distribution actually sampled from: temperature-scaled, top-p
    truncated and renormalized when ``top_p < 1``, and including any ``logits_processor`` passed in.
    Greedy decoding (``temperature == 0``) reports the plain log-softmax (temperature 1).

    Text: decoded without skipping special tokens, minus a trailing end-of-turn token and minus a
    matched stop string (as vLLM does); ``token_ids`` keep the end-of-turn token when it was sampled.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str | None = None,
        context_window: int | None = None,
        max_batch_size: int = 16,
        max_wait_ms: float = 5,
        logits_processor: Sequence[Any] | None = None,
        max_batch_tokens: int | None = None,
    ) -> None:
        """Wrap a loaded ``model`` and its ``tokenizer``.

        ``context_window`` defaults to the model config's ``max_position_embeddings``.
        ``max_batch_tokens``: a batch holds at most this many padded tokens (rows × (longest
        prompt + largest budget)), so late turns of long episodes run in smaller batches
        (None: only ``max_batch_size`` limits a batch).
        ``logits_processor``: transformers ``LogitsProcessor`` objects applied at every step (for
        example to force tags out of an untrained model in tests and the quickstart).
        """
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or str(
            getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        )
        config_window = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.context_window = int(context_window or config_window or 32768)
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_batch_tokens = None if max_batch_tokens is None else max(1, int(max_batch_tokens))
        self.max_wait_s = max(0.0, float(max_wait_ms) / 1000)
        self.logits_processor = list(logits_processor or [])
        self.stats = BatchStats()
        self.eos_token_ids = end_of_turn_ids(tokenizer)
        self.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        )
        self._queue: list[_Request] = []
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        context_window: int | None = None,
        max_batch_size: int = 16,
        max_wait_ms: float = 5,
        logits_processor: Sequence[Any] | None = None,
        max_batch_tokens: int | None = None,
    ) -> HFPolicy:
        """Load a model and its tokenizer (a local directory or a Hub repo id) onto ``device``
        (``"cpu"``, ``"cuda"``, ``"cuda:1"``..., or ``"auto"``: CUDA when available).

        ``dtype``: ``"auto"`` (the checkpoint's own dtype; on a GPU with native bfloat16 a float32
        checkpoint runs in bfloat16), or a torch dtype name such as
        ``"float32"``/``"bfloat16"``. Raises ``PolicyModelNotFound`` when the model
        cannot be found, and ``PolicyMissingDependency`` when torch is not installed.
        """
        torch = import_torch()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype, None)
        if not isinstance(torch_dtype, (str, torch.dtype)):
            raise PolicyBadRequest(
                f"unknown dtype {dtype!r}",
                hint="use auto, float32, bfloat16 or float16",
            )
        name = resolve_model_name(name_or_path)
        target = resolve_device(device)  # before minutes of loading, not after
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            if dtype == "auto" and target.startswith("cuda"):
                torch_dtype = gpu_dtype(name, torch)
            model: Any = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise model_not_found(name, exc) from exc
        model.to(target)
        model.eval()
        return cls(
            model,
            tokenizer,
            name=str(name_or_path),
            context_window=context_window,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            logits_processor=logits_processor,
            max_batch_tokens=max_batch_tokens,
        )

    # -- public API --------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` (no special tokens added)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def check_context(self, prompt_tokens: int, max_tokens: int) -> None:
        """Raise ``ContextOverflowError`` unless the prompt and the turn budget fit the window."""
        if prompt_tokens + max_tokens > self.context_window:
            raise ContextOverflowError(
                f"prompt ({prompt_tokens} tokens) plus max tokens ({max_tokens}) exceed the "
                f"context window of {self.context_window} tokens",
                hint="lower max tokens per turn, or end the episode (context_policy)",
            )

    async def generate(self, prompt: RenderedPrompt, sampling: SamplingParams) -> Generation:
        """One turn for ``prompt``, batched with other concurrent calls."""
        text = prompt.text
        if text is None:
            # A chat-style profile: render it here with the model's own template.
            text = (
                self.tokenizer.apply_chat_template(
                    prompt.messages, tools=prompt.tools, add_generation_prompt=True, tokenize=False
                )
                + prompt.prefix
            )
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if not ids:
            raise PolicyBadRequest("empty prompt")
        self.check_context(len(ids), sampling.max_tokens)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (e.g. a second asyncio.run): the old queue belongs to a dead loop.
            self._loop, self._queue, self._worker = loop, [], None
        request = _Request(ids, sampling, loop.create_future(), time.perf_counter())
        self._queue.append(request)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        return await request.future

    async def aclose(self) -> None:
        """Stop the batching worker; pending requests are cancelled."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._worker
        for request in self._queue:
            if not request.future.done():
                request.future.cancel()
        self._queue, self._worker = [], None

    # -- batching ----------------------------------------------------------------------------------

    async def _work(self) -> None:
        """Form batches from the queue and run them one at a time until the queue is empty."""
        while self._queue:
            first = self._queue[0]
            waited = time.perf_counter() - first.queued_at
            same = sum(1 for r in self._queue if r.key == first.key)
            if same < self.max_batch_size and waited < self.max_wait_s:
                # Give concurrent episodes the rest of the window to join this batch.
                await asyncio.sleep(self.max_wait_s - waited)
                continue
            batch = [r for r in self._queue if r.key == first.key][: self.max_batch_size]
            if self.max_batch_tokens is not None:
                batch = within_tokens(batch, self.max_batch_tokens)
            taken = {id(r) for r in batch}
            self._queue = [r for r in self._queue if id(r) not in taken]
            batch = [r for r in batch if not r.future.done()]  # skip cancelled callers
            if not batch:
                continue
            try:
                results = await asyncio.to_thread(self._run_batch, batch)
            except Exception as exc:  # one failed batch fails its requests, not the worker
                error = (
                    exc
                    if isinstance(exc, PolicyError)
                    else PolicyGenerationFailed(
                        f"local generation failed: {type(exc).__name__}: {exc}",
                    )
                )
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
                continue
            for request, result in zip(batch, results, strict=True):
                if not request.future.done():
                    request.future.set_result(result)

    def _run_batch(self, batch: list[_Request]) -> list[Generation]:
        """One left-padded ``model.generate`` for ``batch`` (runs in a worker thread)."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        started = time.perf_counter()
        sampling = batch[0].sampling
        width = max(len(r.ids) for r in batch)
        device = next(self.model.parameters()).device
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, request in enumerate(batch):
            # Left padding: every row's last prompt token sits at the same position, so the next
            # token of every row is read from the same column.
            input_ids[row, width - len(request.ids) :] = torch.tensor(request.ids)
            attention[row, width - len(request.ids) :] = 1
        max_new = max(r.sampling.max_tokens for r in batch)
        greedy = sampling.temperature <= 0
        # transformers fills unset fields from the checkpoint's generation_config (Qwen2.5-Instruct
        # ships top_k=20, repetition_penalty=1.05), which must not change what SamplingParams say:
        # every field that shapes the distribution is set, to neutral values where SamplingParams
        # are silent (top_k=0 disables top-k). Greedy decoding applies no warpers, so only the
        # penalties matter there (setting sampling fields for greedy only makes transformers warn).
        shape: dict[str, Any] = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
        if not greedy:
            shape.update(
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                top_k=0,
                typical_p=1.0,
                epsilon_cutoff=0.0,
                eta_cutoff=0.0,
            )
            if getattr(self.model.generation_config, "min_p", None) is not None:
                shape["min_p"] = 0.0
        config = GenerationConfig(
            max_new_tokens=max_new,
            do_sample=not greedy,
            **shape,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            bos_token_id=None,
            stop_strings=list(sampling.stop) or None,
            return_dict_in_generate=True,
            output_scores=sampling.logprobs,
        )
        kwargs: dict[str, Any] = {}
        if sampling.stop:
            kwargs["tokenizer"] = self.tokenizer  # stop strings are matched on decoded tokens
        if self.logits_processor:
            kwargs["logits_processor"] = LogitsProcessorList(self.logits_processor)
        with (
            torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])
            if sampling.seed is not None
            else contextlib.nullcontext()
        ):
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            # Batches run in a worker thread, which starts on the first GPU: make this
            # model's GPU current (one process a GPU under accelerate launch).
            with cuda_device(device), torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    generation_config=config,
                    **kwargs,
                )
        new = out.sequences[:, width:].cpu()
        logprobs = None
        if sampling.logprobs and out.scores:
            # scores[t] are the processed logits of step t; the sampled token's log-prob under
            # them, one step at a time (a stacked copy would hold batch x steps x vocabulary
            # floats twice more: gigabytes for a 152k vocabulary).
            chosen = new.to(out.scores[0].device)
            logprobs = torch.cat([
                torch.log_softmax(step.float(), dim=-1).gather(-1, chosen[:, t : t + 1])
                for t, step in enumerate(out.scores)
            ], dim=1).cpu()
        seconds = time.perf_counter() - started
        results = [
            self._result(r, new[row].tolist(), None if logprobs is None else logprobs[row].tolist())
            for row, r in enumerate(batch)
        ]
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.sizes.append(len(batch))
        self.stats.generate_seconds += seconds
        return results

    def _result(
        self, request: _Request, ids: list[int], logprobs: list[float] | None
    ) -> Generation:
        """One row of a batch as a ``Generation``: cut at EOS, stop string or its own budget."""
        eos = set(self.eos_token_ids)
        finish: FinishReason = "length"
        end = len(ids)
        for i, token in enumerate(ids):
            if token in eos:
                end, finish = i + 1, "stop"
                break
        budget = request.sampling.max_tokens
        if end > budget:
            end, finish = budget, "length"
        ids = ids[:end]
        body = ids[:-1] if finish == "stop" and ids and ids[-1] in eos else ids
        text = self.tokenizer.decode(body, skip_special_tokens=False)
        for stop in request.sampling.stop:
            cut = text.find(stop)
            if cut != -1:
                text, finish = text[:cut], "stop"
                # Drop tokens after the one that completed the stop string (batch-mates may have
                # kept this row generating).
                ids = _through_stop(self.tokenizer, ids, stop)
        return Generation(
            text=text,
            token_ids=ids,
            logprobs=None if logprobs is None else logprobs[: len(ids)],
            finish_reason=finish,
            prompt_tokens=len(request.ids),
            completion_tokens=len(ids),
            latency_s=time.perf_counter() - request.queued_at,
        )


def within_tokens(batch: list[_Request], budget: int) -> list[_Request]:
    """The longest prefix of ``batch`` whose padded size (rows × (longest prompt + largest
    budget)) fits ``budget``; always at least one request."""
    kept: list[_Request] = []
    width = new = 0
    for request in batch:
        w, n = max(width, len(request.ids)), max(new, request.sampling.max_tokens)
        if kept and (len(kept) + 1) * (w + n) > budget:
            break
        kept.append(request)
        width, new = w, n
    return kept


def gpu_dtype(name: str | Path, torch: Any) -> Any:
    """``auto`` on a GPU: the checkpoint's own dtype, but bfloat16 for a float32 checkpoint
    where the GPU computes in bfloat16 natively (models trained here are saved in float32; a
    7B model would need 30 GB of GPU memory to run in it)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name)
    declared = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if str(declared).removeprefix("torch.") == "float32" and torch.cuda.is_bf16_supported(
            including_emulation=False):
        return torch.bfloat16
    return "auto"


def cuda_device(device: Any) -> Any:
    """``torch.cuda.device(device)`` for a CUDA device, else a no-op context."""
    if device is None or getattr(device, "type", str(device).split(":")[0]) != "cuda":
        return contextlib.nullcontext()
    import torch

    return torch.cuda.device(device)


def _through_stop(tokenizer: Any, ids: list[int], stop: str) -> list[int]:
    """The shortest prefix of ``ids`` whose text contains ``stop``."""
    for n in range(1, len(ids) + 1):
        if stop in tokenizer.decode(ids[:n], skip_special_tokens=False):
            return ids[:n]
    return ids


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The end-of-turn token ids: Qwen2.5's two when known, else the tokenizer's EOS."""
    ids: list[int] = []
    # Looked up in the vocabulary: convert_tokens_to_ids maps unknown tokens to an arbitrary id.
    vocab = tokenizer.get_vocab()
    for token in EOS_TOKENS:
        if token in vocab and vocab[token] not in ids:
            ids.append(int(vocab[token]))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.insert(0, tokenizer.eos_token_id)
    if not ids:
        raise PolicyBadRequest(
            "the tokenizer has no end-of-sequence token",
            hint="set tokenizer.eos_token, e.g. <|im_end|> for Qwen2.5",
        )
    return ids
