"""``deepresearcher model pretrain``: a tiny Qwen2 base model that copies names it has never seen.

A random tiny model never learns, from a few hundred SFT rows, to copy a name from the question
into its query. Pretrained here first, from scratch and offline, it can:

0. ``prepare``: one byte-level BPE tokenizer for every world, trained over the corpora of many
   worlds from a seed range of their own (``TRAIN_SEED_START`` and up, disjoint from any
   quickstart ``--seed``), and a held-out probe world (names never trained on).
1. ``copy-short``: random tokens with a span repeated right after itself, 64-token rows, large
   batches: where a tiny model first learns to copy by content.
2. ``copy-long``: spans repeated at every distance up to the length of an agent episode.
3. ``mix``: world text and expert episodes (the rows SFT trains on) from many worlds, with copy
   rows still in every batch so the skill is kept.

A stage ends when its probe figure (``probe.py``) stops improving, or at its step cap; the whole
run at ``max_minutes``. Checkpoints (model, optimizer, data RNG, stage and step) are written
atomically every few minutes; running again on the same folder resumes from the last one.
The result is ``final/`` (a ``save_pretrained`` model and tokenizer) and ``card.json``.

UI-free: progress goes to an ``on_event(kind, data)`` callback (the CLI draws it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepresearcher.errors import ConfigError, DataError
from deepresearcher.eval.data import file_sha256
from deepresearcher.models.curriculum import (
    TRAIN_SEED_START,
    Row,
    WorldRows,
    copy_tokens,
    long_copy_row,
    shared_tokenizer,
    short_copy_row,
    text_row,
    world_rows,
)

STAGES = ("copy-short", "copy-long", "mix")
PROBE_SEED = 2_000_000  # the held-out world: outside the training range, never trained on
ROW_KINDS = ("short", "long", "text", "expert")
DEVICES = ("cpu", "cuda", "auto")
KEEP_CHECKPOINTS = 2

EventSink = Callable[[str, dict[str, Any]], None]  # (kind, data)


@dataclass(frozen=True)
class StagePlan:
    """What one stage trains on and when it ends."""

    rows: tuple[tuple[str, int], ...]  # (row kind, rows per batch); kinds: ROW_KINDS
    lr: float
    warmup: int  # steps of linear warm-up at the start of the stage
    steps_min: int  # no plateau can end the stage before this
    steps_max: int
    probe_every: int
    floor: float = 0.0  # nor before its probe figure reaches this (copying starts late)

    @property
    def batch(self) -> int:
        return sum(n for _, n in self.rows)


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that decides what is trained; a folder resumes only with the same settings."""

    seed: int = 0
    # the tokenizer, and the worlds (seeds world_seed_start and up)
    vocab_size: int = 4096
    tokenizer_worlds: int = 32
    worlds: int = 64
    world_seed_start: int = TRAIN_SEED_START
    entities: int = 300
    question_types: tuple[str, ...] = ("single_hop",)
    expert_styles: tuple[str, ...] = ("terse", "varied")  # world i: style i mod len
    world_questions: int = 0  # questions the expert runs per world (0: every one)
    probe_seed: int = PROBE_SEED
    probe_episodes: int = 48  # held-out episodes whose copies are scored
    probe_turns: int = 48  # held-out turns written greedily (format_ok, action_exact)
    # the model: the quickstart's tiny Qwen2, with transformers' init scale
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    init_std: float = 0.02
    # rows
    short_length: int = 64
    long_length: int = 1536  # the quickstart's SFT rows are cut there
    text_length: int = 1536
    expert_length: int = 1536  # longer expert rows are left out
    # the optimizer (AdamW) and the stages
    beta2: float = 0.98
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    copy_short: StagePlan = StagePlan(rows=(("short", 64),), lr=2e-3, warmup=100,
                                      steps_min=600, steps_max=2500, probe_every=50, floor=0.5)
    # World text in stage 2 keeps copying working on real token statistics: on random rows
    # alone, copies in held-out episodes fell from 0.84 to 0 after ~350 steps.
    copy_long: StagePlan = StagePlan(rows=(("long", 6), ("text", 2)), lr=2e-3, warmup=20,
                                     steps_min=150, steps_max=1500, probe_every=50, floor=0.5)
    mix: StagePlan = StagePlan(rows=(("long", 2), ("text", 2), ("expert", 8)), lr=1e-3,
                               warmup=50, steps_min=1000, steps_max=100_000, probe_every=200)
    patience: int = 4  # probes without a gain above plateau_delta that end a stage
    plateau_delta: float = 0.005
    log_every: int = 10

    def plan(self, stage: str) -> StagePlan:
        plan: StagePlan = getattr(self, stage.replace("-", "_"))
        return plan

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def tokenizer_seeds(self) -> list[int]:
        return [self.world_seed_start + i for i in range(self.tokenizer_worlds)]

    def world_seeds(self) -> list[int]:
        return [self.world_seed_start + i for i in range(self.worlds)]

    def check(self) -> None:
        """A ``ConfigError`` for settings that cannot run or would break the held-out promise."""
        if self.world_seed_start < TRAIN_SEED_START:
            raise ConfigError(
                f"world_seed_start={self.world_seed_start}: training worlds must come from "
                f"{TRAIN_SEED_START:,} and up, apart from the seeds users give the quickstart")
        last = self.world_seed_start + max(self.worlds, self.tokenizer_worlds)
        if self.world_seed_start <= self.probe_seed < last:
            raise ConfigError(f"probe_seed={self.probe_seed} is one of the training worlds",
                              hint=f"use a seed outside {self.world_seed_start}..{last - 1}")
        for stage in STAGES:
            for kind, n in self.plan(stage).rows:
                if kind not in ROW_KINDS or n < 1:
                    raise ConfigError(f"{stage}: bad row kind {kind}:{n}",
                                      hint=f"kinds: {', '.join(ROW_KINDS)}; counts from 1")
        if self.worlds < 1 or self.tokenizer_worlds < 1:
            raise ConfigError("worlds and tokenizer_worlds must be at least 1")


def settings_with(overrides: Sequence[str], base: PretrainSettings | None = None
                  ) -> PretrainSettings:
    """``base`` (the defaults) with ``key=value`` overrides: ``worlds=8``,
    ``copy_short.steps_max=300``, ``question_types=single_hop,bridge``,
    ``mix.rows=long:2,text:2,expert:8``."""
    settings = base or PretrainSettings()
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value",
                              hint="e.g. worlds=8 or copy_short.steps_max=300")
        settings = _override(settings, key.strip().split("."), text.strip(), key)
    settings.check()
    return settings


def _override(obj: Any, path: list[str], text: str, key: str) -> Any:
    names = [f.name for f in dataclasses.fields(obj)]
    if path[0] not in names:
        raise ConfigError(f"unknown setting {key!r}", hint=f"settings: {', '.join(names)}")
    current = getattr(obj, path[0])
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{key!r}: {path[0]} has no fields")
        value = _override(current, path[1:], text, key)
    else:
        try:
            value = _parse(current, text)
        except ValueError:
            raise ConfigError(f"{key}={text!r} is not a valid {type(current).__name__}") from None
    return dataclasses.replace(obj, **{path[0]: value})


def _parse(current: Any, text: str) -> Any:
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, tuple):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if current and isinstance(current[0], tuple):  # (kind, count) pairs
            pairs = [item.partition(":") for item in items]
            return tuple((kind, int(n)) for kind, _, n in pairs)
        return tuple(items)
    if dataclasses.is_dataclass(current):
        raise ValueError(text)
    return text


class PretrainInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run; ``checkpoint`` (at ``step``; None before the first one) is where
    it resumes."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"interrupted at step {step}")
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class RunState:
    """Where the run stands: saved in every checkpoint, everything a resume needs besides the
    model, the optimizer and the data RNG."""

    step: int = 0
    stage: int = 0  # index into STAGES
    stage_step: int = 0
    tokens: dict[str, int] = field(default_factory=dict)  # per stage, padding excluded
    steps: dict[str, int] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)  # stage -> why it ended
    seconds: float = 0.0  # wall time of every session, up to this checkpoint
    best: float = -math.inf  # the stage's probe figure when it last gained plateau_delta
    stale: int = 0  # probes since then
    finished: bool = False
    probe: dict[str, Any] | None = None  # the last probe


@dataclass
class PretrainResult:
    """What a run made: the card (``card.json``), and whether every stage is done."""

    out: Path
    card: dict[str, Any]
    finished: bool
    stopped: str  # finished, time budget, until <stage>, already finished

    @property
    def final(self) -> Path:
        return self.out / "final"


def stage_figure(stage: str, probe: dict[str, Any]) -> float:
    """The probe figure whose plateau ends ``stage``."""
    if stage == "copy-short":
        value = probe.get("short_copy")
    elif stage == "copy-long":  # random rows at every distance, and the episodes' copies
        parts = [probe.get("long_copy"), probe.get("copy_tf")]
        value = sum(p for p in parts if p is not None and not math.isnan(p)) / len(parts)
    else:
        parts = [probe.get("copy_greedy"), probe.get("action_exact")]
        value = sum(p for p in parts if p is not None and not math.isnan(p)) / len(parts)
    return 0.0 if value is None or math.isnan(value) else float(value)


class Pretraining:
    """One output folder's pretraining. ``run()`` starts it or resumes it."""

    def __init__(self, out: Path | str, settings: PretrainSettings | None = None, *,
                 on_event: EventSink | None = None, max_minutes: float | None = None,
                 device: str = "auto", checkpoint_minutes: float = 5.0,
                 threads: int | None = None, until: str | None = None) -> None:
        self.out = Path(out)
        self.threads = threads
        self.until = until
        self.settings = settings or PretrainSettings()
        self.on_event = on_event or (lambda kind, data: None)
        self.max_minutes = max_minutes
        self.device_setting = device
        self.checkpoint_minutes = checkpoint_minutes
        self.state = RunState()
        self._interrupt = threading.Event()
        self._worlds: list[WorldRows] = []

    # paths ---------------------------------------------------------------------------------------
    @property
    def tokenizer_dir(self) -> Path:
        return self.out / "tokenizer"

    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    # driver --------------------------------------------------------------------------------------
    def run(self) -> PretrainResult:
        import torch

        from deepresearcher.agent.policy_hf import resolve_device

        if self.until is not None and self.until not in STAGES:
            raise ConfigError(f"unknown stage {self.until!r}", hint=f"one of: {', '.join(STAGES)}")
        if self.device_setting not in DEVICES:
            raise ConfigError(f"unknown device {self.device_setting!r}",
                              hint=f"one of: {', '.join(DEVICES)}")
        self.settings.check()
        self.device = resolve_device(self.device_setting)
        self._claim_folder()
        _quiet(torch, self.threads)
        self._started = time.perf_counter()
        with _sigint_sets(self._interrupt):
            self.tokenizer = self._prepare_tokenizer()
            self.tokens = copy_tokens(self.tokenizer)
            self.probe = self._prepare_probe()
            self.model = self._build_model().to(self.device)
            s = self.settings
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=s.copy_short.lr,
                                               betas=(0.9, s.beta2),
                                               weight_decay=s.weight_decay)
            self.rng = random.Random(f"pretrain/{s.seed}")
            checkpoint = self._load_checkpoint()
            self._trim_logs(self.state.step if checkpoint else -1)
            if self.state.finished:
                if not (self.out / "card.json").is_file():
                    self._write_final("finished")
                card = json.loads((self.out / "card.json").read_text(encoding="utf-8"))
                return PretrainResult(self.out, card, True, "already finished")
            return self._train()

    def _claim_folder(self) -> None:
        """Write ``settings.json`` in a new folder; in an old one, refuse other settings."""
        path = self.out / "settings.json"
        wanted = self.settings.to_json()
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"{self.out} exists and is not a folder")
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved != wanted:
                changed = sorted(k for k in {*saved, *wanted} if saved.get(k) != wanted.get(k))
                raise ConfigError(
                    f"{self.out} holds a pretraining with other settings "
                    f"({', '.join(changed)} differ); it resumes only with the same ones",
                    hint=f"run with the settings in {path}, or pass a new --out")
            return
        if self.out.is_dir() and any(self.out.iterdir()):
            raise ConfigError(f"{self.out} is not empty and holds no pretraining",
                              hint="pass an empty or new folder to --out")
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(path, wanted)

    def _check_interrupt(self) -> None:
        """Outside the training loop (preparing data): stop, pointing at the last checkpoint."""
        if self._interrupt.is_set():
            latest = self._latest_checkpoint()
            raise PretrainInterrupted(int(latest.name.split("-")[1]) if latest else 0, latest)

    # preparation ---------------------------------------------------------------------------------
    def _prepare_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        s = self.settings
        if not (self.tokenizer_dir / "tokenizer.json").is_file():
            self.on_event("prepare", {"what": "tokenizer", "worlds": s.tokenizer_worlds})
            with tempfile.TemporaryDirectory(dir=self.out, prefix=".tmp-tokenizer-") as tmp:
                shared_tokenizer(Path(tmp) / "t", s.tokenizer_seeds(), entities=s.entities,
                                 vocab_size=s.vocab_size)
                (Path(tmp) / "t").rename(self.tokenizer_dir)
        self._check_interrupt()
        return AutoTokenizer.from_pretrained(self.tokenizer_dir)

    def _world(self, seed: int, index: int, *, limit: int | None = None,
               name: str = "world") -> WorldRows:
        """World ``seed``'s rows, from ``data/`` or built (and saved) now."""
        s = self.settings
        path = self.data_dir / f"{name}-{seed}.npz"
        if path.is_file():
            return WorldRows.load(path)
        self.data_dir.mkdir(exist_ok=True)
        rows = world_rows(seed, self.tokenizer, entities=s.entities,
                          style=s.expert_styles[index % len(s.expert_styles)],
                          question_types=s.question_types, max_length=s.expert_length,
                          limit=limit or s.world_questions or None)
        rows.save(path)
        return rows

    def _prepare_probe(self) -> Any:
        from deepresearcher.models.curriculum import expert_profile, expert_recipe
        from deepresearcher.models.probe import Probe
        from deepresearcher.world import generate_world

        s = self.settings
        self.on_event("prepare", {"what": "probe world", "seed": s.probe_seed})
        held = self._world(s.probe_seed, 0, limit=s.probe_episodes, name="probe")
        names = [e.name for e in generate_world(s.probe_seed, s.entities).entities]
        self._check_interrupt()
        return Probe.build(held, self.tokenizer, expert_profile(), names=names,
                           seed=s.probe_seed, copy_tokens=self.tokens,
                           long_length=s.long_length, episodes=s.probe_episodes,
                           format_turns=s.probe_turns, max_new_tokens=expert_recipe().agent.max_tokens_per_turn)

    def _prepare_worlds(self) -> None:
        s = self.settings
        self._worlds = []
        for i, seed in enumerate(s.world_seeds()):
            self.on_event("prepare", {"what": "worlds", "completed": i, "total": s.worlds})
            self._worlds.append(self._world(seed, i))
            self._check_interrupt()
        self._worlds_with_rows = [w for w in self._worlds if w.expert_count]
        if not self._worlds_with_rows:
            raise DataError(
                f"the expert answered no question of {', '.join(s.question_types)} within "
                f"{s.expert_length} tokens in {s.worlds} worlds",
                hint="raise expert_length, or add question types")
        self.on_event("prepare", {"what": "worlds", "completed": s.worlds, "total": s.worlds})

    def _build_model(self) -> Any:
        from deepresearcher.models.tiny import build_tiny_qwen2

        s = self.settings
        with tempfile.TemporaryDirectory(prefix="pretrain-model-") as tmp:
            model = build_tiny_qwen2(Path(tmp), self.tokenizer, hidden_size=s.hidden_size,
                                     layers=s.layers, heads=s.heads, kv_heads=s.kv_heads,
                                     seed=s.seed, init_std=s.init_std)
        model.train()
        return model

    # training ------------------------------------------------------------------------------------
    def _train(self) -> PretrainResult:
        s = self.settings
        state = self.state
        session_start = self._started - state.seconds  # this session's preparation counts too
        last_checkpoint = time.perf_counter()
        if state.step == 0 and state.probe is None:
            self._probe(STAGES[0])
        stopped = "finished"
        if self.until in state.ended:  # done before
            return PretrainResult(self.out, self._write_final(f"until {self.until}"), False,
                                  f"until {self.until}")
        while state.stage < len(STAGES):
            stage = STAGES[state.stage]
            plan = s.plan(stage)
            if any(kind in ("text", "expert") for kind, _ in plan.rows) and not self._worlds:
                self._prepare_worlds()
            self.on_event("stage_start", {"stage": stage, "step": state.step,
                                          "stage_step": state.stage_step,
                                          "steps_max": plan.steps_max})
            while True:
                state.seconds = time.perf_counter() - session_start
                if self._interrupt.is_set():
                    raise PretrainInterrupted(state.step, self._save_checkpoint())
                if self.max_minutes is not None and state.seconds >= self.max_minutes * 60:
                    stopped = "time budget"
                    break
                self._step(stage, plan)
                ended = None
                if state.stage_step % plan.probe_every == 0 or state.stage_step >= plan.steps_max:
                    ended = self._after_probe(stage, plan, self._probe(stage))
                if ended:
                    state.ended[stage] = ended
                    state.stage += 1
                    state.stage_step, state.best, state.stale = 0, -math.inf, 0
                    state.finished = state.stage == len(STAGES)
                    self.on_event("stage_end", {"stage": stage, "reason": ended,
                                                "step": state.step})
                    state.seconds = time.perf_counter() - session_start
                    self._save_checkpoint()
                    last_checkpoint = time.perf_counter()
                    if stage == self.until and not state.finished:
                        stopped = f"until {stage}"
                    break
                if time.perf_counter() - last_checkpoint >= self.checkpoint_minutes * 60:
                    state.seconds = time.perf_counter() - session_start
                    self._save_checkpoint()
                    last_checkpoint = time.perf_counter()
            if stopped != "finished":
                break
        state.seconds = time.perf_counter() - session_start
        if stopped == "time budget":
            if state.probe is None or state.probe.get("step") != state.step:
                self._probe(STAGES[min(state.stage, len(STAGES) - 1)])
            self._save_checkpoint()
        card = self._write_final(stopped)
        return PretrainResult(self.out, card, state.finished, stopped)

    def _lr(self, plan: StagePlan, stage_step: int) -> float:
        return plan.lr * min(1.0, (stage_step + 1) / max(1, plan.warmup))

    def _rows(self, plan: StagePlan) -> list[Row]:
        s, rng = self.settings, self.rng
        rows: list[Row] = []
        for kind, n in plan.rows:
            for _ in range(n):
                if kind == "short":
                    rows.append(short_copy_row(rng, s.short_length, self.tokens))
                elif kind == "long":
                    rows.append(long_copy_row(rng, s.long_length, self.tokens))
                elif kind == "text":
                    rows.append(text_row(rng, rng.choice(self._worlds).text, s.text_length))
                else:
                    world = rng.choice(self._worlds_with_rows)
                    rows.append(world.expert_row(rng.randrange(world.expert_count)))
        return rows

    def _step(self, stage: str, plan: StagePlan) -> None:
        import torch

        state = self.state
        started = time.perf_counter()
        rows = self._rows(plan)
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = self._lr(plan, state.stage_step)
        groups: dict[str, list[Row]] = {}
        for row in rows:
            groups.setdefault(row.kind, []).append(row)
        losses: dict[str, float] = {}
        # One micro-batch per kind (no padding to the longest kind), each kind's mean loss
        # weighted alike: text rows score every token, expert rows one in six.
        for kind, group in groups.items():
            loss = self._loss(group) / len(groups)
            loss.backward()
            losses[kind] = loss.item() * len(groups)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        tokens = sum(len(r.ids) for r in rows)
        state.step += 1
        state.stage_step += 1
        state.tokens[stage] = state.tokens.get(stage, 0) + tokens
        state.steps[stage] = state.steps.get(stage, 0) + 1
        seconds = time.perf_counter() - started
        data = {"stage": stage, "step": state.step, "stage_step": state.stage_step,
                "steps_max": plan.steps_max, "loss": sum(losses.values()) / len(losses),
                **{f"loss_{k}": v for k, v in losses.items()},
                "lr": self._lr(plan, state.stage_step - 1), "tokens": tokens,
                "tokens_per_s": tokens / seconds if seconds > 0 else 0.0}
        if state.step % self.settings.log_every == 0:
            _append_jsonl(self.out / "train.jsonl", {**data, "seconds": round(state.seconds, 1)})
        self.on_event("step", data)

    def _loss(self, rows: Sequence[Row]) -> Any:
        """Mean cross-entropy over the scored tokens of ``rows`` (right-padded; padding is never
        scored and, being after every real token, never attended to)."""
        import torch
        import torch.nn.functional as F

        width = max(len(r.ids) for r in rows)
        pad = self.tokenizer.pad_token_id
        x = torch.tensor([r.ids + [pad] * (width - len(r.ids)) for r in rows], device=self.device)
        mask = torch.tensor([r.mask + [0] * (width - len(r.mask)) for r in rows],
                            device=self.device)[:, 1:].bool()
        hidden = self.model.get_decoder()(input_ids=x).last_hidden_state[:, :-1][mask]
        logits = self.model.get_output_embeddings()(hidden)
        return F.cross_entropy(logits.float(), x[:, 1:][mask])

    def _probe(self, stage: str) -> dict[str, Any]:
        started = time.perf_counter()
        figures = self.probe.run(self.model, formats=stage == "mix")
        probe = {"step": self.state.step, "stage": stage, "stage_step": self.state.stage_step,
                 **{k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else None)
                    for k, v in figures.items()},
                 "seconds": round(time.perf_counter() - started, 2)}
        self.state.probe = probe
        _append_jsonl(self.out / "probe.jsonl", probe)
        self.on_event("probe", probe)
        return probe

    def _after_probe(self, stage: str, plan: StagePlan, probe: dict[str, Any]) -> str | None:
        """Why the stage ends after this probe, or None: a plateau (no gain above
        ``plateau_delta`` for ``patience`` probes, past ``steps_min`` and ``floor``) or the cap."""
        s, state = self.settings, self.state
        figure = stage_figure(stage, probe)
        if figure > state.best + s.plateau_delta:
            state.best, state.stale = figure, 0
        else:
            state.stale += 1
        if state.stage_step >= plan.steps_max:
            return "steps_max"
        if (state.stage_step >= plan.steps_min and state.best >= plan.floor
                and state.stale >= s.patience):
            return "plateau"
        return None

    # checkpoints ---------------------------------------------------------------------------------
    def _checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = [p for p in self.checkpoint_dir.iterdir()
                 if p.name.startswith("step-") and (p / "meta.json").is_file()]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def _latest_checkpoint(self) -> Path | None:
        found = self._checkpoints()
        return found[-1] if found else None

    def _save_checkpoint(self) -> Path:
        """``checkpoints/step-N/``: written under a temporary name, then renamed (so a folder
        with that name is complete); the last ``KEEP_CHECKPOINTS`` are kept."""
        import torch

        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        final = self.checkpoint_dir / f"step-{self.state.step:08d}"
        tmp = Path(tempfile.mkdtemp(dir=self.checkpoint_dir, prefix=".tmp-"))
        torch.save({
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "data_rng": self.rng.getstate(),
        }, tmp / "state.pt")
        meta = {"state": asdict(self.state), "settings": self.settings.to_json(),
                "device": self.device}
        _write_json(tmp / "meta.json", meta)  # last: a folder with meta.json is complete
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in self._checkpoints()[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
        self.on_event("checkpoint", {"step": self.state.step, "path": str(final)})
        return final

    def _load_checkpoint(self) -> Path | None:
        """Restore the newest readable checkpoint (an unreadable one is skipped)."""
        import torch

        for stale in self.checkpoint_dir.glob(".tmp-*") if self.checkpoint_dir.is_dir() else ():
            shutil.rmtree(stale, ignore_errors=True)
        for path in reversed(self._checkpoints()):
            try:
                meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
                saved = torch.load(path / "state.pt", map_location=self.device,
                                   weights_only=True)
            except (OSError, ValueError, RuntimeError, EOFError):
                continue
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            torch.set_rng_state(saved["torch_rng"].cpu())
            self.rng.setstate(_tuples(saved["data_rng"]))
            self.state = RunState(**meta["state"])
            self.on_event("resume", {"step": self.state.step, "path": str(path),
                                     "stage": STAGES[min(self.state.stage, len(STAGES) - 1)]})
            return path
        return None

    def _trim_logs(self, step: int) -> None:
        """Drop log lines past the checkpoint resumed from (those steps run again)."""
        for name in ("probe.jsonl", "train.jsonl"):
            path = self.out / name
            if not path.is_file():
                continue
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    if json.loads(line)["step"] <= step:  # a line cut by a kill is dropped
                        kept.append(line + "\n")
            path.write_text("".join(kept), encoding="utf-8")

    # the result ----------------------------------------------------------------------------------
    def _write_final(self, stopped: str) -> dict[str, Any]:
        """``final/`` (model and tokenizer, written aside then renamed) and ``card.json``."""
        import torch
        import transformers

        import deepresearcher

        final = self.out / "final"
        tmp = Path(tempfile.mkdtemp(dir=self.out, prefix=".tmp-final-"))
        self.model.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        s, state = self.settings, self.state
        card = {
            "model": "tiny Qwen2 pretrained from scratch (deepresearcher model pretrain)",
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "vocab": len(self.tokenizer),
            "settings": s.to_json(),
            "worlds": {"tokenizer": s.tokenizer_seeds(), "training": s.world_seeds(),
                       "probe": s.probe_seed},
            "stages": {stage: {"steps": state.steps.get(stage, 0),
                               "tokens": state.tokens.get(stage, 0),
                               "ended": state.ended.get(stage)} for stage in STAGES},
            "steps": state.step,
            "tokens": sum(state.tokens.values()),
            "seconds": round(state.seconds, 1),
            "finished": state.finished,
            "stopped": stopped,
            "max_minutes": self.max_minutes,
            "device": self.device,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "deepresearcher": getattr(deepresearcher, "__version__", None)},
            "probe": state.probe,
            "files": {f"final/{p.name}": file_sha256(p) for p in sorted(final.iterdir())
                      if p.is_file()},
        }
        _write_json(self.out / "card.json", card)
        self.on_event("done", {"stopped": stopped, "card": card})
        return card


def pretrain(settings: PretrainSettings | None, out_dir: Path | str, *,
             on_event: EventSink | None = None, max_minutes: float | None = None,
             device: str = "auto", checkpoint_minutes: float = 5.0,
             threads: int | None = None, until: str | None = None) -> PretrainResult:
    """Pretrain (or resume pretraining) a tiny base model into ``out_dir``; see the module
    docstring. Ctrl-C saves a checkpoint and raises :class:`PretrainInterrupted`.

    ``max_minutes`` (the time budget, over every session of this folder), ``until`` (stop
    after this stage), ``device``, ``checkpoint_minutes`` and ``threads`` may change between
    sessions; the settings may not."""
    return Pretraining(out_dir, settings, on_event=on_event, max_minutes=max_minutes,
                       device=device, checkpoint_minutes=checkpoint_minutes,
                       threads=threads, until=until).run()


# helpers -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _sigint_sets(flag: threading.Event) -> Iterator[None]:
    """While inside: Ctrl-C sets ``flag`` (the loop stops at the next step boundary, after a
    checkpoint); a second Ctrl-C interrupts at once. Outside the main thread, or where SIGINT
    is ignored (a background job), nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _tuples(value: Any) -> Any:
    """``random.Random.getstate()`` back from its saved form (lists where it had tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def _append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _quiet(torch: Any, threads: int | None) -> None:
    """``threads`` for torch (default: every core; on a busy machine, fewer is much faster: idle
    threads spin while one waits for a core), none for the tokenizers' pool; no library
    warnings or progress bars."""
    import warnings

    from transformers.utils import logging as hf_logging

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    warnings.filterwarnings("ignore", module="transformers")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
