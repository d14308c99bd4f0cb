"""Two evaluation runs side by side: metrics per data source and every protocol difference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepresearcher.errors import DataError
from deepresearcher.eval.card import diff_cards, load_card
from deepresearcher.eval.report import SCORES_FILE, _sources_in_order, compute_scores
from deepresearcher.eval.results import ResultStore


def load_scores(run_dir: Path) -> dict[str, Any]:
    """A run's ``scores.json``, or scores computed from its results when the run never finished."""
    path = run_dir / SCORES_FILE
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
    results = run_dir / "results.jsonl"
    if not results.is_file():
        raise DataError(f"{run_dir} has neither {SCORES_FILE} nor results.jsonl",
                        hint="pass the --out directory of `deepresearcher eval` or `eval score`")
    return compute_scores(list(ResultStore(results).load(repair=False).values()))


def _mean(block: dict[str, Any] | None, metric: str) -> float | None:
    if not block:
        return None
    value = (block.get("metrics") or {}).get(metric)
    return value["mean"] if value else None


def compare_runs(run_a: Path, run_b: Path) -> dict[str, Any]:
    """``{"sources": [...per source rows...], "protocol_differences": [...]}``."""
    for run in (run_a, run_b):
        if not run.is_dir():
            raise DataError(f"{run} is not a run directory",
                            hint="pass the --out directories of two `deepresearcher eval` runs")
    card_a, card_b = load_card(run_a), load_card(run_b)
    scores_a, scores_b = load_scores(run_a), load_scores(run_b)
    rows = []
    names = _sources_in_order([*scores_a["by_source"], *scores_b["by_source"]])
    for source in [*names, "all"]:
        a = scores_a.get("overall") if source == "all" else scores_a["by_source"].get(source)
        b = scores_b.get("overall") if source == "all" else scores_b["by_source"].get(source)
        row: dict[str, Any] = {"source": source, "n_a": (a or {}).get("questions"),
                               "n_b": (b or {}).get("questions")}
        for metric in ("f1", "em", "mbe", "cover_em", "squad_em", "squad_f1"):
            row[f"{metric}_a"], row[f"{metric}_b"] = _mean(a, metric), _mean(b, metric)
        if row["f1_a"] is not None and row["f1_b"] is not None:
            row["f1_delta"] = row["f1_b"] - row["f1_a"]
        rows.append(row)
    diffs = [{"field": f, "a": va, "b": vb} for f, va, vb in diff_cards(card_a, card_b)]
    return {"run_a": str(run_a), "run_b": str(run_b), "sources": rows,
            "protocol_differences": diffs}
