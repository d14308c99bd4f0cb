"""What the tiny base model is pretrained on: copy rows, world text and expert episodes.

Every row is token ids with a loss mask over the same positions (1: the model is trained to
predict this token from the ones before it), the convention of SFT's ``assistant_masks``.

- Copy rows (stages 1 and 2) are random tokens with spans repeated later in the row; only the
  repeats are scored, their first token excepted (which span comes next is not predictable).
  Stage 1 repeats one span right after itself in a short row; stage 2 repeats many spans at
  every distance across a row as long as an agent episode.
- Text rows (stage 3) are windows of a fictional world's corpus, every token scored.
- Expert rows (stage 3) are the scripted expert's episodes on a world's questions, run through
  the real agent loop with the quickstart's recipe and turned into rows by SFT's own
  :func:`~deepresearcher.train.sft.sft_examples`: the same tokens and mask SFT trains on.

The worlds come from a seed range of their own (``TRAIN_SEED_START`` and up), so no world a user
builds with a small ``--seed`` was ever trained on.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Training worlds start here; a held-out probe world lies outside the range used.
TRAIN_SEED_START = 1_000_000
# The recipe whose agent and tool settings the expert episodes are recorded with.
EXPERT_RECIPE = "quickstart-cpu"

ROW_KINDS = ("copy", "text", "expert")


@dataclass(frozen=True)
class Row:
    """One training row: token ids and a loss mask of the same length."""

    ids: list[int]
    mask: list[int]
    kind: str = "copy"  # one of ROW_KINDS

    @property
    def scored(self) -> int:
        return sum(self.mask)


# Copy rows -------------------------------------------------------------------------------------


def copy_tokens(tokenizer: Any) -> range:
    """The ids copy rows are drawn from: every BPE token, not the special and tool tokens."""
    from deepresearcher.models.tiny import SPECIAL_TOKENS, TOOL_TOKENS

    return range(len(SPECIAL_TOKENS), len(tokenizer) - len(TOOL_TOKENS))


def short_copy_row(rng: random.Random, length: int, tokens: range, *, min_span: int = 4,
                   max_span: int = 24) -> Row:
    """``length`` random tokens with one span of ``min_span``-``max_span`` tokens, at a random
    offset, repeated right after itself; the repeat is scored, its first token excepted."""
    span = rng.randint(min_span, min(max_span, length // 2))
    ids = [rng.randrange(tokens.start, tokens.stop) for _ in range(length)]
    start = rng.randrange(0, length - 2 * span + 1)
    ids[start + span:start + 2 * span] = ids[start:start + span]
    mask = [0] * length
    mask[start + span + 1:start + 2 * span] = [1] * (span - 1)
    return Row(ids, mask, "copy")


def long_copy_row(rng: random.Random, length: int, tokens: range, *, min_span: int = 4,
                  max_span: int = 24, density: float = 0.3) -> Row:
    """``length`` random tokens where spans (``density`` of the row) repeat earlier ones.

    The repeats are laid out left to right without overlapping; each copies a span ending
    ``gap`` tokens before it: half the time ``gap + 1`` log-uniform between 1 and everything
    before it (immediate repeats and few-token distances), else ``gap`` uniform (far ones), so
    every distance up to the row's length is trained.
    """
    ids = [rng.randrange(tokens.start, tokens.stop) for _ in range(length)]
    mask = [0] * length
    mean_span = (min_span + max_span) / 2
    spans = [rng.randint(min_span, max_span) for _ in range(max(1, round(length * density
                                                                          / mean_span)))]
    while sum(spans) > length // 2:
        spans.pop()
    free = length - sum(spans)
    cuts = sorted(rng.randrange(free + 1) for _ in spans)
    used = 0
    for cut, span in zip(cuts, spans, strict=True):
        dest = cut + used
        used += span
        room = dest - span  # the largest gap that keeps the source inside the row
        if room < 0:
            continue
        if rng.random() < 0.5:
            gap = min(room, int(math.exp(rng.uniform(0.0, math.log(room + 1)))) - 1)
        else:
            gap = rng.randint(0, room)
        source = dest - span - gap
        ids[dest:dest + span] = ids[source:source + span]
        mask[dest + 1:dest + span] = [1] * (span - 1)
    return Row(ids, mask, "copy")


# Worlds ------------------------------------------------------------------------------------------


def world_corpus(seed: int, entities: int) -> list[str]:
    """The corpus passages of world ``seed`` as ``corpus.jsonl`` holds them, built in memory."""
    from deepresearcher.world import generate_world, passages, render_document

    world = generate_world(seed, entities)
    return [f'"{p.title}"\n{p.text}'
            for entity in world.entities for p in passages(render_document(world, entity))]


def shared_tokenizer(out_dir: Path, seeds: Sequence[int], *, entities: int,
                     vocab_size: int) -> Any:
    """One byte-level BPE tokenizer for every world, trained on the corpora of worlds ``seeds``
    (with the tiny tokenizer's format texts and Qwen2.5's chat template); saved to ``out_dir``.

    Names are syllables of one grammar, so a world never trained on is spelled with the pieces
    the others taught; byte-level BPE spells anything else byte by byte (no unknown token).
    """
    from deepresearcher.models.tiny import _qwen2_5_chat_template, build_tokenizer, default_texts

    texts = [*default_texts(), _qwen2_5_chat_template()]
    for seed in seeds:
        texts.extend(world_corpus(seed, entities))
    return build_tokenizer(out_dir, texts=texts, vocab_size=vocab_size)


@dataclass(frozen=True)
class WorldRows:
    """What one world contributes: its corpus as one token stream, and its expert rows (kept as
    flat arrays: tens of worlds of Python lists would take gigabytes)."""

    seed: int
    text: Any  # numpy int32: the passages' tokens, <|endoftext|> after each
    expert_ids: Any  # numpy int32: every expert row's ids, one after another
    expert_mask: Any  # numpy int8, the same length
    offsets: Any  # numpy int64: row i is [offsets[i], offsets[i + 1])
    episodes: int  # expert episodes run (rows: those answered and short enough)

    @classmethod
    def from_rows(cls, seed: int, text: Any, rows: Sequence[Row], episodes: int) -> WorldRows:
        import numpy as np

        return cls(seed, np.asarray(text, dtype=np.int32),
                   np.asarray([i for row in rows for i in row.ids], dtype=np.int32),
                   np.asarray([m for row in rows for m in row.mask], dtype=np.int8),
                   np.cumsum([0, *(len(row.ids) for row in rows)]).astype(np.int64), episodes)

    @property
    def expert_count(self) -> int:
        return len(self.offsets) - 1

    def expert_row(self, index: int) -> Row:
        a, b = int(self.offsets[index]), int(self.offsets[index + 1])
        return Row(self.expert_ids[a:b].tolist(), self.expert_mask[a:b].tolist(), "expert")

    def save(self, path: Path) -> None:
        """An ``.npz`` file, written to a temporary name first: a file there is complete."""
        import numpy as np

        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, seed=self.seed, text=self.text, expert_ids=self.expert_ids,
                 expert_mask=self.expert_mask, offsets=self.offsets, episodes=self.episodes)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> WorldRows:
        import numpy as np

        with np.load(path) as data:
            return cls(int(data["seed"]), data["text"], data["expert_ids"], data["expert_mask"],
                       data["offsets"], int(data["episodes"]))


def expert_recipe(world_dir: Path | None = None) -> Any:
    """The quickstart's recipe (on ``world_dir``): its agent and tool settings are the ones the
    expert episodes are recorded with, and the prompt profile the probe parses turns with."""
    from deepresearcher.train.recipes import load_recipe

    return load_recipe(EXPERT_RECIPE, [f"tools.world={world_dir}"] if world_dir else [])


def expert_profile() -> Any:
    """The prompt profile of the quickstart's agent (renders prompts, parses turns)."""
    from deepresearcher.protocol import ProfileSettings, get_profile

    agent = expert_recipe().agent
    return get_profile(agent.profile, ProfileSettings(
        date=agent.resolved_date(), max_queries=agent.max_queries, max_results=agent.search_k))


def expert_config(world_dir: Path, *, seed: int) -> tuple[Any, Any]:
    """The agent settings and toolbox the quickstart records expert episodes with, on
    ``world_dir``: its recipe's, decoded greedily, with the expert's larger turn budgets."""
    from deepresearcher.agent.build import ToolSettings, build_toolbox

    recipe = expert_recipe(world_dir)
    agent = recipe.agent.model_copy(update={
        "temperature": 0.0, "max_tokens_per_turn": 2000, "context_window": 32768, "seed": seed,
        "record_tokens": True})
    return agent, build_toolbox(ToolSettings.from_config(recipe.tools, world=world_dir))


def expert_rows(world_dir: Path, tokenizer: Any, *, seed: int, style: str,
                question_types: Sequence[str], max_length: int,
                splits: Sequence[str] = ("train", "dev", "test"),
                limit: int | None = None) -> tuple[list[Row], int]:
    """The expert's episodes on every question of ``question_types`` in ``splits`` of a world,
    as SFT rows (answered episodes no longer than ``max_length``); and how many episodes ran."""
    from deepresearcher.agent.loop import Agent, Task
    from deepresearcher.train.expert import ExpertCase, ExpertPolicy
    from deepresearcher.train.sft import sft_examples

    records = []
    for split in splits:
        path = Path(world_dir) / "questions" / f"{split}.jsonl"
        records += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
    records = [r for r in records if r.get("question_type") in question_types][:limit]
    cases = [ExpertCase.from_record(r, index=i) for i, r in enumerate(records)]
    config, toolbox = expert_config(Path(world_dir), seed=seed)
    policy = ExpertPolicy(cases, tokenizer, seed=seed, max_turns=config.max_turns, style=style)
    tasks = [Task(question=c.question, golds=list(c.answers), id=c.id,
                  data_source=c.data_source) for c in cases]
    trajectories = asyncio.run(Agent(policy, toolbox, config).run_many(tasks, concurrency=16))
    rows, _ = sft_examples(trajectories, max_length=max_length, too_long="drop")
    return [Row(r["input_ids"], r["assistant_masks"], "expert") for r in rows], len(cases)


def world_rows(seed: int, tokenizer: Any, *, entities: int, style: str,
               question_types: Sequence[str], max_length: int, limit: int | None = None,
               keep: Path | None = None) -> WorldRows:
    """Build world ``seed`` (in a temporary folder, or ``keep``), tokenize its corpus and record
    its expert rows."""
    import numpy as np

    from deepresearcher.models.tiny import ENDOFTEXT
    from deepresearcher.world import build_world

    end = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    with tempfile.TemporaryDirectory(prefix="pretrain-world-") as tmp:
        world_dir = keep or Path(tmp) / "world"
        if keep is not None and keep.exists():
            shutil.rmtree(keep)
        build_world(world_dir, seed=seed, entities=entities)
        passages = [json.loads(line)["contents"]
                    for line in (world_dir / "corpus.jsonl").read_text(encoding="utf-8")
                    .splitlines() if line.strip()]
        encoded = tokenizer(passages, add_special_tokens=False)["input_ids"]
        text = np.asarray([t for ids in encoded for t in (*ids, end)], dtype=np.int32)
        rows, episodes = expert_rows(world_dir, tokenizer, seed=seed, style=style,
                                     question_types=question_types, max_length=max_length,
                                     limit=limit)
    return WorldRows.from_rows(seed, text, rows, episodes)


def text_row(rng: random.Random, stream: Any, length: int) -> Row:
    """A window of ``length`` tokens of a corpus stream, every token scored but the first."""
    start = rng.randrange(0, max(1, len(stream) - length + 1))
    ids = [int(t) for t in stream[start:start + length]]
    return Row(ids, [0] + [1] * (len(ids) - 1), "text")
