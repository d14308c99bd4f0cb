"""``deepresearcher quickstart``: the whole training pipeline, offline, on a CPU, in minutes.

Stages, each writing into one output folder and skipped when its output is already complete
(``stages/<name>.json`` marks a finished stage, with the settings it ran with):

1. ``world``: a fictional encyclopedia (index, pages, questions).
2. ``model``: by default the pretrained tiny base that ships with the package (a tiny Qwen2
   pretrained on other worlds to copy names and write the agent's format, ``models/shipped.py``),
   its checksums checked; ``tiny="random"``: a byte-level BPE tokenizer trained on the world's
   corpus and a random tiny Qwen2.
3. ``expert``: demonstrations written by the scripted expert through the real agent loop, on the
   *train* questions of the chosen types.
4. ``sft``: a deliberately short supervised warm start on them (from the pretrained base,
   with random-token copy rows mixed in so the copying it learned is kept).
5. ``eval_before``: greedy episodes of the SFT model on held-out *test* questions.
6. ``grpo``: GRPO on the train questions (the ``quickstart-cpu`` recipe).
7. ``eval_after``: the same evaluation with the GRPO model.
8. ``report``: ``report.md``, ``report.json``, ``reward_curve.png``, ``trajectories/``.

The code here is UI-free: progress goes to an ``on_event`` callback (the CLI draws it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepresearcher.errors import ConfigError

STAGES = ("world", "model", "expert", "sft", "eval_before", "grpo", "eval_after", "report")
STAGE_TITLES = {
    "world": "world",
    "model": "tokenizer + model",
    "expert": "expert trajectories",
    "sft": "SFT warm start",
    "eval_before": "eval before RL",
    "grpo": "GRPO",
    "eval_after": "eval after RL",
    "report": "report",
}
SINGLE_HOP = ("single_hop",)
TINY_SFT_LR = 3e-3
# The pretrained tiny base: fine-tuning rates below those it was pretrained with (2e-3, 1e-3).
PRETRAINED_SFT_LR = 1e-3
TINY_SFT_STEPS = 300
# The pretrained base writes the agent's format already: a shorter warm start adapts it to the
# new world (300 steps measured no better held-out F1 than 100, at 2.5 minutes more).
PRETRAINED_SFT_STEPS = 100
# GRPO from the pretrained base: 5e-4 (the from-scratch rate) broke its turns within a few steps
# (rollout format errors 39% -> 98%); 1e-4 kept them. Sampled at temperature 1 the tiny model's
# flat distributions write malformed turns and misspelled names in a third of the rollouts; 0.7
# keeps the exploration where the reward is decided (docs/quickstart.md has the measurements).
PRETRAINED_OVERRIDES = ("grpo.learning_rate=1e-4", "agent.temperature=0.7")
TINY_KINDS = ("pretrained", "random")
# Starting from a pretrained model: fine-tuning learning rates instead of the tiny model's (the
# GRPO one is the paper's), unless set. Suggested defaults, not tuned on this project's hardware.
BASE_MODEL_SFT_LR = 1e-5
# A pretrained model is far larger than the tiny one: activation checkpointing (GPUs only), and
# the step's episodes trained in micro-batches of at most 8 (BASE_MODEL_MICRO_BATCH).
BASE_MODEL_OVERRIDES = ("grpo.learning_rate=1e-6", "backend.gradient_checkpointing=true")
BASE_MODEL_MICRO_BATCH = 8

EventSink = Callable[[str, dict[str, Any]], None]  # (kind, data)


@dataclass
class QuickstartSettings:
    """Everything the quickstart does, besides the GRPO recipe (``recipe`` + ``overrides``)."""

    seed: int = 0
    # world and questions
    entities: int = 300
    question_types: tuple[str, ...] = SINGLE_HOP
    eval_questions: int = 48  # held-out test questions of the same types (fewer if the world has)
    train_questions: int | None = None  # cap on train questions for the expert and GRPO
    expert_style: str = "terse"  # how the expert words its demonstrations (see train/expert.py)
    # the model: the shipped pretrained tiny base (``tiny="pretrained"``), a tiny random Qwen2 with
    # a tokenizer of the world (``tiny="random"``: the size settings below), or ``base_model`` (a
    # causal LM with a chat template: a local folder or a Hub id) with its own tokenizer
    base_model: str | None = None
    tiny: str = "pretrained"
    vocab_size: int = 8192
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    init_std: float = 0.1
    # SFT warm start (short on purpose: RL must have room to improve)
    sft_steps: int | None = None  # None: 100 from the pretrained base, else 300 (halved by fast)
    sft_lr: float | None = None  # None: 3e-3 for the tiny model, 1e-5 for a base model
    sft_batch: int = 4
    sft_max_length: int = 1536
    # from the pretrained base: copy rows (random tokens, spans repeated at every distance) mixed
    # into SFT, this many per expert episode, of ``sft_copy_length`` tokens
    sft_copy_share: float = 0.25
    sft_copy_length: int = 1024
    # where SFT, the evaluations and GRPO run: "cpu", "cuda", or "auto" (CUDA when available)
    device: str = "cpu"
    # GRPO: the built-in recipe, with overrides (``grpo.max_steps=20`` ...)
    recipe: str = "quickstart-cpu"
    overrides: tuple[str, ...] = ()
    fast: bool = False

    @property
    def effective_sft_lr(self) -> float:
        if self.sft_lr is not None:
            return self.sft_lr
        if self.base_model:
            return BASE_MODEL_SFT_LR
        return PRETRAINED_SFT_LR if self.pretrained_tiny else TINY_SFT_LR

    @property
    def effective_sft_steps(self) -> int:
        if self.sft_steps is not None:
            return self.sft_steps
        steps = PRETRAINED_SFT_STEPS if self.pretrained_tiny else TINY_SFT_STEPS
        return steps // 2 if self.fast else steps

    @property
    def pretrained_tiny(self) -> bool:
        """Starting from the shipped pretrained tiny base."""
        return self.base_model is None and self.tiny == "pretrained"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["sft_lr"] = self.effective_sft_lr
        data["sft_steps"] = self.effective_sft_steps
        data["question_types"] = list(self.question_types)
        data["overrides"] = list(self.overrides)
        return data


# The settings each stage reads (a stage also depends on every stage before it).
_STAGE_SETTINGS: dict[str, tuple[str, ...]] = {
    "world": ("seed", "entities"),
    "model": ("base_model", "tiny", "vocab_size", "hidden_size", "layers", "heads", "kv_heads",
              "init_std"),
    "expert": ("question_types", "eval_questions", "train_questions", "expert_style"),
    "sft": ("sft_steps", "sft_lr", "sft_batch", "sft_max_length", "sft_copy_share",
            "sft_copy_length", "device"),
}

# The reduced run the tests and ``--fast`` use: a smaller world, fewer steps, fewer questions.
FAST = dict(entities=150, eval_questions=24, train_questions=96)
FAST_OVERRIDES = ("grpo.max_steps=6", "grpo.questions_per_step=4", "grpo.rollouts_per_question=4")

DEVICES = ("cpu", "cuda", "auto")


def fast_settings(**changes: Any) -> QuickstartSettings:
    """The ``--fast`` settings (a run of about a minute and a half), with ``changes`` applied."""
    overrides = tuple(changes.pop("overrides", ()))
    return QuickstartSettings(
        **{**FAST, "fast": True, **changes}, overrides=FAST_OVERRIDES + overrides
    )


@dataclass
class StageResult:
    name: str
    seconds: float = 0.0
    skipped: bool = False
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuickstartResult:
    """What a run produced: per-stage results, the before/after metrics and the report files."""

    out: Path
    settings: QuickstartSettings
    stages: dict[str, StageResult] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def before(self) -> dict[str, Any]:
        return self.stages["eval_before"].data["metrics"]

    @property
    def after(self) -> dict[str, Any]:
        return self.stages["eval_after"].data["metrics"]

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages.values())


class Quickstart:
    """The pipeline over one output folder. ``run()`` runs (or resumes) every stage."""

    def __init__(
        self,
        out: Path | str,
        settings: QuickstartSettings | None = None,
        *,
        on_event: EventSink | None = None,
        resume: bool = True,
    ) -> None:
        self.out = Path(out)
        self.settings = settings or QuickstartSettings()
        self.on_event = on_event or (lambda kind, data: None)
        self.resume = resume
        self.result = QuickstartResult(self.out, self.settings)
        self._recipe: Any = None

    # paths ---------------------------------------------------------------------------------------
    @property
    def world_dir(self) -> Path:
        return self.out / "world"

    @property
    def model_dir(self) -> Path:
        return self.out / "model"

    @property
    def model_source(self) -> str:
        """What SFT starts from and the expert tokenizes with: the base model, or ``model/``."""
        return self.settings.base_model or str(self.model_dir)

    @property
    def sft_dir(self) -> Path:
        return self.out / "sft"

    @property
    def grpo_dir(self) -> Path:
        return self.out / "grpo"

    @property
    def traj_dir(self) -> Path:
        return self.out / "trajectories"

    # driver --------------------------------------------------------------------------------------
    def run(self) -> QuickstartResult:
        self._check_out()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "stages").mkdir(exist_ok=True)
        _limit_threads()
        _quiet_libraries()
        self.recipe()  # a bad override is an error before any work
        if self.settings.device == "cuda":
            from deepresearcher.agent.policy_hf import resolve_device

            resolve_device("cuda")  # no CUDA: an error before any stage
        for name in STAGES:
            self._stage(name)
        return self.result

    def _check_out(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"{self.out} exists and is not a folder")
        if self.out.is_dir() and any(self.out.iterdir()):
            known = {
                "world",
                "model",
                "expert.jsonl",
                "data",
                "sft",
                "grpo",
                "trajectories",
                "logs",
                "stages",
                "report.md",
                "report.json",
                "reward_curve.png",
            }
            strangers = [p.name for p in self.out.iterdir() if p.name not in known]
            if strangers:
                raise ConfigError(
                    f"{self.out} holds files that are not a quickstart's ({', '.join(strangers[:3])})",
                    hint="pass an empty or new folder to --out",
                )

    def _key(self, name: str) -> str:
        """What a stage depends on: a finished stage is reused only with the same key (its own
        settings and those of every stage before it)."""
        s = self.settings.to_json()
        upto = STAGES.index(name)
        chosen: dict[str, Any] = {}
        for stage in STAGES[: upto + 1]:
            chosen.update({k: s[k] for k in _STAGE_SETTINGS.get(stage, ())})
        if upto >= STAGES.index("model") and self.settings.pretrained_tiny:
            # Another shipped base (a new package version) reruns the model stage and those after.
            chosen["pretrained"] = _shipped_weights_digest()
        if upto >= STAGES.index("expert"):
            chosen["agent"] = self.recipe().agent.model_dump(mode="json")
            chosen["tools"] = self.recipe().tools.model_dump(mode="json", exclude={"world"})
        if upto >= STAGES.index("grpo"):
            chosen["grpo"] = self.recipe().grpo.model_dump(mode="json")
            chosen["recipe"], chosen["overrides"] = s["recipe"], s["overrides"]
        digest = hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]

    def _stage(self, name: str) -> None:
        marker = self.out / "stages" / f"{name}.json"
        key = self._key(name)
        if self.resume and name != "report" and marker.is_file():
            saved = json.loads(marker.read_text(encoding="utf-8"))
            if saved.get("key") == key:
                result = StageResult(name, float(saved["seconds"]), True, saved["data"])
                self.result.stages[name] = result
                self.on_event("stage_skip", {"stage": name, "seconds": result.seconds})
                return
        marker.unlink(missing_ok=True)
        # A stage that reruns invalidates every later one.
        for later in STAGES[STAGES.index(name) + 1 :]:
            (self.out / "stages" / f"{later}.json").unlink(missing_ok=True)
        self.on_event("stage_start", {"stage": name})
        started = time.perf_counter()
        # What the libraries print (trainer log dicts) goes to logs/<stage>.log, not the screen.
        (self.out / "logs").mkdir(exist_ok=True)
        with (
            (self.out / "logs" / f"{name}.log").open("w", encoding="utf-8") as log,
            contextlib.redirect_stdout(log),
        ):
            data = getattr(self, f"_run_{name}")()
        result = StageResult(name, time.perf_counter() - started, False, data)
        self.result.stages[name] = result
        marker.write_text(
            json.dumps({"key": key, "seconds": result.seconds, "data": data}, indent=1),
            encoding="utf-8",
        )
        self.on_event("stage_end", {"stage": name, "seconds": result.seconds, "data": data})

    # settings --------------------------------------------------------------------------------------
    def recipe(self) -> Any:
        """The GRPO recipe: the built-in one, filled in with this run's paths, then overrides."""
        if self._recipe is None:
            from deepresearcher.train.recipes import load_recipe

            s = self.settings
            if s.device not in DEVICES:
                raise ConfigError(
                    f"unknown device {s.device!r}", hint=f"one of: {', '.join(DEVICES)}"
                )
            if s.tiny not in TINY_KINDS:
                raise ConfigError(
                    f"unknown tiny model {s.tiny!r}", hint=f"one of: {', '.join(TINY_KINDS)}"
                )
            filled = [
                f"model={self.sft_dir}",
                f"tools.world={self.world_dir}",
                f"data.train={self.out / 'data' / 'train.jsonl'}",
                "data.dev=null",
                f"run.output_dir={self.grpo_dir}",
                f"run.seed={s.seed}",
                f"backend.device={s.device}",
                # float32 on the CPU; bfloat16 where a GPU supports it
                *(["backend.dtype=auto"] if s.device != "cpu" else []),
                *(BASE_MODEL_OVERRIDES if s.base_model else ()),
                *(PRETRAINED_OVERRIDES if s.pretrained_tiny else ()),
            ]
            self._recipe = load_recipe(s.recipe, filled + list(s.overrides))
            self._recipe.agent = self._recipe.agent.model_copy(update={"seed": None})
            grpo = self._recipe.grpo
            if s.base_model and grpo.per_device_batch is None:
                # The largest micro-batch up to 8 that splits every group evenly.
                micro = max(m for m in range(1, BASE_MODEL_MICRO_BATCH + 1)
                            if grpo.rollouts_per_question % m == 0)
                self._recipe.grpo = grpo.model_copy(update={"per_device_batch": micro})
        return self._recipe

    def eval_config(self) -> Any:
        """The agent settings of the recipe, decoded greedily."""
        return self.recipe().agent.model_copy(update={"temperature": 0.0, "seed": None})

    def toolbox(self) -> Any:
        from deepresearcher.agent.build import ToolSettings, build_toolbox

        return build_toolbox(ToolSettings.from_config(self.recipe().tools, world=self.world_dir))

    # stages ----------------------------------------------------------------------------------------
    def _run_world(self) -> dict[str, Any]:
        from deepresearcher.world import build_world

        if self.world_dir.exists():
            shutil.rmtree(self.world_dir)
        manifest = build_world(
            self.world_dir, seed=self.settings.seed, entities=self.settings.entities
        )
        counts = {
            split: _count_lines(self.world_dir / "questions" / f"{split}.jsonl")
            for split in ("train", "dev", "test")
        }
        return {
            "entities": self.settings.entities,
            "questions": counts,
            "passages": _count_lines(self.world_dir / "corpus.jsonl"),
            "version": getattr(manifest, "version", None),
        }

    def _run_model(self) -> dict[str, Any]:
        from deepresearcher.models.tiny import build_tiny_qwen2

        s = self.settings
        if self.model_dir.exists():
            shutil.rmtree(self.model_dir)
        if s.base_model:
            return _check_base_model(s.base_model)
        if s.pretrained_tiny:
            from deepresearcher.models.shipped import write_pretrained

            card = write_pretrained(self.model_dir)
            return {
                "base": "pretrained",
                "vocab": card["vocab"],
                "parameters": card["parameters"],
                "hidden_size": card["settings"]["hidden_size"],
                "layers": card["settings"]["layers"],
                "pretrain_steps": card["steps"],
                "pretrain_tokens": card["tokens"],
                "pretrain_seconds": card["seconds"],
                "sha256": card["files"]["model.safetensors"],
            }
        tokenizer = world_tokenizer(self.world_dir, self.model_dir, vocab_size=s.vocab_size)
        model = build_tiny_qwen2(
            self.model_dir,
            tokenizer,
            hidden_size=s.hidden_size,
            layers=s.layers,
            heads=s.heads,
            kv_heads=s.kv_heads,
            seed=s.seed,
            max_position_embeddings=max(4096, self.recipe().agent.context_window or 0),
            init_std=s.init_std,
        )
        return {
            "vocab": len(tokenizer),
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "hidden_size": s.hidden_size,
            "layers": s.layers,
        }

    def _questions(
        self, split: str, limit: int | None, rng_seed: int | None = None
    ) -> list[dict[str, Any]]:
        rows = [
            json.loads(line)
            for line in (self.world_dir / "questions" / f"{split}.jsonl")
            .read_text(encoding="utf-8")
            .splitlines()
            if line.strip()
        ]
        rows = [r for r in rows if r.get("question_type") in self.settings.question_types]
        if rng_seed is not None:
            random.Random(rng_seed).shuffle(rows)
        return rows[:limit] if limit is not None else rows

    def _run_expert(self) -> dict[str, Any]:
        import asyncio

        from deepresearcher.agent.loop import Agent, Task
        from deepresearcher.agent.policy import load_tokenizer
        from deepresearcher.agent.trajectory import write_jsonl
        from deepresearcher.data.paper_format import QARecord
        from deepresearcher.data.paper_format import write_jsonl as write_records
        from deepresearcher.train.expert import ExpertCase, ExpertPolicy

        s = self.settings
        train = self._questions("train", s.train_questions, rng_seed=s.seed)
        test = self._questions("test", s.eval_questions, rng_seed=s.seed)
        data = self.out / "data"
        def records(rows: list[dict[str, Any]], split: str) -> list[QARecord]:
            return [QARecord(id=r["index"], question=r["question"], golds=list(r["answers"]),
                             data_source=r["data_source"], split=split) for r in rows]

        write_records(records(train, "train"), data / "train.jsonl")
        write_records(records(test, "test"), data / "eval.jsonl")
        cases = [ExpertCase.from_record(r, index=i) for i, r in enumerate(train)]
        tokenizer = load_tokenizer(self.model_source)
        agent_cfg = self.eval_config()
        # The expert's turns are short; its episodes may use the paper's budgets.
        cfg = agent_cfg.model_copy(
            update={
                "max_tokens_per_turn": 2000,
                "context_window": 32768,
                "seed": s.seed,
                "record_tokens": True,
            }
        )
        policy = ExpertPolicy(cases, tokenizer, seed=s.seed, max_turns=cfg.max_turns,
                              style=s.expert_style)
        agent = Agent(policy, self.toolbox(), cfg)
        done = 0

        def on_done(_: Any) -> None:
            nonlocal done
            done += 1
            self.on_event("progress", {"stage": "expert", "completed": done, "total": len(cases)})

        tasks = [
            Task(question=c.question, golds=list(c.answers), id=c.id, data_source=c.data_source)
            for c in cases
        ]
        trajectories = asyncio.run(agent.run_many(tasks, concurrency=16, on_done=on_done))
        write_jsonl(self.out / "expert.jsonl", trajectories, append=False)
        exact = sum(t.status == "answered" and t.metrics.get("f1") == 1.0 for t in trajectories)
        lengths = [
            len(t.tokens.prompt_ids) + len(t.tokens.completion_ids)
            for t in trajectories
            if t.tokens is not None
        ]
        return {
            "episodes": len(trajectories),
            "exact": exact,
            "train_questions": len(train),
            "eval_questions": len(test),
            "mean_tokens": round(sum(lengths) / max(len(lengths), 1), 1),
            "max_tokens": max(lengths, default=0),
        }

    def _run_sft(self) -> dict[str, Any]:
        from deepresearcher.train.sft import run_sft

        s = self.settings
        if self.sft_dir.exists():
            shutil.rmtree(self.sft_dir)

        def on_log(step: int, total: int, logs: dict[str, float]) -> None:
            self.on_event(
                "progress",
                {"stage": "sft", "completed": step, "total": total, "loss": logs.get("loss")},
            )

        from deepresearcher.agent.policy_hf import resolve_device

        copy_rows: list[dict[str, list[int]]] = []
        if s.pretrained_tiny:
            from deepresearcher.models.shipped import verify

            verify(self.model_dir)  # the base is loaded only as it shipped
            copy_rows = self._copy_rows()
        result = run_sft(
            self.out / "expert.jsonl",
            self.model_source,
            self.sft_dir,
            max_steps=s.effective_sft_steps,
            lr=s.effective_sft_lr,
            batch_size=s.sft_batch,
            max_length=s.sft_max_length,
            seed=s.seed,
            on_log=on_log,
            logging_steps=10,
            device=s.device,  # type: ignore[arg-type]
            gradient_checkpointing=bool(s.base_model) and resolve_device(s.device) == "cuda",
            extra_rows=copy_rows,
        )
        shutil.rmtree(self.sft_dir / "runs", ignore_errors=True)
        return {
            "steps": result.steps,
            "first_loss": result.first_loss,
            "last_loss": result.last_loss,
            "losses": result.losses,
            "rows": result.data.used,
            "copy_rows": result.data.extra_rows,
            "loss_tokens": result.data.loss_tokens,
        }

    def _copy_rows(self) -> list[dict[str, list[int]]]:
        """Random-token rows with spans repeated at every distance (the pretraining's own kind),
        ``sft_copy_share`` per expert episode: fine-tuning on one world's episodes alone would
        wear down the copying the base learned, which the agent needs for names it never saw."""
        from deepresearcher.agent.policy import load_tokenizer
        from deepresearcher.models.curriculum import copy_tokens, long_copy_row

        s = self.settings
        episodes = _count_lines(self.out / "expert.jsonl")
        count = round(s.sft_copy_share * episodes)
        tokens = copy_tokens(load_tokenizer(str(self.model_dir)))
        rng = random.Random(s.seed)
        length = min(s.sft_copy_length, s.sft_max_length)
        rows = [long_copy_row(rng, length, tokens) for _ in range(count)]
        return [{"input_ids": r.ids, "assistant_masks": r.mask} for r in rows]

    def _evaluate(self, model: Path, name: str) -> dict[str, Any]:
        from deepresearcher.agent.loop import Task
        from deepresearcher.data.paper_format import read_records
        from deepresearcher.train.evaluate import evaluate_model

        _seed_everything(self.settings.seed)
        records = read_records(self.out / "data" / "eval.jsonl")
        tasks = [
            Task(question=r.question, golds=list(r.golds), id=r.id, data_source=r.data_source)
            for r in records
        ]
        done = 0

        def on_done(_: Any) -> None:
            nonlocal done
            done += 1
            self.on_event("progress", {"stage": name, "completed": done, "total": len(tasks)})

        metrics, _ = evaluate_model(
            model,
            self.toolbox(),
            tasks,
            self.eval_config(),
            out=self.traj_dir / f"{name}.jsonl",
            on_done=on_done,
            device=self.settings.device,
        )
        return {"model": str(model.relative_to(self.out)), "metrics": metrics.to_json()}

    def _run_eval_before(self) -> dict[str, Any]:
        return self._evaluate(self.sft_dir, "eval_before")

    def _run_grpo(self) -> dict[str, Any]:
        from deepresearcher.train.grpo import run_grpo

        recipe = self.recipe()
        if self.grpo_dir.exists():
            shutil.rmtree(self.grpo_dir)
        _seed_everything(self.settings.seed)
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        steps: list[dict[str, Any]] = []
        sink = self.on_event
        total = recipe.grpo.max_steps

        def on_step(row: dict[str, Any]) -> None:
            if row.get("mode") != "train":
                return
            row = {k: v for k, v in row.items() if k not in ("mode", "total")}
            steps.append(row)
            sink("grpo_step", {**row, "total": total})

        # The same training as `deepresearcher train` (recipe.yaml, final/, log_history.jsonl);
        # the stage reruns whole, so it never resumes from a checkpoint of an earlier run.
        result = run_grpo(recipe, resume=False, on_step=on_step)
        return {"steps": steps, "global_step": result.global_step}

    def _run_eval_after(self) -> dict[str, Any]:
        return self._evaluate(self.grpo_dir / "final", "eval_after")

    def _run_report(self) -> dict[str, Any]:
        return write_report(self)


# helpers -------------------------------------------------------------------------------------------


def _shipped_weights_digest() -> str:
    from deepresearcher.models.shipped import read_card

    return str(read_card()["files"].get("model.safetensors", ""))


def _check_base_model(name: str) -> dict[str, Any]:
    """What the model stage records for a pretrained starting point, after checking that its
    tokenizer has a chat template (the agent's prompts are rendered with it)."""
    from transformers import AutoConfig

    from deepresearcher.agent.policy import load_tokenizer, model_not_found, resolve_model_name

    resolved = resolve_model_name(name)
    tokenizer = load_tokenizer(resolved)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"the tokenizer of {name} has no chat template",
            hint="start from an instruction-tuned model (e.g. Qwen/Qwen2.5-0.5B-Instruct)",
        )
    try:
        config = AutoConfig.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise model_not_found(resolved, exc) from exc
    return {
        "base_model": name,
        "vocab": len(tokenizer),
        "model_type": getattr(config, "model_type", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "layers": getattr(config, "num_hidden_layers", None),
    }


def world_tokenizer(world_dir: Path, out_dir: Path, *, vocab_size: int = 8192) -> Any:
    """The quickstart's tokenizer, saved to ``out_dir``: byte-level BPE trained on the generic tiny
    texts, Qwen2.5's chat template and the world's own corpus, so the world's invented names
    become a few tokens each and episodes are about half as long."""
    from deepresearcher.models.tiny import _qwen2_5_chat_template, build_tokenizer, default_texts

    corpus = [
        json.loads(line)["contents"]
        for line in (Path(world_dir) / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return build_tokenizer(out_dir, texts=[*default_texts(), _qwen2_5_chat_template(), *corpus],
                           vocab_size=vocab_size)


def _count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def _limit_threads() -> None:
    """One process, every core: torch intra-op threads = CPU count; no tokenizer thread pool."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import torch

        torch.set_num_threads(max(1, os.cpu_count() or 1))
    except ImportError:
        pass


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore", module="transformers")
    warnings.filterwarnings("ignore", module="trl")
    try:
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    except ImportError:
        pass
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        from transformers import set_seed

        set_seed(seed)
    except ImportError:
        pass


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# report --------------------------------------------------------------------------------------------

METRIC_ROWS = (
    ("F1", "f1", "{:.3f}"),
    ("EM", "em", "{:.3f}"),
    ("answered rate", "answered_rate", "{:.0%}"),
    ("format-error rate", "format_error_rate", "{:.0%}"),
    ("mean turns", "mean_turns", "{:.2f}"),
    ("searches / episode", "searches", "{:.2f}"),
    ("browses / episode", "browses", "{:.2f}"),
)


def write_report(qs: Quickstart) -> dict[str, Any]:
    """``report.json``, ``reward_curve.png`` and ``report.md`` from the finished stages."""
    from deepresearcher.agent.trajectory import read_jsonl

    r = qs.result
    out = qs.out
    before, after = r.before, r.after
    steps = r.stages["grpo"].data.get("steps", [])
    stage_seconds = {name: round(st.seconds, 2) for name, st in r.stages.items()}
    report = {
        "settings": qs.settings.to_json(),
        "recipe": qs.recipe().model_dump(mode="json"),
        "stage_seconds": stage_seconds,
        "total_seconds": round(sum(stage_seconds.values()), 2),
        "resumed_stages": [n for n, st in r.stages.items() if st.skipped],
        "world": r.stages["world"].data,
        "model": r.stages["model"].data,
        "expert": r.stages["expert"].data,
        "sft": {k: v for k, v in r.stages["sft"].data.items() if k != "losses"},
        "before": before,
        "after": after,
        "delta": {
            k: round(after[k] - before[k], 4)
            for _, k, _ in METRIC_ROWS
        },
        "grpo_steps": steps,
        "files": {
            "report": "report.md",
            "curve": "reward_curve.png",
            "eval_before": "trajectories/eval_before.jsonl",
            "eval_after": "trajectories/eval_after.jsonl",
            "grpo_run": "grpo",
            "tensorboard": "grpo/runs",
        },
    }
    plot_curve(steps, out / "reward_curve.png")
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    examples = pick_examples(list(read_jsonl(qs.traj_dir / "eval_after.jsonl")))
    (out / "report.md").write_text(render_markdown(report, examples), encoding="utf-8")
    return {"files": ["report.md", "report.json", "reward_curve.png"]}


def plot_curve(steps: list[dict[str, Any]], path: Path) -> None:
    """Reward (left axis) and rollout F1 / format-error rate (right axis) per GRPO step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    x = [s["step"] for s in steps]
    ax.plot(
        x,
        [s.get("reward", math.nan) for s in steps],
        color="tab:blue",
        marker="o",
        markersize=3,
        label="reward (paper: -1 format error, else F1)",
    )
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(
        x,
        [s.get("rollout/f1", math.nan) for s in steps],
        color="tab:green",
        marker="s",
        markersize=3,
        label="rollout F1",
    )
    ax2.plot(
        x,
        [s.get("rollout/format_error_rate", math.nan) for s in steps],
        color="tab:red",
        linestyle="--",
        label="format-error rate",
    )
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("F1 / rate")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize=8)
    ax.set_title("GRPO on the fictional world (training rollouts)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def pick_examples(trajectories: list[Any], n: int = 2) -> list[Any]:
    """Episodes worth reading: the best one, then a failure of another kind than it (when there
    is one), then the next best; never the same episode twice."""
    ranked = sorted(trajectories, key=lambda t: (-float(t.metrics.get("f1", 0.0)), -len(t.turns)))
    chosen = ranked[:1]
    failures = [t for t in trajectories
                if float(t.metrics.get("f1", 0.0)) == 0.0 and t.id not in {c.id for c in chosen}]
    other_kind = [t for t in failures if not chosen or t.status != chosen[0].status]
    chosen += (other_kind or failures)[:1]
    for t in ranked[1:]:
        if len(chosen) >= n:
            break
        if t.id not in {c.id for c in chosen}:
            chosen.append(t)
    return chosen[:n]


def render_trajectory(t: Any, *, max_chars: int = 700) -> str:
    """An episode as Markdown: question, each turn's think and action, observations cut short."""
    lines = [
        f"**Question:** {t.question}  ",
        f"**Gold:** {' | '.join(t.golds or [])}  ",
        f"**Status:** {t.status}; **answer:** {t.answer!r}; "
        f"**F1:** {float(t.metrics.get('f1', 0.0)):.2f}",
        "",
    ]
    for turn in t.turns:
        a = turn.action
        lines.append(f"{turn.index + 1}. ")
        if a.think:
            lines[-1] += f"*think:* {_one_line(a.think, 300)}"
        if a.type == "tool_call":
            args = json.dumps(a.arguments, ensure_ascii=False)
            verb = "search" if a.name == "web_search" else "browse"
            lines.append(f"   - **{verb}** `{_one_line(args, 300)}`")
            if turn.observation is not None:
                lines.append(f"   - observation: `{_one_line(turn.observation, max_chars)}`")
        elif a.type == "answer":
            lines.append(f"   - **answer:** {a.answer}")
        else:
            lines.append(f"   - **format error:** {a.reason}")
            lines.append(f"   - raw turn: `{_one_line(turn.text, 300)}`")
    return "\n".join(lines) + "\n"


def _loss(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "–"


def _one_line(text: str, limit: int) -> str:
    text = " ".join(str(text).split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_markdown(report: dict[str, Any], examples: list[Any]) -> str:
    s, before, after = report["settings"], report["before"], report["after"]
    recipe = report["recipe"]
    g, agent, tools = recipe["grpo"], recipe["agent"], recipe["tools"]
    md = ["# deepresearcher quickstart report", ""]
    model = report["model"]
    if s.get("base_model"):
        described = f"{s['base_model']} (vocabulary {model['vocab']})"
    elif model.get("base") == "pretrained":
        described = (
            f"the pretrained tiny base (a Qwen2 of hidden {model['hidden_size']} x "
            f"{model['layers']} layers, {model['parameters']:,} parameters, vocabulary "
            f"{model['vocab']}, pretrained on other worlds for {model['pretrain_steps']:,} steps)"
        )
    else:
        described = (
            f"a tiny Qwen2 (hidden {s['hidden_size']} x {s['layers']} layers, "
            f"{model['parameters']:,} parameters, vocabulary {model['vocab']})"
        )
    md.append(
        f"A fictional world of {s['entities']} entities (seed {s['seed']}); {described} "
        f"warm-started by {report['sft']['steps']} SFT steps on "
        f"{report['expert']['episodes']} expert episodes, then trained with GRPO for "
        f"{len(report['grpo_steps'])} steps. Evaluation: greedy episodes with the real tools on "
        f"{before['episodes']} held-out test questions ({', '.join(s['question_types'])})."
    )
    md += [
        "",
        "## Before and after RL",
        "",
        "| | SFT (before) | GRPO (after) | change |",
        "|---|---|---|---|",
    ]
    for label, key, fmt in METRIC_ROWS:
        md.append(
            f"| {label} | {fmt.format(before[key])} | {fmt.format(after[key])} | "
            f"{after[key] - before[key]:+.3f} |"
        )
    md += ["", "## Time per stage", "", "| stage | seconds |", "|---|---|"]
    for name, sec in report["stage_seconds"].items():
        skipped = " (reused)" if name in report["resumed_stages"] else ""
        md.append(f"| {STAGE_TITLES.get(name, name)}{skipped} | {sec:.1f} |")
    md.append(f"| **total** | **{report['total_seconds']:.1f}** |")
    md += [
        "",
        "## Reward curve",
        "",
        "![reward curve](reward_curve.png)",
        "",
        "| step | reward | rollout F1 | format errors | turns |",
        "|---|---|---|---|---|",
    ]
    for st in report["grpo_steps"]:
        md.append(
            f"| {st['step']} | {st.get('reward', math.nan):.3f} | "
            f"{st.get('rollout/f1', math.nan):.3f} | "
            f"{st.get('rollout/format_error_rate', math.nan):.0%} | "
            f"{st.get('rollout/turns', math.nan):.2f} |"
        )
    md += [
        "",
        "## Settings",
        "",
        f"- world: {s['entities']} entities, seed {s['seed']}; questions: "
        f"{', '.join(s['question_types'])}; {report['expert']['train_questions']} train, "
        f"{report['expert']['eval_questions']} held-out test",
        f"- SFT: {s['sft_steps']} steps, lr {s['sft_lr']}, batch {s['sft_batch']}, "
        f"max length {s['sft_max_length']}"
        + (f", {report['sft']['copy_rows']} copy rows mixed in" if report['sft'].get('copy_rows')
           else "")
        + f"; loss {_loss(report['sft'].get('first_loss'))} -> "
        f"{_loss(report['sft'].get('last_loss'))}",
        f"- GRPO: {g['questions_per_step']} questions x {g['rollouts_per_question']} rollouts "
        f"per step, {g['max_steps']} steps, lr {g['learning_rate']} ({g['lr_scheduler']}), "
        f"clip {g['clip']}, KL {g['kl_beta']}, entropy {g['entropy_coef']}, "
        f"loss {g['loss_type']}, reward {g['reward']}, temperature {agent['temperature']}",
        f"- agent: {agent['max_turns']} turns, {agent['max_tokens_per_turn']} tokens a turn, "
        f"context {agent['context_window']}, {agent['max_queries']} query per search, "
        f"search k {tools['k']}, reader chunks of {tools['chunk_chars']} characters",
        f"- everything seeded with {s['seed']}",
    ]
    if s["overrides"]:
        md.append(f"- recipe overrides: {' '.join(s['overrides'])}")
    md += ["", "## Example episodes (after RL)", ""]
    for i, t in enumerate(examples, 1):
        md += [f"### Example {i}", "", render_trajectory(t)]
    md += [
        "## Files",
        "",
        "- `report.json`: settings, seconds per stage, before/after metrics, every GRPO step",
        "- `trajectories/eval_before.jsonl`, `trajectories/eval_after.jsonl`: every evaluation "
        "episode (`deepresearcher view` reads them)",
        "- `grpo/trajectories/train_step_*.jsonl`: every training rollout",
        "- TensorBoard: `tensorboard --logdir " + "grpo/runs`",
        "",
    ]
    return "\n".join(md)
