"""The pretraining probe: does the model copy names it has never seen, at the agent's distances,
and does it write the expert's turns?

Everything is measured on data no training step sees: rows drawn from their own seed and the
expert's episodes on a held-out world, whose names the model has never met.

- ``short_copy``, ``long_copy``: teacher-forced accuracy on held-out copy rows of stages 1 and 2.
- ``name_copy``: held-out names, each twice among random tokens, 12-24 tokens apart.
- ``query``, ``url``, ``answer``: the copies an episode makes, in the episode itself: the name in
  the search query (from the question), the page slug in the browse call (from a search result)
  and the answer (from the extract it read). Each span's first token is given, not scored: which
  name comes next is a decision, the rest of it is a copy. ``_tf`` is the token accuracy with the
  true tokens as context (teacher forcing); ``_greedy`` the share of spans whose every token is the
  model's top choice, which is exactly when greedy decoding from the first token writes the span.
- ``format_ok``, ``action_exact``: greedy turns at the expert's prompts (the forced ``<think>``
  included), parsed by the agent's prompt profile: the share that parse into a tool call or an
  answer, and the share that are the expert's own action (same tool and arguments, or answer).
- ``text_loss``: cross-entropy on windows of the held-out world's corpus.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deepresearcher.models.curriculum import Row, long_copy_row, short_copy_row
from deepresearcher.protocol.base import Action, Answer, FormatError, ToolCall

COPY_KINDS = ("query", "url", "answer")
THINK = "<think>"

NextTokens = Callable[[Sequence[list[int]]], list[list[int]]]
"""Rows of ids -> for each row and position ``i``, the predicted token ``i + 1``."""
Generate = Callable[[Sequence[list[int]], int], list[list[int]]]
"""Prompts, a token budget -> the tokens generated for each (the end-of-turn token excluded)."""


@dataclass(frozen=True)
class Span:
    """Tokens ``start:end`` of an episode that copy something said earlier."""

    kind: str  # one of COPY_KINDS
    start: int
    end: int


@dataclass(frozen=True)
class Turn:
    """An assistant turn of an episode: ``ids[:prompt_end]`` is its prompt, and the expert's
    action there."""

    prompt_end: int
    action: Action


@dataclass(frozen=True)
class Episode:
    ids: list[int]
    spans: tuple[Span, ...]
    turns: tuple[Turn, ...]


def episodes_from_rows(rows: Sequence[Row], tokenizer: Any, profile: Any) -> list[Episode]:
    """The copy spans and turns of expert rows (rows that cannot be read back are left out)."""
    from deepresearcher.train.expert import mention
    from deepresearcher.world.model import URL_PREFIX

    think_ids = tokenizer(THINK, add_special_tokens=False)["input_ids"]
    episodes = []
    for row in rows:
        text = tokenizer.decode(row.ids)
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if list(encoded["input_ids"]) != list(row.ids):
            continue
        offsets = [tuple(o) for o in encoded["offset_mapping"]]
        question = text.split("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]
        turns: list[Turn] = []
        places: list[tuple[str, int, int]] = []  # (kind, first char, end char)
        url = ""
        for start, end in _runs(row.mask):
            first = offsets[start][0]
            body = text[first:offsets[end - 1][1]].removesuffix("<|im_end|>")
            if not body.startswith(THINK) or row.ids[start:start + len(think_ids)] != think_ids:
                break
            action = profile.parse(body)
            turns.append(Turn(start + len(think_ids), action))
            if isinstance(action, ToolCall) and action.name == "web_search":
                query = str((action.arguments.get("query") or [""])[0])
                places.append(("query", first + body.find(query), len(query)))
            elif isinstance(action, ToolCall):
                url = str((action.arguments.get("url_list") or [""])[0])
                at = body.find(url) + len(URL_PREFIX)
                places.append(("url", first + at, len(url) - len(URL_PREFIX)))
            elif isinstance(action, Answer):
                at = body.find("<answer>") + len("<answer>")
                places.append(("answer", first + at, len(action.answer)))
        spans = []
        for kind, at, size in places:
            if kind == "query":  # the name in the query, as the question spells it
                name = mention(question, url) if url else ""
                inside = text.find(name, at, at + size) if name else -1
                if inside < 0:
                    continue
                at, size = inside, len(name)
            span = _token_span(offsets, at, at + size)
            if span[1] - span[0] >= 2:
                spans.append(Span(kind, *span))
        if turns:
            episodes.append(Episode(list(row.ids), tuple(spans), tuple(turns)))
    return episodes


def _runs(mask: Sequence[int]) -> list[tuple[int, int]]:
    """(start, end) of each run of 1s."""
    runs, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _token_span(offsets: Sequence[tuple[int, int]], first: int, end: int) -> tuple[int, int]:
    """The tokens covering characters ``first:end``."""
    start = next(i for i, (_, e) in enumerate(offsets) if e > first)
    stop = next((i for i, (s, _) in enumerate(offsets) if s >= end), len(offsets))
    return start, stop


def name_rows(names: Sequence[str], tokenizer: Any, tokens: range, *, seed: int,
              length: int = 64, distance: tuple[int, int] = (12, 24)) -> list[Row]:
    """Each name, tokenized as inside a sentence, twice among random tokens, the second
    ``distance`` tokens after the first (the range stage 1 trains); the second is scored, its
    first token excepted."""
    rng = random.Random(f"names/{seed}")
    rows = []
    for name in names:
        piece = tokenizer(" " + name, add_special_tokens=False)["input_ids"]
        back = rng.randint(max(distance[0], len(piece)), distance[1])
        if len(piece) < 2 or back + len(piece) > length:
            continue
        ids = [rng.randrange(tokens.start, tokens.stop) for _ in range(length)]
        at = rng.randrange(0, length - back - len(piece) + 1)
        ids[at:at + len(piece)] = piece
        ids[at + back:at + back + len(piece)] = piece
        mask = [0] * length
        mask[at + back + 1:at + back + len(piece)] = [1] * (len(piece) - 1)
        rows.append(Row(ids, mask, "copy"))
    return rows


class Probe:
    """The held-out data and the measurements on it (see the module docstring)."""

    def __init__(self, episodes: Sequence[Episode], *, names: Sequence[Row],
                 short: Sequence[Row], long: Sequence[Row], text: Sequence[Row],
                 profile: Any, tokenizer: Any, max_new_tokens: int = 96,
                 format_turns: int = 48) -> None:
        self.episodes = list(episodes)
        self.names, self.short, self.long, self.text = list(names), list(short), list(long), \
            list(text)
        self.profile = profile
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.turns = [(e.ids[:t.prompt_end], t.action) for e in self.episodes for t in e.turns]
        self.turns = self.turns[:format_turns]

    @classmethod
    def build(cls, world_rows: Any, tokenizer: Any, profile: Any, *, names: Sequence[str],
              seed: int, copy_tokens: range, long_length: int, rows: int = 32,
              episodes: int = 48, **kwargs: Any) -> Probe:
        """A probe over a held-out world's rows (``WorldRows``) and names; the copy rows are drawn
        from ``seed``, which no training batch uses."""
        rng = random.Random(f"probe/{seed}")
        short = [short_copy_row(rng, 64, copy_tokens) for _ in range(rows)]
        long = [long_copy_row(rng, long_length, copy_tokens) for _ in range(max(4, rows // 4))]
        stream = world_rows.text
        text = []
        for _ in range(8):
            start = rng.randrange(0, max(1, len(stream) - 512))
            ids = [int(t) for t in stream[start:start + 512]]
            text.append(Row(ids, [0] + [1] * (len(ids) - 1), "text"))
        held = [world_rows.expert_row(i) for i in range(min(episodes, world_rows.expert_count))]
        found = episodes_from_rows(held, tokenizer, profile)
        return cls(found, names=name_rows(names, tokenizer, copy_tokens, seed=seed)[:rows],
                   short=short, long=long, text=text, profile=profile, tokenizer=tokenizer,
                   **kwargs)

    # measurements -------------------------------------------------------------------------------

    def copy_scores(self, next_tokens: NextTokens) -> dict[str, float]:
        """``<kind>_tf`` and ``<kind>_greedy`` for the episode spans, and their means."""
        hits: dict[str, list[float]] = {k: [] for k in COPY_KINDS}
        whole: dict[str, list[float]] = {k: [] for k in COPY_KINDS}
        predicted = next_tokens([e.ids for e in self.episodes])
        for episode, guess in zip(self.episodes, predicted, strict=True):
            for span in episode.spans:
                right = [guess[i - 1] == episode.ids[i] for i in range(span.start + 1, span.end)]
                hits[span.kind] += right
                whole[span.kind].append(float(all(right)))
        out: dict[str, float] = {}
        for kind in COPY_KINDS:
            out[f"{kind}_tf"] = _mean(hits[kind])
            out[f"{kind}_greedy"] = _mean(whole[kind])
        out["copy_tf"] = _mean([out[f"{k}_tf"] for k in COPY_KINDS])
        out["copy_greedy"] = _mean([out[f"{k}_greedy"] for k in COPY_KINDS])
        return out

    @staticmethod
    def row_scores(rows: Sequence[Row], next_tokens: NextTokens) -> tuple[float, float]:
        """Teacher-forced token accuracy on the scored tokens of ``rows``, and the share of rows
        whose scored tokens are all right."""
        if not rows:
            return math.nan, math.nan
        right, whole = [], []
        for row, guess in zip(rows, next_tokens([r.ids for r in rows]), strict=True):
            marks = [guess[i - 1] == row.ids[i] for i in range(1, len(row.ids)) if row.mask[i]]
            right += marks
            whole.append(float(all(marks)))
        return _mean(right), _mean(whole)

    def format_scores(self, generate: Generate) -> dict[str, float]:
        """``format_ok`` and ``action_exact`` over the held-out turns."""
        if not self.turns:
            return {"format_ok": math.nan, "action_exact": math.nan}
        outputs = generate([p for p, _ in self.turns], self.max_new_tokens)
        ok = exact = 0
        for (_, expected), new in zip(self.turns, outputs, strict=True):
            action = self.profile.parse(THINK + self.tokenizer.decode(new))
            ok += not isinstance(action, FormatError)
            exact += _same_action(action, expected)
        return {"format_ok": ok / len(self.turns), "action_exact": exact / len(self.turns)}

    def run(self, model: Any, *, formats: bool = True) -> dict[str, float]:
        """Every measurement of ``model`` (``formats``: the greedy turns too, the slow part)."""
        next_tokens = model_next_tokens(model)
        out: dict[str, float] = {}
        out["short_copy"], _ = self.row_scores(self.short, next_tokens)
        out["long_copy"], _ = self.row_scores(self.long, next_tokens)
        out["name_copy_tf"], out["name_copy_greedy"] = self.row_scores(self.names, next_tokens)
        out.update(self.copy_scores(next_tokens))
        if formats:
            end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
            pad = self.tokenizer.pad_token_id
            out.update(self.format_scores(model_generate(model, stop=end, pad=pad)))
        out["text_loss"] = text_loss(model, self.text)
        return out


def _same_action(got: Action, expected: Action) -> bool:
    if isinstance(got, ToolCall) and isinstance(expected, ToolCall):
        return got.name == expected.name and got.arguments == expected.arguments
    if isinstance(got, Answer) and isinstance(expected, Answer):
        return got.answer.strip() == expected.answer.strip()
    return False


def _mean(values: Sequence[float | bool]) -> float:
    return sum(values) / len(values) if values else math.nan


# The model as the probe's callables ---------------------------------------------------------------


def model_next_tokens(model: Any, *, max_tokens: int = 8192) -> NextTokens:
    """``NextTokens`` of a causal LM: the argmax of its logits at every position (rows run in
    batches of up to ``max_tokens`` padded tokens)."""
    import torch

    device = next(model.parameters()).device

    def predict(rows: Sequence[list[int]]) -> list[list[int]]:
        out: list[list[int]] = []
        was_training = model.training
        model.eval()
        with torch.no_grad():
            i = 0
            while i < len(rows):
                width = len(rows[i])
                j = i + 1
                while j < len(rows) and max(width, len(rows[j])) * (j + 1 - i) <= max_tokens:
                    width = max(width, len(rows[j]))
                    j += 1
                chunk = rows[i:j]
                x = torch.tensor([r + [0] * (width - len(r)) for r in chunk], device=device)
                guess = model(input_ids=x).logits.argmax(-1).tolist()
                out += [g[:len(r)] for g, r in zip(guess, chunk, strict=True)]
                i = j
        model.train(was_training)
        return out

    return predict


def model_generate(model: Any, *, stop: int, pad: int, batch: int = 48) -> Generate:
    """``Generate`` of a causal LM: greedy, left-padded batches, up to ``stop`` (excluded)."""
    import torch

    device = next(model.parameters()).device

    def generate(prompts: Sequence[list[int]], budget: int) -> list[list[int]]:
        out: list[list[int]] = []
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for i in range(0, len(prompts), batch):
                chunk = prompts[i:i + batch]
                width = max(len(p) for p in chunk)
                x = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
                attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk],
                                         device=device)
                made = model.generate(input_ids=x, attention_mask=attention,
                                      max_new_tokens=budget, do_sample=False,
                                      eos_token_id=stop, pad_token_id=pad)
                for row in made[:, width:].tolist():
                    out.append(row[:row.index(stop)] if stop in row else row)
        model.train(was_training)
        return out

    return generate


def text_loss(model: Any, rows: Sequence[Row]) -> float:
    """Mean cross-entropy of ``model`` on the scored tokens of ``rows``."""
    import torch
    import torch.nn.functional as F

    if not rows:
        return math.nan
    device = next(model.parameters()).device
    total = count = 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for row in rows:
            x = torch.tensor([row.ids], device=device)
            logits = model(input_ids=x).logits[0, :-1]
            keep = torch.tensor(row.mask[1:], device=device).bool()
            total += float(F.cross_entropy(logits[keep], x[0, 1:][keep], reduction="sum"))
            count += int(keep.sum())
    model.train(was_training)
    return total / count if count else math.nan
