"""Metric families pinned against hand-computed cases, including where they disagree on purpose."""

from __future__ import annotations

import pytest

from deepresearcher.eval.scoring import score_prediction
from deepresearcher.protocol.metrics import (
    cover_exact_match,
    cover_exact_match_tokens,
    exact_match,
    f1_score,
    squad_exact_match,
    squad_f1,
    squad_normalize,
)


def test_squad_normalization_deletes_punctuation_and_articles():
    assert squad_normalize("The U.S.") == "us"
    assert squad_normalize("An apple, a pear!") == "apple pear"
    assert squad_normalize("Theatre") == "theatre"  # articles only as whole words


def test_em_diverges_between_squad_and_the_paper():
    assert squad_exact_match("The U.S.", ["us"]) == 1.0
    assert exact_match("The U.S.", ["us"]) == 0.0  # the paper's normalization gives "the u s"


def test_f1_multiset_vs_set():
    assert squad_f1("x y y", ["y y z"]) == pytest.approx(2 / 3)
    assert f1_score("x y y", ["y y z"]) == pytest.approx(0.5)
    assert squad_f1("the cat", ["a cat"]) == 1.0  # articles gone
    assert squad_f1("Paris", "London<|answer_split|>Paris") == 1.0


def test_cover_em_raw_substring_vs_token_boundary():
    assert cover_exact_match("1999", ["1"]) == 1.0
    assert cover_exact_match_tokens("1999", ["1"]) == 0.0
    assert cover_exact_match_tokens("It lasted 1 year.", ["1"]) == 1.0
    assert cover_exact_match("born in Paris, France", ["paris"]) == 1.0
    assert cover_exact_match_tokens("born in Paris, France", ["Paris France"]) == 1.0
    assert cover_exact_match("London", ["Paris", "Rome"]) == 0.0
    # A gold that normalizes to nothing covers nothing (it would be a substring of everything).
    assert cover_exact_match("anything", ["the"]) == 0.0


def test_score_prediction_zero_for_a_missing_answer():
    assert set(score_prediction(None, ["x"]).values()) == {0.0}
    assert set(score_prediction("  ", ["x"]).values()) == {0.0}
    scores = score_prediction("The U.S.", ["us"])
    assert scores["squad_em"] == 1.0 and scores["em"] == 0.0 and scores["cover_em"] == 1.0
