"""Re-scoring finished rollouts (ours or the original's) on every metric, judge optional."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from deepresearcher import __version__
from deepresearcher.eval.card import save_card
from deepresearcher.eval.data import file_sha256, ids_digest, load_eval_data
from deepresearcher.eval.judge import Judge
from deepresearcher.eval.report import write_reports
from deepresearcher.eval.results import ResultStore
from deepresearcher.eval.rollouts import read_rollouts
from deepresearcher.eval.runner import score_result
from deepresearcher.eval.session import RESULTS_FILE, is_paper_test


def rescore(rollouts: Path, out: Path, *, data: str | None = None, data_source: str | None = None,
            judge: Judge | None = None, seed: int = 0) -> dict[str, Any]:
    """Score ``rollouts`` into ``out`` (``results.jsonl``, ``scores.json``, ``report.md``,
    ``protocol.json``); returns the scores."""
    dataset = load_eval_data(data, data_source=data_source) if data else None
    episodes = read_rollouts(rollouts, dataset.records if dataset else None)

    async def score_all() -> list[dict[str, Any]]:
        try:
            return list(await asyncio.gather(*(
                score_result(question_id=r.question_id, sample=r.sample,
                             data_source=r.data_source, question=r.question, golds=r.golds,
                             status=r.status, prediction=r.prediction, judge=judge,
                             usage=r.usage, turns=r.turns, seconds=r.seconds, error=r.error,
                             trajectory=r.trajectory)
                for r in episodes)))
        finally:
            if judge is not None:
                await judge.aclose()

    rows = asyncio.run(score_all())
    out.mkdir(parents=True, exist_ok=True)
    results = out / RESULTS_FILE
    results.unlink(missing_ok=True)  # a re-score is a pure function of its inputs: start over
    store = ResultStore(results)
    for row in rows:
        store.append(row)
    ids = list(dict.fromkeys(r.question_id for r in episodes))
    card = {
        "card_version": 1,
        "package_version": __version__,
        "rescored_from": {"path": str(rollouts.resolve()), "sha256": file_sha256(rollouts),
                          "episodes": len(episodes)},
        "data": {"spec": dataset.spec if dataset else None,
                 "sha256": dataset.sha256 if dataset else None, "questions": len(ids),
                 "ids_sha256": ids_digest(ids)},
        "judge": judge.settings() if judge is not None else None,
        "seed": seed,
    }
    save_card(out, card, ids)
    return write_reports(out, rows, card, seed=seed,
                         paper=dataset is not None and is_paper_test(dataset))
