"""The hand-built copy circuit of ``benchmarks/probe_copy.py`` copies by content; a random model
of the same shape does not."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "probe_copy.py"


def _probe_module() -> Any:
    spec = importlib.util.spec_from_file_location("probe_copy", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(tokenizer: Any, tmp: Path, *, circuit: bool) -> Any:
    from transformers import Qwen2ForCausalLM

    from deepresearcher.models.tiny import build_tiny_qwen2

    model = build_tiny_qwen2(tmp, tokenizer, hidden_size=128, layers=2, heads=4, kv_heads=2)
    if circuit:
        config = model.config
        config.rope_parameters["rope_theta"] = 1e6
        rebuilt = Qwen2ForCausalLM(config)
        rebuilt.load_state_dict(model.state_dict())
        model = rebuilt
        _probe_module().install_copy_circuit(model, seed=0)
    return model.eval()


def _copy_accuracy(model: Any, vocab: int) -> float:
    """Random tokens, a random gap, the same tokens again: how many of the repeat are predicted."""
    rng = random.Random(7)
    hits = total = 0
    with torch.no_grad():
        for _ in range(8):
            span = [rng.randrange(100, vocab) for _ in range(16)]
            gap = [rng.randrange(100, vocab) for _ in range(rng.randrange(10, 200))]
            x = torch.tensor([span + gap + span])
            pred = model(input_ids=x).logits[0, -16:-1].argmax(-1)
            hits += int((pred == x[0, -15:]).sum())
            total += 15
    return hits / total


def test_the_circuit_copies_and_a_random_model_does_not(tiny_tokenizer: Any, tmp_path: Path) -> None:
    vocab = len(tiny_tokenizer)
    random_model = _model(tiny_tokenizer, tmp_path / "random", circuit=False)
    circuit_model = _model(tiny_tokenizer, tmp_path / "circuit", circuit=True)
    assert _copy_accuracy(random_model, vocab) < 0.1
    assert _copy_accuracy(circuit_model, vocab) > 0.6


def test_the_previous_token_score_peaks_one_position_back() -> None:
    import numpy as np

    theta = 1e6 ** (-np.arange(8) / 16)
    margin, weights = _probe_module()._peak_one_back(theta, positions=512, iters=2000)
    assert margin > 0.1
    scores = np.cos(np.outer(np.arange(512) - 1, theta)) @ weights
    assert int(np.argmax(scores)) == 1
    assert scores[1] - np.delete(scores, 1).max() == pytest.approx(margin, abs=1e-9)
