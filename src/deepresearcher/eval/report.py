"""Scores and reports of an evaluation: per-``data_source`` tables with seeded bootstrap 95% CIs,
statuses, tool calls, judge outcomes, the paper's numbers side by side, and a PNG chart.

With several samples per question, a question's score is the mean over its samples (avg@k) and
pass@k is 1 when any sample scores 1 (for F1: the best sample). Confidence intervals resample
questions, not samples.

Failed episodes (status ``error``: the policy or a tool could not run them) score 0 like wrong
answers (PROTOCOL.md §8), so the scores and the report count them, with their causes, and say so
at the top.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepresearcher.agent.trajectory import STATUSES
from deepresearcher.eval.judge import OUTCOMES
from deepresearcher.eval.scoring import METRIC_NAMES

SCORES_FILE = "scores.json"
REPORT_FILE = "report.md"
CHART_FILE = "scores.png"
BOOTSTRAP_SAMPLES = 1000
# The headline metrics, in table order: the paper's two, the judge, then cover-EM.
HEADLINE = ("f1", "em", "mbe", "cover_em")

# PROTOCOL.md §8: DeepResearcher-7b's published F1 / MBE (%) on the paper's test set.
PAPER_RESULTS: dict[str, tuple[float, float]] = {
    "nq": (39.6, 61.9),
    "tq": (78.4, 85.0),
    "hotpotqa": (52.8, 64.3),
    "2wiki": (59.7, 66.6),
    "musique": (27.1, 29.3),
    "Bamboogle": (71.0, 72.8),
    "popqa": (48.5, 52.7),
}
SOURCE_ORDER = ("nq", "tq", "hotpotqa", "2wiki", "musique", "Bamboogle", "popqa")


def bootstrap_ci(values: Sequence[float], *, seed: int = 0,
                 samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float]:
    """The percentile bootstrap 95% interval of the mean of ``values`` (seeded)."""
    if not values:
        return (math.nan, math.nan)
    if len(values) == 1:
        return (float(values[0]), float(values[0]))
    import numpy as np

    rng = np.random.default_rng(seed)
    data = np.asarray(values, dtype=float)
    means = data[rng.integers(0, len(data), size=(samples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _sources_in_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    known = [s for s in SOURCE_ORDER if s in names]
    return known + sorted(names - set(known))


def _group_scores(rows: Sequence[Mapping[str, Any]], seed: int, samples_per_q: int) -> dict[str, Any]:
    """The scores block of one group of result rows."""
    by_question: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_question.setdefault(str(r["id"]), []).append(r)
    present = [m for m in METRIC_NAMES if any(m in (r.get("scores") or {}) for r in rows)]
    metrics: dict[str, Any] = {}
    for i, name in enumerate(present):
        per_q = [sum(float((r.get("scores") or {}).get(name, 0.0)) for r in rs) / len(rs)
                 for rs in by_question.values()]
        mean = sum(per_q) / len(per_q)
        low, high = bootstrap_ci(per_q, seed=seed + i)
        block: dict[str, Any] = {"mean": round(mean, 6), "ci95": [round(low, 6), round(high, 6)]}
        if samples_per_q > 1:
            best = [max(float((r.get("scores") or {}).get(name, 0.0)) for r in rs)
                    for rs in by_question.values()]
            block[f"pass@{samples_per_q}"] = round(sum(best) / len(best), 6)
        metrics[name] = block
    statuses = {s: 0 for s in STATUSES}
    for r in rows:
        statuses[str(r.get("status"))] = statuses.get(str(r.get("status")), 0) + 1
    judge: dict[str, int] = {}
    if any(r.get("judge") for r in rows):
        judge = {o: 0 for o in OUTCOMES}
        for r in rows:
            if r.get("judge"):
                outcome = str(r["judge"].get("outcome"))
                judge[outcome] = judge.get(outcome, 0) + 1
        judge["calls"] = sum(int(r["judge"].get("calls", 0)) for r in rows if r.get("judge"))
        judge["cached"] = sum(1 for r in rows if r.get("judge") and r["judge"].get("cached"))
    n = len(rows)

    def mean_usage(key: str) -> float | None:
        raw = [(r.get("usage") or {}).get(key) for r in rows]
        values = [v for v in raw if isinstance(v, int | float)]
        return round(sum(values) / len(values), 4) if values else None

    tools = {k: mean_usage(k) for k in ("search_calls", "browse_calls", "queries", "pages_read")}
    out: dict[str, Any] = {
        "questions": len(by_question),
        "episodes": n,
        "metrics": metrics,
        "statuses": statuses,
        "tool_calls_per_episode": {k: v for k, v in tools.items() if v is not None},
        "turns_per_episode": round(sum(int(r.get("turns") or 0) for r in rows) / n, 4) if n else 0,
        "tool_errors": tool_errors(rows),
        "failed": statuses.get("error", 0),
    }
    tokens = {k: sum(int((r.get("usage") or {}).get(k) or 0) for r in rows)
              for k in ("prompt_tokens", "completion_tokens")}
    if any(tokens.values()):
        out["tokens"] = tokens
    costs = [_cost(r) for r in rows]
    if any(c is not None for c in costs):
        out["cost_usd"] = round(sum(c for c in costs if c is not None), 6)
    if judge:
        out["judge"] = judge
    return out


def tool_errors(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Failed tool calls over the rows' trajectories: searches that returned an error (a bad
    key, an exhausted quota, a replay miss: the model saw no results) and pages that could not
    be read. A run whose searches all failed scores like a closed-book run: this says so."""
    searches = pages = 0
    for row in rows:
        for turn in (row.get("trajectory") or {}).get("turns") or []:
            tool = turn.get("tool") or {}
            if tool.get("name") == "web_search" and tool.get("error"):
                searches += 1
            pages += len(tool.get("failed_urls") or {})
    return {"failed_searches": searches, "failed_pages": pages}


# Files written before trajectories carried ``error_kind``: the agent loop wrote an episode's
# error as "policy KIND: …", "internal error: TYPE: …" or "TYPE: …" (agent/loop.py).
_ERROR_KIND = re.compile(r"(policy [\w-]+|internal error: \w+|\w+):")
_EXAMPLE_CHARS = 300


def episode_error_kind(row: Mapping[str, Any]) -> str:
    """The cause of a failed episode: the ``error_kind`` its trajectory recorded (``policy
    timeout``, ``cache locked``, ``internal KeyError``, ...), else read from its error message."""
    recorded = (row.get("trajectory") or {}).get("error_kind")
    if isinstance(recorded, str) and recorded:
        return recorded
    return error_kind(row.get("error"))


def error_kind(error: str | None) -> str:
    """The cause of a failed episode, from its error message (files without ``error_kind``):
    ``policy http_error``, ``policy timeout``, ``internal KeyError``, ``CacheError``, ...;
    ``unknown`` without one."""
    if not error:
        return "unknown"
    match = _ERROR_KIND.match(error)
    if match is None:
        return "other"
    return match.group(1).replace("internal error: ", "internal ")


def failures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The episodes that failed (status ``error``): how many, of how many, and why (each cause
    counted, most frequent first, with the first message of each)."""
    failed = [r for r in rows if r.get("status") == "error"]
    kinds: dict[str, int] = {}
    examples: dict[str, str] = {}
    for r in failed:
        kind = episode_error_kind(r)
        kinds[kind] = kinds.get(kind, 0) + 1
        examples.setdefault(kind, str(r.get("error") or "")[:_EXAMPLE_CHARS])
    order = sorted(kinds, key=lambda k: (-kinds[k], k))
    return {
        "failed_episodes": len(failed),
        "failed_share": round(len(failed) / len(rows), 6) if rows else 0.0,
        "failure_kinds": {k: kinds[k] for k in order},
        "failure_examples": {k: examples[k] for k in order},
    }


def failure_summary(scores: Mapping[str, Any]) -> str | None:
    """One sentence on the failed episodes of ``scores`` (None when none failed), for the
    console and the report."""
    failed, done = scores.get("failed_episodes") or 0, scores.get("episodes_done") or 0
    if not failed:
        return None
    causes = ", ".join(f"{kind} × {n}" for kind, n in (scores.get("failure_kinds") or {}).items())
    if failed == done:
        head = f"no episode could be run: all {done} failed"
    else:
        head = f"{failed} of {done} episodes failed ({100 * failed / done:.0f}%)"
    return (f"{head} ({causes}); a failed episode scores 0, as a wrong answer would, so the "
            "scores understate the model" + (" and here measure nothing" if failed == done
                                             else ""))


def _cost(row: Mapping[str, Any]) -> float | None:
    """The cost a result or its trajectory carries, if any (trajectories may record ``cost``)."""
    for holder in (row.get("usage") or {}, row, row.get("trajectory") or {}):
        value = holder.get("cost") if isinstance(holder, Mapping) else None
        if isinstance(value, int | float):
            return float(value)
    return None


def compute_scores(rows: Sequence[Mapping[str, Any]], *, seed: int = 0,
                   expected: int | None = None) -> dict[str, Any]:
    """``scores.json``: per data source and overall. ``expected``: result units the run planned
    (so an unfinished run says how far it got)."""
    samples = max((int(r.get("sample", 0)) + 1 for r in rows), default=1)
    by_source: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_source.setdefault(str(r.get("data_source")), []).append(r)
    out: dict[str, Any] = {
        "samples_per_question": samples,
        "complete": expected is None or len(rows) >= expected,
        "episodes_done": len(rows),
        "episodes_expected": expected,
        **failures(rows),
        "by_source": {s: _group_scores(by_source[s], seed, samples)
                      for s in _sources_in_order(by_source)},
        "overall": _group_scores(rows, seed, samples) if rows else {},
    }
    if any(s in PAPER_RESULTS for s in by_source):
        # The paper's average is the mean over datasets, not over questions.
        per_source_f1 = [out["by_source"][s]["metrics"]["f1"]["mean"] for s in by_source]
        out["macro_f1"] = round(sum(per_source_f1) / len(per_source_f1), 6)
    return out


def _code_span(text: str) -> str:
    """``text`` fit for one Markdown code span on one line."""
    return " ".join(text.split()).replace("`", "'")


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{100 * value:.1f}"


def _metric_cell(block: Mapping[str, Any] | None) -> str:
    if not block:
        return "–"
    low, high = block["ci95"]
    return f"{_pct(block['mean'])} [{_pct(low)}, {_pct(high)}]"


def render_report(scores: Mapping[str, Any], card: Mapping[str, Any] | None, *,
                  paper: bool = False, chart: str | None = None,
                  chart_note: str | None = None) -> str:
    """``report.md``: the tables of ``scores`` (and the paper's numbers when ``paper``)."""
    lines = ["# Evaluation report", ""]
    if card:
        model = card.get("model") or {}
        dec = card.get("decoding") or {}
        data = card.get("data") or {}
        judge = card.get("judge") or {}
        lines += [
            f"- model: `{model.get('name')}` (profile `{model.get('profile')}`)",
            f"- data: `{data.get('spec')}`, {data.get('questions')} questions"
            + (f", sha256 `{str(data.get('sha256'))[:12]}…`" if data.get("sha256") else ""),
            f"- decoding: temperature {dec.get('temperature')}, top_p {dec.get('top_p')}, "
            f"{dec.get('max_turns')} turns × {dec.get('max_tokens_per_turn')} tokens, "
            f"samples {dec.get('samples')}",
            f"- judge: `{judge.get('model')}` at temperature {judge.get('temperature')}"
            if judge else "- judge: none (MBE not computed)",
            f"- package: deepresearcher {card.get('package_version')}; protocol in "
            "`protocol.json`",
        ]
    if not scores.get("complete", True):
        lines.append(f"- **incomplete run**: {scores['episodes_done']} of "
                     f"{scores['episodes_expected']} episodes done")
    summary = failure_summary(scores)
    if summary is not None:
        lines += ["", f"> **Warning: {summary}.** Failed episodes have status `error` (the policy "
                  "or a tool could not run them); the causes, counted:", ">"]
        for kind, n in (scores.get("failure_kinds") or {}).items():
            example = (scores.get("failure_examples") or {}).get(kind, "")
            lines.append(f"> - `{kind}` × {n}, e.g. `{_code_span(example)}`")
        lines += [">", "> Running the same `deepresearcher eval` command again runs them again "
                  "(`--keep-errors` keeps them)."]
    lines += ["", "## Scores per data source (%, with bootstrap 95% CI)", ""]
    k = scores.get("samples_per_question", 1)
    header = ["source", "n", "F1", "EM", "MBE", "cover-EM"]
    if k > 1:
        header += [f"F1 pass@{k}", f"EM pass@{k}"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = [*scores["by_source"].items()]
    if scores.get("overall"):
        rows.append(("**all**", scores["overall"]))
    for source, block in rows:
        m = block["metrics"]
        cells = [source, str(block["questions"]), *(_metric_cell(m.get(name)) for name in HEADLINE)]
        if k > 1:
            cells += [_pct((m.get(n) or {}).get(f"pass@{k}")) for n in ("f1", "em")]
        lines.append("| " + " | ".join(cells) + " |")
    if "macro_f1" in scores:
        lines += ["", f"Mean F1 over data sources (the paper's average): "
                      f"{_pct(scores['macro_f1'])}"]
    lines += ["", "Other metrics (%): SQuAD EM / SQuAD F1 / cover-EM on token boundaries", "",
              "| source | SQuAD EM | SQuAD F1 | cover-EM (tokens) |", "|---|---|---|---|"]
    for source, block in rows:
        m = block["metrics"]
        lines.append(f"| {source} | " + " | ".join(
            _metric_cell(m.get(n)) for n in ("squad_em", "squad_f1", "cover_em_tokens")) + " |")
    if paper:
        lines += ["", "## Against the paper (DeepResearcher-7b, PROTOCOL.md §8)", "",
                  "| source | F1 here | F1 paper | MBE here | MBE paper |", "|---|---|---|---|---|"]
        for source, block in scores["by_source"].items():
            if source not in PAPER_RESULTS:
                continue
            m = block["metrics"]
            pf1, pmbe = PAPER_RESULTS[source]
            mbe = (m.get("mbe") or {}).get("mean")
            lines.append(f"| {source} | {_pct(m['f1']['mean'])} | {pf1:.1f} | {_pct(mbe)} | "
                         f"{pmbe:.1f} |")
    lines += ["", "## Episode statuses", "", "| source | " + " | ".join(STATUSES) + " |",
              "|" + "---|" * (len(STATUSES) + 1)]
    for source, block in rows:
        lines.append(f"| {source} | " + " | ".join(str(block["statuses"].get(s, 0))
                                                  for s in STATUSES) + " |")
    lines += ["", "## Tool calls and turns per episode", "",
              "| source | searches | queries | browses | pages read | turns | failed searches "
              "| failed pages |",
              "|---|---|---|---|---|---|---|---|"]
    for source, block in rows:
        t = block.get("tool_calls_per_episode") or {}
        errors = block.get("tool_errors") or {}
        lines.append(f"| {source} | {t.get('search_calls', '–')} | {t.get('queries', '–')} | "
                     f"{t.get('browse_calls', '–')} | {t.get('pages_read', '–')} | "
                     f"{block.get('turns_per_episode', '–')} | "
                     f"{errors.get('failed_searches', '–')} | {errors.get('failed_pages', '–')} |")
    overall = scores.get("overall") or {}
    if overall.get("judge"):
        j = overall["judge"]
        lines += ["", "## Judge", "",
                  ", ".join(f"{o}: {j.get(o, 0)}" for o in OUTCOMES)
                  + f"; {j.get('calls', 0)} calls, {j.get('cached', 0)} verdicts from the cache",
                  "", "`unparseable` (no JSON verdict after the re-asks) and `error` (the endpoint "
                  "failed) count as incorrect."]
    if overall.get("tokens") or overall.get("cost_usd") is not None:
        lines += ["", "## Cost", ""]
        if overall.get("tokens"):
            lines.append(f"- tokens: {overall['tokens']['prompt_tokens']} prompt, "
                         f"{overall['tokens']['completion_tokens']} completion")
        if overall.get("cost_usd") is not None:
            lines.append(f"- cost: ${overall['cost_usd']:.4f}")
    if chart:
        lines += ["", f"![scores per data source]({chart})"]
    elif chart_note:
        lines += ["", f"_{chart_note}_"]
    return "\n".join(lines) + "\n"


def write_chart(scores: Mapping[str, Any], path: Path) -> str | None:
    """A grouped bar chart of the headline metrics per source; None (and no file) without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sources = list(scores["by_source"])
    metrics = [m for m in HEADLINE if any(m in b["metrics"] for b in scores["by_source"].values())]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(sources) + 2), 4))
    width = 0.8 / max(1, len(metrics))
    for i, name in enumerate(metrics):
        means: list[float] = []
        errs: list[list[float]] = [[], []]
        for s in sources:
            block = scores["by_source"][s]["metrics"].get(name)
            mean = 100 * block["mean"] if block else 0.0
            low, high = (100 * block["ci95"][0], 100 * block["ci95"][1]) if block else (0.0, 0.0)
            means.append(mean)
            errs[0].append(max(0.0, mean - low))
            errs[1].append(max(0.0, high - mean))
        xs = [x + i * width for x in range(len(sources))]
        ax.bar(xs, means, width, yerr=errs, capsize=2, label=name)
    ax.set_xticks([x + width * (len(metrics) - 1) / 2 for x in range(len(sources))])
    ax.set_xticklabels(sources)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend()
    ax.set_title("scores per data source (95% bootstrap CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def write_reports(out: Path, rows: Sequence[Mapping[str, Any]], card: Mapping[str, Any] | None, *,
                  seed: int = 0, expected: int | None = None, paper: bool = False) -> dict[str, Any]:
    """Write ``scores.json``, ``report.md`` and the chart into ``out``; return the scores."""
    out.mkdir(parents=True, exist_ok=True)
    scores = compute_scores(rows, seed=seed, expected=expected)
    chart = write_chart(scores, out / CHART_FILE) if rows else None
    note = None if chart else "chart skipped: matplotlib is not installed (pip install matplotlib)"
    (out / SCORES_FILE).write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    (out / REPORT_FILE).write_text(render_report(scores, card, paper=paper, chart=chart,
                                                 chart_note=note), encoding="utf-8")
    return scores
