"""SFT warm start: supervised fine-tuning on recorded trajectories with TRL's ``SFTTrainer``.

A trajectory's ``tokens`` already hold the whole episode as the chat template renders it, with the
training mask of PROTOCOL.md §7 (1 on assistant tokens, the forced ``<think>`` included; 0 on the
prompt, role headers and tool responses). We hand TRL exactly that, pre-tokenized: ``input_ids``
plus an ``assistant_masks`` column, which TRL 1.16 folds into ``labels`` (-100 where the mask is 0)
during dataset preparation, for any dataset and without re-rendering anything. So the tokens the
model is trained on are byte for byte the ones the agent loop produced.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from deepresearcher.agent.trajectory import Trajectory, read_jsonl
from deepresearcher.errors import ConfigError, DataError

TOKENS_HINT = (
    "record them with the tokenizer of the model to train: deepresearcher expert WORLD "
    "--tokenizer MODEL_DIR (or AgentConfig(record_tokens=True) with a policy that has a "
    "tokenizer)"
)


@dataclass
class SFTDataStats:
    """What happened to each trajectory on its way into the SFT dataset."""

    trajectories: int = 0
    used: int = 0
    skipped_no_tokens: int = 0
    skipped_status: int = 0  # status not in the accepted ones (default: only ``answered``)
    skipped_f1: int = 0  # below ``min_f1``
    skipped_no_loss: int = 0  # nothing left to learn (no assistant token, e.g. after truncation)
    dropped_too_long: int = 0  # longer than max_length with ``too_long="drop"``
    truncated: int = 0  # cut to max_length with ``too_long="truncate"``
    tokens: int = 0  # tokens in the dataset
    loss_tokens: int = 0  # of which trained on
    longest: int = 0  # the longest accepted row before any cut
    cut_loss_tokens: int = 0  # assistant tokens lost to cuts (later turns, answers)
    max_length: int | None = None
    extra_rows: int = 0  # rows given besides the trajectories (e.g. copy rows), in the counts

    def summary(self) -> str:
        """One line for logs: how many were used and why the others were not."""
        parts = [f"{self.used}/{self.trajectories} trajectories used"]
        for name in (
            "skipped_no_tokens",
            "skipped_status",
            "skipped_f1",
            "skipped_no_loss",
            "dropped_too_long",
            "truncated",
        ):
            value = getattr(self, name)
            if value:
                parts.append(f"{name.replace('_', ' ')}: {value}")
        if self.extra_rows:
            parts.append(f"{self.extra_rows} extra rows")
        parts.append(f"{self.loss_tokens:,}/{self.tokens:,} tokens trained on")
        return "; ".join(parts)

    def warning(self) -> str | None:
        """What the cuts cost, when they cost assistant tokens: the turns after the cut (the
        answer among them) are never trained on."""
        if not self.cut_loss_tokens:
            return None
        return (
            f"{self.truncated} rows were cut at "
            f"{self.max_length:,} tokens (the longest has {self.longest:,}): "
            f"{self.cut_loss_tokens:,} assistant tokens after the cut (later turns, answers) are "
            "not trained on; raise --max-length, or leave long rows out with --drop-long"
        )


def sft_examples(
    trajectories: Iterable[Trajectory],
    *,
    max_length: int | None = None,
    statuses: Sequence[str] | None = ("answered",),
    min_f1: float | None = None,
    too_long: Literal["truncate", "drop"] = "truncate",
) -> tuple[list[dict[str, list[int]]], SFTDataStats]:
    """Trajectories as TRL rows ``{"input_ids", "assistant_masks"}``, with a count of what was
    left out. ``statuses=None`` keeps every status; ``min_f1`` keeps only episodes scoring at least
    that F1. Longer than ``max_length``: keep the start (``truncate``) or leave it out (``drop``).
    """
    if too_long not in ("truncate", "drop"):
        raise ConfigError(f"too_long must be truncate or drop, not {too_long!r}")
    stats = SFTDataStats(max_length=max_length)
    rows: list[dict[str, list[int]]] = []
    for t in trajectories:
        stats.trajectories += 1
        if t.tokens is None:
            stats.skipped_no_tokens += 1
            continue
        if statuses is not None and t.status not in statuses:
            stats.skipped_status += 1
            continue
        if min_f1 is not None and t.metrics.get("f1", 0.0) < min_f1:
            stats.skipped_f1 += 1
            continue
        tokens = t.tokens
        if len(tokens.loss_mask) != len(tokens.completion_ids):
            raise DataError(
                f"trajectory {t.id}: loss_mask and completion_ids differ in length "
                f"({len(tokens.loss_mask)} vs {len(tokens.completion_ids)})"
            )
        ids = list(tokens.prompt_ids) + list(tokens.completion_ids)
        mask = [0] * len(tokens.prompt_ids) + [1 if m else 0 for m in tokens.loss_mask]
        stats.longest = max(stats.longest, len(ids))
        if max_length is not None and len(ids) > max_length:
            if too_long == "drop":
                stats.dropped_too_long += 1
                continue
            stats.cut_loss_tokens += sum(mask[max_length:])
            ids, mask = ids[:max_length], mask[:max_length]
            stats.truncated += 1
        if not any(mask):
            stats.skipped_no_loss += 1
            continue
        rows.append({"input_ids": ids, "assistant_masks": mask})
        stats.used += 1
        stats.tokens += len(ids)
        stats.loss_tokens += sum(mask)
    return rows, stats


def load_sft_examples(
    path: Path | str, **kwargs: Any
) -> tuple[list[dict[str, list[int]]], SFTDataStats]:
    """:func:`sft_examples` over a trajectory JSONL file, with clear errors for unusable files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"no trajectory file at {path}",
            hint="write one with: deepresearcher expert WORLD --out TRAJ.jsonl",
        )
    rows, stats = sft_examples(read_jsonl(path), **kwargs)
    if stats.trajectories == 0:
        raise DataError(f"{path} holds no trajectories")
    if stats.skipped_no_tokens == stats.trajectories:
        raise DataError(f"no trajectory in {path} has token ids (tokens is null)", hint=TOKENS_HINT)
    if not rows:
        raise DataError(
            f"no trajectory in {path} is usable for SFT ({stats.summary()})",
            hint="accept more statuses (--status), or raise --max-length",
        )
    return rows, stats


def check_vocabulary(rows: Sequence[dict[str, list[int]]], tokenizer: Any, model: Any) -> None:
    """Refuse token ids recorded with another tokenizer: the ids would silently mean other text."""
    # A ZeRO-3 shard has no rows of its own until gathered: then the config says the size.
    vocab = int(model.get_input_embeddings().weight.shape[0]) or int(model.config.vocab_size)
    biggest = max(max(r["input_ids"]) for r in rows)
    first = tokenizer.decode(rows[0]["input_ids"][:1])
    if biggest >= vocab or first != "<|im_start|>":
        raise DataError(
            "the trajectories were tokenized with a different tokenizer than the model's "
            f"(largest id {biggest}, vocabulary {vocab}; first token decodes to {first!r})",
            hint=TOKENS_HINT,
        )


# Training -------------------------------------------------------------------------------------------


@dataclass
class SFTResult:
    """What a run did: data counts, losses, time, and where the model went."""

    out: Path
    data: SFTDataStats
    steps: int = 0
    seconds: float = 0.0
    first_loss: float | None = None
    last_loss: float | None = None
    train_loss: float | None = None  # mean over the run, as the trainer reports it
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, logged loss)
    device: str = "cpu"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        return data


LogSink = Callable[[int, int, dict[str, float]], None]  # (step, max steps, logged values)


def _loss_recorder(result: SFTResult, on_log: LogSink | None) -> Any:
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):  # type: ignore[misc]
        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            logs = logs or {}
            if "loss" in logs and math.isfinite(float(logs["loss"])):
                result.losses.append((int(state.global_step), float(logs["loss"])))
            if on_log is not None:
                numbers = {k: float(v) for k, v in logs.items() if isinstance(v, int | float)}
                on_log(int(state.global_step), int(state.max_steps), numbers)

    return Recorder()


def build_sft_trainer(
    trajectories: Path | str | Sequence[Trajectory],
    model: str | Path,
    out: Path | str,
    *,
    epochs: float = 1.0,
    max_steps: int = -1,
    lr: float = 1e-4,
    batch_size: int = 4,
    grad_accum: int = 1,
    max_length: int | None = 2048,
    seed: int = 0,
    statuses: Sequence[str] | None = ("answered",),
    min_f1: float | None = None,
    too_long: Literal["truncate", "drop"] = "truncate",
    warmup: float = 0.05,
    weight_decay: float = 0.0,
    lr_scheduler: str = "cosine",
    logging_steps: int = 10,
    gradient_checkpointing: bool = False,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    callbacks: Sequence[Any] = (),
    extra_rows: Sequence[dict[str, list[int]]] = (),
) -> tuple[Any, SFTDataStats]:
    """A ready ``trl.SFTTrainer`` over the trajectories' tokens, and the data counts.

    ``model`` is a directory written by ``save_pretrained`` or a Hub id; its tokenizer must be the
    one the trajectories were recorded with. ``device="auto"`` trains on CUDA when available
    (bf16 where supported) and on the CPU otherwise (fp32: bf16 fails there). ``extra_rows``
    (``{"input_ids", "assistant_masks"}``, e.g. the copy rows the quickstart keeps in the mix)
    are trained on beside the trajectories, shuffled in with them.
    """
    from deepresearcher.agent.policy import import_torch, load_tokenizer, resolve_model_name
    from deepresearcher.agent.policy_hf import resolve_device
    from deepresearcher.train.grpo import interrupt_callback

    torch = import_torch()
    try:
        from datasets import Dataset
        from transformers import AutoModelForCausalLM
        from trl import SFTConfig, SFTTrainer
    except ImportError as exc:
        raise ConfigError(
            f"SFT needs TRL and datasets ({exc})", hint="pip install 'deepresearcher[train]'"
        ) from exc

    options = {
        "max_length": max_length,
        "statuses": statuses,
        "min_f1": min_f1,
        "too_long": too_long,
    }
    if isinstance(trajectories, str | Path):
        rows, stats = load_sft_examples(trajectories, **options)  # type: ignore[arg-type]
    else:
        rows, stats = sft_examples(trajectories, **options)  # type: ignore[arg-type]
        if not rows:
            raise DataError(
                f"no trajectory is usable for SFT ({stats.summary()})",
                hint=TOKENS_HINT if stats.skipped_no_tokens else None,
            )

    for row in extra_rows:
        ids, mask = list(row["input_ids"]), list(row["assistant_masks"])
        if len(ids) != len(mask) or not any(mask):
            raise DataError("an extra SFT row has a mask of another length or nothing to learn")
        if max_length is not None and len(ids) > max_length:
            raise DataError(f"an extra SFT row is longer than max_length ({len(ids)} tokens)")
        rows.append({"input_ids": ids, "assistant_masks": mask})
        stats.extra_rows += 1
        stats.tokens += len(ids)
        stats.loss_tokens += sum(1 for m in mask if m)

    cuda = resolve_device(device) == "cuda"
    # Native bf16 only (Ampere and later): older GPUs emulate it, slower than float32.
    bf16 = bool(cuda and torch.cuda.is_bf16_supported(including_emulation=False))
    name = resolve_model_name(model)
    tokenizer = load_tokenizer(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # The config comes first: under DeepSpeed ZeRO-3 it is what makes the model load sharded
    # (straight into each process's part) instead of whole on every process.
    config = SFTConfig(
        output_dir=str(out),
        num_train_epochs=epochs,
        max_steps=max_steps,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        warmup_steps=warmup,  # a fraction of the steps when below 1
        weight_decay=weight_decay,
        lr_scheduler_type=lr_scheduler,
        # A run shorter than the logging interval still logs its loss once.
        logging_steps=min(logging_steps, max_steps) if max_steps and max_steps > 0 else logging_steps,
        seed=seed,
        data_seed=seed,
        # Rows are already cut to max_length (and counted); TRL's own cut is then a no-op.
        max_length=max_length,
        # Trajectories are one conversation each: no packing, so attention never crosses two.
        packing=False,
        # Every row carries its mask; completion_mask / prompt-completion logic does not apply.
        completion_only_loss=False,
        assistant_only_loss=False,
        use_cpu=not cuda,
        bf16=bf16,
        fp16=False,
        # On CPU checkpointing only costs time; it also turns off the KV cache for generate.
        activation_checkpointing=gradient_checkpointing,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    lm = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
    check_vocabulary(rows, tokenizer, lm)
    trainer = _selected_logits_trainer(SFTTrainer)(
        model=lm,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[*callbacks, interrupt_callback()],
    )
    return trainer, stats


def _selected_logits_trainer(base: type) -> type:
    """``base`` (TRL's ``SFTTrainer``) with a loss that projects only the trained positions onto
    the vocabulary.

    An agent trajectory is mostly context (prompt and tool responses); its assistant tokens are a
    small share of it. The loss is the same mean token cross-entropy as TRL's, but the language-model
    head, which dominates the cost of a small model, runs on those tokens only
    (``benchmarks/bench_sft_loss.py``: 3.5x faster forward and backward on a quickstart batch).
    A model wrapped for several processes runs its forward through the wrapper, with the head on
    the union of the batch's trained positions.
    Models with logit soft-capping and evaluation fall back to TRL's loss.
    """

    class SelectedLogitsSFTTrainer(base):  # type: ignore[misc, valid-type]
        def compute_loss(
            self, model: Any, inputs: Any, return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            config = getattr(model, "config", None)
            if (return_outputs or not model.training or "labels" not in inputs
                    or getattr(config, "final_logit_softcapping", None)
                    or self.aux_loss_enabled):
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            import torch
            import torch.nn.functional as F

            labels = inputs["labels"]
            # Position t predicts token t + 1.
            targets = labels[:, 1:]
            keep = targets != -100
            # FSDP2 shards the model in place (no wrapper to unwrap): its forward must still
            # run from the root module, which gathers the shards.
            if self.accelerator.unwrap_model(model) is model and not self.is_fsdp_enabled:
                # accelerate puts mixed precision around the model's forward only: a direct
                # call of its decoder and head needs the autocast itself.
                with self.accelerator.autocast():
                    hidden = model.get_decoder()(
                        input_ids=inputs["input_ids"],
                        attention_mask=inputs.get("attention_mask"),
                        position_ids=inputs.get("position_ids"),
                        use_cache=False,
                    ).last_hidden_state
                    logits = model.get_output_embeddings()(hidden[:, :-1][keep]).float()
                chosen = targets[keep]
            else:
                # Wrapped (DDP, DeepSpeed, FSDP): the forward must go through the wrapper, which
                # syncs gradients and gathers shards. The head then runs on every position that
                # any row of the batch trains on.
                positions = keep.any(dim=0).nonzero().squeeze(-1)
                logits = model(
                    input_ids=inputs["input_ids"],
                    attention_mask=inputs.get("attention_mask"),
                    position_ids=inputs.get("position_ids"),
                    use_cache=False,
                    logits_to_keep=positions,
                ).logits
                kept = keep[:, positions]
                logits = logits[kept].float()
                chosen = targets[:, positions][kept]
            loss_sum = F.cross_entropy(logits, chosen, reduction="sum")
            count = keep.sum() if num_items_in_batch is None else num_items_in_batch
            loss = loss_sum / torch.as_tensor(count).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            with torch.no_grad():
                n = max(int(keep.sum()), 1)
                logp = torch.log_softmax(logits, dim=-1)
                entropy = -(logp.exp() * logp).sum(-1).sum().item() / n
                accuracy = (logits.argmax(-1) == chosen).sum().item() / n
            metrics = self._metrics["train"]
            metrics["entropy"].append(entropy)
            metrics["mean_token_accuracy"].append(accuracy)
            return loss

    return SelectedLogitsSFTTrainer


def run_sft(
    trajectories: Path | str | Sequence[Trajectory],
    model: str | Path,
    out: Path | str,
    *,
    epochs: float = 1.0,
    lr: float = 1e-4,
    batch_size: int = 4,
    max_length: int | None = 2048,
    seed: int = 0,
    max_steps: int = -1,
    on_log: LogSink | None = None,
    **kwargs: Any,
) -> SFTResult:
    """Fine-tune ``model`` on the trajectories and ``save_pretrained`` model and tokenizer to ``out``.

    Only assistant tokens are trained on (PROTOCOL.md §7); by default only ``answered`` episodes
    are used. ``max_steps > 0`` overrides ``epochs``. Other keyword arguments go to
    :func:`build_sft_trainer`. Returns losses and counts; ``out`` is loadable by ``HFPolicy``.
    """
    out = Path(out)
    result = SFTResult(out=out, data=SFTDataStats())
    trainer, stats = build_sft_trainer(
        trajectories,
        model,
        out,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        max_steps=max_steps,
        callbacks=[_loss_recorder(result, on_log)],
        **kwargs,
    )
    result.data = stats
    result.device = str(trainer.args.device)
    started = time.perf_counter()
    output = trainer.train()
    result.seconds = time.perf_counter() - started
    result.steps = int(trainer.state.global_step)
    result.train_loss = float(output.training_loss)
    if result.losses:
        result.first_loss, result.last_loss = result.losses[0][1], result.losses[-1][1]
    out.mkdir(parents=True, exist_ok=True)
    # The trainer's own save: under several processes only the main one writes, and sharded
    # weights (ZeRO-3, FSDP) are gathered first; the tokenizer is saved with the model.
    trainer.save_model(str(out))
    return result


# Checking the result ----------------------------------------------------------------------------


@dataclass
class FormatReport:
    """How many first turns of a model are well-formed deepresearcher-7b turns."""

    questions: int = 0
    tool_calls: int = 0
    answers: int = 0
    format_errors: int = 0
    examples: list[str] = field(default_factory=list)  # the first few turns, for a look

    @property
    def tool_call_rate(self) -> float:
        return self.tool_calls / self.questions if self.questions else 0.0


def first_turn_format(
    model: str | Path | Any,
    questions: Sequence[str],
    *,
    max_tokens: int = 160,
    date: str = "2025-01-31",
    keep_examples: int = 3,
) -> FormatReport:
    """Greedy first turn of ``model`` (a directory or an ``HFPolicy``) on each question, parsed by
    the deepresearcher-7b rules: how often it is a tool call, an answer, or a format error."""
    from deepresearcher.agent.policy import SamplingParams
    from deepresearcher.agent.policy_hf import HFPolicy
    from deepresearcher.protocol.base import Answer, ProfileSettings, ToolCall
    from deepresearcher.protocol.deepresearcher7b import DeepResearcher7BProfile, parse_turn

    policy = model if isinstance(model, HFPolicy) else HFPolicy.from_pretrained(model)
    profile = DeepResearcher7BProfile(ProfileSettings(date=date))
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0, logprobs=False)

    async def turns() -> list[str]:
        prompts = [profile.render(profile.initial_messages(q), policy.tokenizer) for q in questions]
        generations = await asyncio.gather(*(policy.generate(p, sampling) for p in prompts))
        await policy.aclose()
        return [p.prefix + g.text for p, g in zip(prompts, generations, strict=True)]

    report = FormatReport(questions=len(questions))
    for text in asyncio.run(turns()):
        action = parse_turn(text)
        report.tool_calls += isinstance(action, ToolCall)
        report.answers += isinstance(action, Answer)
        report.format_errors += not isinstance(action, ToolCall | Answer)
        if len(report.examples) < keep_examples:
            report.examples.append(text)
    return report
