"""One evaluation run directory, from settings to report: select the questions, write or check the
protocol card, run what is not done yet, and write the trajectories, scores and report.

Files of a run directory::

    protocol.json        the protocol card (refused on resume if it changed)
    question_ids.txt     the selected question ids, in order
    results.jsonl        one durable line per finished (question, sample), trajectory included
    trajectories.jsonl   the trajectories alone (the schema of agent/trajectory.py), in data order
    scores.json          per data source and overall, bootstrap 95% CIs
    report.md            the tables; scores.png the chart
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearcher import __version__
from deepresearcher.agent.config import AgentConfig
from deepresearcher.data.paper_format import QARecord
from deepresearcher.eval.card import IDS_FILE, check_resume, load_card, save_card
from deepresearcher.eval.data import (
    EvalData,
    builtin_path,
    file_sha256,
    ids_digest,
    load_eval_data,
    paper_sample,
    select,
)
from deepresearcher.eval.judge import Judge, _public_url
from deepresearcher.eval.report import write_reports
from deepresearcher.eval.results import ResultStore
from deepresearcher.eval.runner import EvalRunner, OnResult, RunSummary

RESULTS_FILE = "results.jsonl"
TRAJECTORIES_FILE = "trajectories.jsonl"
CACHE_FILE = "cache.sqlite"


@dataclass(frozen=True)
class Selection:
    """Which questions of a set to evaluate."""

    data: str
    data_source: str | None = None
    sources: tuple[str, ...] = ()
    limit: int | None = None
    paper_sample: bool = False
    seed: int = 0


@dataclass(frozen=True)
class ToolsInfo:
    """What the card records about the tools (built elsewhere)."""

    search: str
    reader: str
    cache_mode: str
    index: str | None = None
    world: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def select_questions(selection: Selection) -> tuple[EvalData, list[QARecord]]:
    """The data set and the selected questions, in file order."""
    data = load_eval_data(selection.data, data_source=selection.data_source)
    records = data.records
    if selection.paper_sample:
        records = paper_sample(records, seed=selection.seed)
    records = select(records, sources=selection.sources or None, limit=selection.limit,
                     seed=selection.seed)
    return data, records


def is_paper_test(data: EvalData) -> bool:
    """True when the data is the paper's test file (by name or by its bytes)."""
    if data.builtin == "paper-test":
        return True
    return data.sha256 is not None and data.sha256 == file_sha256(builtin_path("paper-test"))


def build_card(
    *,
    selection: Selection,
    data: EvalData,
    records: Sequence[QARecord],
    model: dict[str, Any],
    config: AgentConfig,
    samples: int,
    tools: ToolsInfo,
    judge: Judge | None,
) -> dict[str, Any]:
    """The protocol card of a run (see ``eval.card``); no secrets, no timestamps."""
    ids = [r.id for r in records]
    model = {**model, "base_url": _public_url(model["base_url"]) if model.get("base_url") else None}
    return {
        "card_version": 1,
        "package_version": __version__,
        "model": model,
        "decoding": {
            "temperature": config.temperature,
            "top_p": config.top_p,
            "max_turns": config.max_turns,
            "max_tokens_per_turn": config.max_tokens_per_turn,
            "context_window": config.context_window,
            "context_policy": config.context_policy,
            "samples": samples,
            "seed": config.seed,
            "date": config.resolved_date(),
        },
        "tools": {
            "search": tools.search,
            "index": tools.index,
            "world": tools.world,
            "search_k": config.search_k,
            "max_queries": config.max_queries,
            "reader": tools.reader,
            "cache_mode": tools.cache_mode,
            **tools.extra,
        },
        "data": {
            "spec": data.spec,
            "sha256": data.sha256,
            "questions": len(ids),
            "ids_sha256": ids_digest(ids),
            "ids_file": IDS_FILE,
            "sources": sorted({r.data_source for r in records}),
            "selection": {"sources": list(selection.sources), "limit": selection.limit,
                          "paper_sample": selection.paper_sample, "data_source": selection.data_source},
        },
        "judge": judge.settings() if judge is not None else None,
        "seed": selection.seed,
    }


def saved_date(out: Path) -> str | None:
    """The prompt date of an existing run, so that resuming on another day keeps it."""
    try:
        return load_card(out).get("decoding", {}).get("date")
    except Exception:  # no run yet, or an unreadable card: check_resume reports the latter
        return None


def open_run(out: Path, card: dict[str, Any], records: Sequence[QARecord]) -> ResultStore:
    """Start a run directory, or check that ``card`` matches the run already in it."""
    if (out / "protocol.json").exists():
        check_resume(load_card(out), card, out)
    save_card(out, card, [r.id for r in records])
    return ResultStore(out / RESULTS_FILE)


async def run_session(
    out: Path,
    card: dict[str, Any],
    records: Sequence[QARecord],
    runner: EvalRunner,
    *,
    retry_errors: bool = True,
    on_result: OnResult | None = None,
) -> RunSummary:
    """Run what is not done yet in ``out`` (the card must already be in place); with
    ``retry_errors``, the episodes that failed too."""
    store = ResultStore(out / RESULTS_FILE)
    return await runner.run(records, store, retry_errors=retry_errors, on_result=on_result)


def finish(out: Path, card: dict[str, Any], records: Sequence[QARecord], samples: int, *,
           paper: bool, seed: int = 0) -> dict[str, Any]:
    """Write ``trajectories.jsonl``, ``scores.json`` and ``report.md`` from the results so far."""
    results = ResultStore(out / RESULTS_FILE).load(repair=False)
    order = {r.id: i for i, r in enumerate(records)}
    rows = sorted((r for r in results.values() if r["id"] in order),
                  key=lambda r: (order[r["id"]], int(r.get("sample", 0))))
    tmp = out / (TRAJECTORIES_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in rows:
            if r.get("trajectory"):
                fh.write(json.dumps(r["trajectory"], ensure_ascii=False) + "\n")
    os.replace(tmp, out / TRAJECTORIES_FILE)
    return write_reports(out, rows, card, seed=seed, expected=len(records) * samples, paper=paper)
