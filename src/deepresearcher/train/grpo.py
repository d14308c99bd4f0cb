"""GRPO training of the research agent on TRL's ``GRPOTrainer``, fed by our multi-turn rollouts."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepresearcher.errors import ConfigError, DataError
from deepresearcher.train.recipes import Recipe, dump_recipe


@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) run produced."""

    output_dir: Path
    global_step: int
    resumed_from: str | None
    seconds: float
    log_history: list[dict[str, Any]]


# What a step line and the quickstart's report keep of a training log entry.
STEP_KEYS = (
    "reward", "reward_std", "rollout/f1", "rollout/em", "rollout/format_error_rate",
    "rollout/answered_rate", "rollout/turns", "rollout/search_calls", "rollout/browse_calls",
    "kl", "entropy", "completions/mean_length", "step_time", "time/generation", "time/tools",
    "tools/search_cache_hit_rate",
)

StepSink = Callable[[dict[str, Any]], None]


def step_row(logs: Mapping[str, Any], step: int) -> dict[str, Any] | None:
    """The numbers of one training log entry (``None`` for entries that are not a GRPO step:
    evaluation, the end-of-training summary); evaluation entries become ``eval`` rows with the
    ``eval_`` prefix dropped."""
    evaluation = "eval_reward" in logs
    if "reward" not in logs and not evaluation:
        return None
    prefix = "eval_" if evaluation else ""
    row: dict[str, Any] = {"step": int(step), "mode": "eval" if evaluation else "train"}
    for key in STEP_KEYS:
        value = logs.get(prefix + key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            row[key] = float(value)
    return row


def step_callback(sink: StepSink) -> Any:
    """A ``TrainerCallback`` that hands every GRPO step (and evaluation) to ``sink`` as a
    :func:`step_row` (a caller drawing its own progress also calls :func:`quiet_trainer`)."""
    from transformers import TrainerCallback

    class StepCallback(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kwargs: Any) -> None:
            row = step_row(logs or {}, state.global_step)
            if row is not None:
                sink({**row, "total": int(state.max_steps or 0) or None})

    return StepCallback()


def interrupt_callback() -> Any:
    """A ``TrainerCallback`` that stops training on a Ctrl-C that was dropped on its way (one
    that landed in a finalizer: :mod:`deepresearcher.interrupt`), at the next step boundary."""
    from transformers import TrainerCallback

    from deepresearcher.interrupt import raise_if_interrupted

    class InterruptCheck(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            raise_if_interrupted()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            raise_if_interrupted()

    return InterruptCheck()


def quiet_trainer(trainer: Any) -> None:
    """Remove transformers' tqdm bar and log-dict printer (a caller with its own progress)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def trainer_checkpointing(requested: bool, *, cpu: bool) -> bool:
    """Whether the trainer checkpoints activations: as the recipe asks, on GPUs only, and not
    when FSDP does it itself (``fsdp_activation_checkpointing`` in the accelerate config), which
    transformers refuses together with its own."""
    fsdp_does = _env_true("ACCELERATE_USE_FSDP") and _env_true("FSDP_ACTIVATION_CHECKPOINTING")
    return requested and not cpu and not fsdp_does


def process_count() -> int:
    """How many training processes this run has (``accelerate launch`` / ``torchrun`` set
    ``WORLD_SIZE``; 1 otherwise)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def load_questions(path: Path, limit: int | None = None) -> Any:
    """A ``datasets.Dataset`` with one ``prompt`` column: one user message per question, which
    carries its row's id, golds and data source to the rollout
    (:func:`~deepresearcher.train.rollout.task_prompt`)."""
    from datasets import Dataset

    from deepresearcher.agent.loop import Task
    from deepresearcher.data.paper_format import read_records
    from deepresearcher.train.rollout import task_prompt

    if not Path(path).is_file():
        raise DataError(f"no question file at {path}",
                        hint="build one with `deepresearcher data build-train` or "
                        "`deepresearcher world build`")
    records = read_records(path)
    if limit is not None:
        records = records[:limit]
    if not records:
        raise DataError(f"{path} holds no questions")
    return Dataset.from_list([
        {"prompt": task_prompt(Task(question=r.question, golds=list(r.golds), id=r.id,
                                    data_source=r.data_source))}
        for r in records
    ])


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder of a run, if any. The trainer writes
    ``trainer_state.json`` last, so a folder without it is a save that was killed halfway (a
    ZeRO-3 optimizer state of a 7B model takes minutes to write): the one before it is used."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    steps = []
    for folder in output_dir.glob("checkpoint-*"):
        suffix = folder.name.removeprefix("checkpoint-")
        if folder.is_dir() and suffix.isdigit():
            steps.append((int(suffix), folder))
    for _, folder in sorted(steps, reverse=True):
        if (folder / "trainer_state.json").is_file():
            return str(folder)
    return None


# accelerate launch's --mixed_precision (from its config file), as a recipe dtype.
_LAUNCHER_PRECISION = {"no": "float32", "bf16": "bfloat16", "fp16": "float16"}


def mixed_precision(dtype: str, *, cpu: bool, bf16_supported: bool,
                    launcher: str | None = None, deepspeed: bool = False) -> str:
    """The precision GRPO trains in: float32 on the CPU (bf16 autocast fails there); on GPUs
    the recipe's dtype, with ``auto`` meaning bfloat16 where the GPU supports it.

    ``launcher`` is accelerate launch's ``mixed_precision`` (``ACCELERATE_MIXED_PRECISION``).
    transformers trains in the launcher's bf16/fp16 even when the recipe asks for float32, and
    DeepSpeed refuses any disagreement once training starts, so: ``auto`` follows a launcher that
    asks for mixed precision (any launcher under DeepSpeed), and an explicit dtype that
    disagrees with it is an error now."""
    if cpu:
        return "float32"
    resolved = "bfloat16" if dtype == "auto" and bf16_supported else dtype
    resolved = "float32" if resolved == "auto" else resolved
    wanted = _LAUNCHER_PRECISION.get(launcher or "")
    if wanted is None or (wanted == "float32" and not deepspeed):
        return resolved
    if dtype == "auto":
        return wanted
    if resolved != wanted:
        raise ConfigError(
            f"backend.dtype={dtype} but accelerate launch trains in {wanted} "
            f"(mixed_precision: {launcher})",
            hint="make them agree: backend.dtype=auto follows the launcher, or change "
            "mixed_precision in the accelerate config (--mixed_precision)")
    return resolved


def trl_config(recipe: Recipe, *, n_processes: int = 1) -> Any:
    """The ``GRPOConfig`` of a recipe. One optimizer step per rollout batch: the step's
    ``questions_per_step × rollouts_per_question`` completions are generated once, then used for
    exactly one update (split into micro-batches by gradient accumulation)."""
    import torch
    from trl import GRPOConfig

    g, run, backend = recipe.grpo, recipe.run, recipe.backend
    completions = g.questions_per_step * g.rollouts_per_question
    micro = g.per_device_batch or max(1, completions // n_processes)
    if completions % (micro * n_processes):
        raise ConfigError(
            f"{completions} completions per step do not split into micro-batches of "
            f"{micro} on {n_processes} process(es)",
            hint="make grpo.questions_per_step × grpo.rollouts_per_question a multiple of "
            "grpo.per_device_batch × processes")
    if micro % g.rollouts_per_question and g.rollouts_per_question % micro:
        raise ConfigError("grpo.per_device_batch must divide, or be a multiple of, "
                          "grpo.rollouts_per_question")
    accumulation = completions // (micro * n_processes)
    from deepresearcher.agent.policy_hf import resolve_device

    cpu = resolve_device(backend.device, setting="backend.device") == "cpu"
    precision = mixed_precision(
        backend.dtype, cpu=cpu, bf16_supported=(not cpu) and torch.cuda.is_bf16_supported(including_emulation=False),
        launcher=os.environ.get("ACCELERATE_MIXED_PRECISION"),
        deepspeed=_env_true("ACCELERATE_USE_DEEPSPEED"),
    )

    report_to = list(run.report_to)
    if "wandb" in report_to and not os.environ.get("WANDB_API_KEY") and not os.environ.get(
            "WANDB_MODE"):
        report_to.remove("wandb")  # configured only when the environment says so
    kwargs: dict[str, Any] = dict(
        output_dir=str(run.output_dir),
        seed=run.seed,
        data_seed=run.seed,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=accumulation,
        num_iterations=1,
        num_generations=g.rollouts_per_question,
        learning_rate=g.learning_rate,
        lr_scheduler_type=g.lr_scheduler,
        warmup_steps=g.warmup_steps,
        weight_decay=g.weight_decay,
        max_grad_norm=g.max_grad_norm,
        epsilon=g.clip,
        epsilon_high=g.clip_high or g.clip,
        beta=g.kl_beta,
        # The paper's KL loss is plain k3 (verl's low_var_kl); TRL 1.16 by default multiplies it
        # by the importance ratio, which changes its gradient even on-policy.
        use_bias_correction_kl=False,
        entropy_coef=g.entropy_coef,
        loss_type=g.loss_type,
        scale_rewards=g.scale_rewards,
        mask_truncated_completions=g.mask_truncated_completions,
        temperature=recipe.agent.temperature or 1.0,
        max_completion_length=recipe.agent.context_window or 32768,
        max_steps=g.max_steps,
        num_train_epochs=g.epochs,
        logging_steps=run.log_every,
        save_strategy="steps",
        save_steps=run.save_every,
        save_total_limit=run.save_total_limit,
        report_to=report_to or "none",
        use_cpu=cpu,
        bf16=precision == "bfloat16",
        fp16=precision == "float16",
        activation_checkpointing=trainer_checkpointing(backend.gradient_checkpointing, cpu=cpu),
        use_vllm=backend.use_vllm,
        vllm_mode=backend.vllm_mode,
        # The engine's context is the agent's: a turn that fits the agent fits the engine.
        vllm_max_model_length=recipe.agent.context_window,
        # Per-token truncated importance weights: sequence-level ones multiply thousands of
        # per-token ratios over a multi-turn episode and drop whole episodes for rounding noise.
        vllm_importance_sampling_correction=backend.vllm_importance_sampling != "none",
        vllm_importance_sampling_mode=(backend.vllm_importance_sampling
                                       if backend.vllm_importance_sampling != "none"
                                       else "token_truncate"),
        vllm_importance_sampling_clip_max=backend.vllm_importance_sampling_cap,
        vllm_gpu_memory_utilization=backend.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=backend.vllm_tensor_parallel_size,
        remove_unused_columns=False,
        # Every parameter of a causal LM takes part in each forward: DDP need not search for
        # unused ones (it would traverse the autograd graph again every step).
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    if n_processes > 1:
        # One whole model per process, on its own GPU: TRL asks for that itself under DDP and
        # DeepSpeed only; under FSDP it would spread each process's copy over every GPU.
        kwargs["model_init_kwargs"] = {"device_map": None}
    if backend.vllm_server_base_url:
        kwargs["vllm_server_base_url"] = backend.vllm_server_base_url
    if run.eval_every and recipe.data.dev is not None:
        kwargs.update(eval_strategy="steps", eval_steps=run.eval_every,
                      per_device_eval_batch_size=micro, num_generations_eval=1)
    return GRPOConfig(**kwargs)


def build_trainer(recipe: Recipe) -> tuple[Any, Any]:
    """The ``GRPOTrainer`` and our rollout for a recipe. Every input is checked before the model
    is loaded: a missing index, data file or model is a clear error here, not after minutes."""
    from deepresearcher.agent.build import ToolSettings, build_toolbox
    from deepresearcher.agent.policy import load_tokenizer
    from deepresearcher.train.rewards import get_reward
    from deepresearcher.train.rollout import AgentRollout

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    get_reward(recipe.grpo.reward)  # an unknown reward fails before any work
    t = recipe.tools
    toolbox = build_toolbox(ToolSettings.from_config(t))
    train = load_questions(recipe.data.train, recipe.data.max_train)
    dev = (load_questions(recipe.data.dev, recipe.data.max_dev)
           if recipe.data.dev is not None and recipe.run.eval_every else None)
    tokenizer = load_tokenizer(recipe.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Under `accelerate launch` every process generates and trains on its share of the step:
    # the recipe's questions × rollouts per step is the global batch, not each process's.
    if (not recipe.backend.use_vllm and process_count() > 1
            and _env_true("ACCELERATE_USE_FSDP")):
        raise fsdp_needs_vllm()  # before minutes of model loading (checked again after)
    args = trl_config(recipe, n_processes=process_count())
    trajectories = Path(recipe.run.output_dir) / "trajectories"
    policy_factory = None
    if recipe.backend.use_vllm:
        from deepresearcher.train.vllm_policy import TRLVLLMPolicy

        def policy_factory(trainer: Any) -> Any:
            return TRLVLLMPolicy(trainer, context_window=recipe.agent.context_window,
                                 max_batch_size=recipe.backend.generation_batch)

    eval_config = None
    if recipe.run.eval_temperature is not None:
        eval_config = recipe.agent.model_copy(update={"temperature": recipe.run.eval_temperature})
    rollout = AgentRollout(toolbox, recipe.agent, reward=recipe.grpo.reward,
                           eval_config=eval_config, policy_factory=policy_factory,
                           trajectories_dir=trajectories if recipe.run.save_trajectories else None,
                           max_batch_size=recipe.backend.generation_batch)
    from trl import GRPOTrainer

    # The rollout scores each episode once; TRL's reward function hands it those rewards.
    trainer = GRPOTrainer(model=recipe.model, reward_funcs=[rollout.reward_func()], args=args,
                          train_dataset=train, eval_dataset=dev, processing_class=tokenizer,
                          rollout_func=rollout, callbacks=[interrupt_callback()])
    check_generation_backend(trainer, use_vllm=recipe.backend.use_vllm)
    seed_each_epoch(trainer)
    return trainer, rollout


def seed_each_epoch(trainer: Any) -> None:
    """Make the data order of every epoch a function of the seed and the epoch.

    TRL's sampler shuffles each epoch from one generator seeded once, so a run resumed in its
    second or a later epoch (a new process: a freshly seeded generator) would see another order
    than the run it continues. The trainer calls ``set_epoch`` on the sampler before each
    epoch; giving the sampler one that reseeds with ``seed + epoch`` keeps the first epoch's
    order and makes every later one reproducible on resume."""
    make_sampler = trainer._get_train_sampler

    def sampler(*args: Any, **kwargs: Any) -> Any:
        made = make_sampler(*args, **kwargs)
        generator, seed = getattr(made, "generator", None), getattr(made, "seed", None)
        if generator is not None and seed is not None and not hasattr(made, "set_epoch"):
            made.set_epoch = lambda epoch: generator.manual_seed(int(seed) + int(epoch))
        return made

    trainer._get_train_sampler = sampler


def check_generation_backend(trainer: Any, *, use_vllm: bool) -> None:
    """FSDP with several processes needs vLLM: every forward of an FSDP model is a collective
    call, and the processes of a multi-turn rollout make different numbers of them (episodes end
    at different turns), so transformers' generation would wait forever."""
    from trl.distributed import DistributedBackend

    accelerator = trainer.accelerator
    if use_vllm or accelerator.num_processes <= 1:
        return
    if DistributedBackend(accelerator).is_fsdp:
        raise fsdp_needs_vllm()


def fsdp_needs_vllm() -> ConfigError:
    return ConfigError(
        "FSDP training with several processes generates through vLLM only",
        hint="set backend.use_vllm=true (colocate or server mode), or train with DeepSpeed "
        "ZeRO-3 (configs/accelerate/zero3.yaml), whose weights are gathered for generation")


class _TiedHeadNotice(logging.Filter):
    """Resuming a model with tied input/output embeddings, transformers' trainer reports the
    output embedding as a missing checkpoint key (it is saved once, as the input embedding).
    Drop that report when the two really are one tensor; keep every other missing key."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("There were missing keys in the checkpoint model loaded:"):
            return True
        head, inputs = self.model.get_output_embeddings(), self.model.get_input_embeddings()
        tied = head is not None and inputs is not None and head.weight is inputs.weight
        return not (tied and message.rstrip(".").endswith("['lm_head.weight']"))


def run_grpo(recipe: Recipe, *, resume: bool = True,
             on_step: StepSink | None = None) -> TrainResult:
    """Train; with ``resume`` (the default) continue from the newest checkpoint of the output
    folder, with the same data order, so a killed run loses at most the steps since it.
    ``on_step`` gets every step's :func:`step_row` (then transformers prints nothing itself)."""
    output_dir = Path(recipe.run.output_dir)
    checkpoint = last_checkpoint(output_dir) if resume else None
    trainer, _ = build_trainer(recipe)
    if on_step is not None:
        trainer.add_callback(step_callback(on_step))
        quiet_trainer(trainer)
    main = trainer.is_world_process_zero()  # several processes: one writes the shared files
    output_dir.mkdir(parents=True, exist_ok=True)
    if main:
        (output_dir / "recipe.yaml").write_text(dump_recipe(recipe), encoding="utf-8")
    started = time.perf_counter()
    notice = _TiedHeadNotice(trainer.accelerator.unwrap_model(trainer.model))
    trainer_logger = logging.getLogger("transformers.trainer")
    trainer_logger.addFilter(notice)
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    finally:
        trainer_logger.removeFilter(notice)
    trainer.save_model(str(output_dir / "final"))  # every process: sharded weights are gathered
    history = list(trainer.state.log_history)
    if main:
        trainer.processing_class.save_pretrained(str(output_dir / "final"))
        with (output_dir / "log_history.jsonl").open("w", encoding="utf-8") as fh:
            for entry in history:
                fh.write(json.dumps(entry) + "\n")
    return TrainResult(output_dir=output_dir, global_step=int(trainer.state.global_step),
                       resumed_from=checkpoint, seconds=time.perf_counter() - started,
                       log_history=history)
