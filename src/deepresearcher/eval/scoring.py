"""Every string metric of one prediction against its gold aliases (the judge is in ``judge``).

A missing prediction (format failure, no answer) scores 0 on every metric: PROTOCOL.md §8 scores a
format failure 0 at evaluation, not the −1 of the training reward.
"""

from __future__ import annotations

from collections.abc import Sequence

from deepresearcher.protocol.metrics import (
    cover_exact_match,
    cover_exact_match_tokens,
    exact_match,
    f1_score,
    squad_exact_match,
    squad_f1,
)

# name -> (function, what it is); the first two are the paper's.
STRING_METRICS = {
    "f1": (f1_score, "the paper's F1: punctuation to spaces, articles kept, token sets"),
    "em": (exact_match, "the paper's EM: equality after the paper's normalization"),
    "squad_f1": (squad_f1, "SQuAD F1: punctuation and articles removed, token multisets"),
    "squad_em": (squad_exact_match, "SQuAD EM"),
    "cover_em": (cover_exact_match, "cover-EM (FlashRAG/Search-R1): a normalized alias is a "
                 "substring of the prediction"),
    "cover_em_tokens": (cover_exact_match_tokens, "cover-EM on token boundaries"),
}
METRIC_NAMES: tuple[str, ...] = (*STRING_METRICS, "mbe")


def score_prediction(prediction: str | None, golds: Sequence[str]) -> dict[str, float]:
    """Each string metric of ``prediction`` (None or blank scores 0 everywhere)."""
    if prediction is None or not prediction.strip():
        return {name: 0.0 for name in STRING_METRICS}
    return {name: float(fn(prediction, list(golds))) for name, (fn, _) in STRING_METRICS.items()}
