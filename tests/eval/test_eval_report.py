"""Reports: per-source tables with bootstrap CIs, and the paper's numbers beside ours."""

from __future__ import annotations

from deepresearcher.eval.report import PAPER_RESULTS, compute_scores, render_report


def _rows():
    rows = []
    for source, f1s in (("nq", [1.0, 0.0, 0.5, 1.0]), ("Bamboogle", [0.0, 1.0])):
        for i, f1 in enumerate(f1s):
            rows.append({"id": f"{source}-{i}", "data_source": source, "status": "answered",
                         "turns": 3, "scores": {"f1": f1, "em": float(f1 == 1.0)}})
    return rows


def test_paper_section_sets_our_numbers_beside_the_papers():
    scores = compute_scores(_rows(), seed=0)
    nq = scores["by_source"]["nq"]["metrics"]["f1"]
    assert nq["mean"] == 0.625 and nq["ci95"][0] <= 0.625 <= nq["ci95"][1]
    # The paper averages over datasets, not over questions.
    assert scores["macro_f1"] == (0.625 + 0.5) / 2
    report = render_report(scores, None, paper=True)
    section = report.split("## Against the paper", 1)[1].split("##", 1)[0]
    pf1, pmbe = PAPER_RESULTS["nq"]
    assert f"| nq | 62.5 | {pf1:.1f} |" in section and f"{pmbe:.1f}" in section
    assert f"| Bamboogle | 50.0 | {PAPER_RESULTS['Bamboogle'][0]:.1f} |" in section
    assert "## Against the paper" not in render_report(scores, None, paper=False)


def test_failed_searches_and_pages_are_counted_and_reported():
    """A bad key or an exhausted quota makes every search an error observation: the run would
    score like a closed-book one. The scores and the report count failed tool calls."""
    rows = _rows()
    rows[0]["trajectory"] = {"turns": [
        {"tool": {"name": "web_search", "error": "SearchError: quota exhausted"}},
        {"tool": {"name": "browse_webpage", "failed_urls": {"u1": "timeout", "u2": "internal"}}},
        {"tool": None},
    ]}
    rows[1]["trajectory"] = {"turns": [{"tool": {"name": "web_search", "error": None}}]}
    scores = compute_scores(rows, seed=0)
    assert scores["overall"]["tool_errors"] == {"failed_searches": 1, "failed_pages": 2}
    assert scores["by_source"]["Bamboogle"]["tool_errors"] == {"failed_searches": 0,
                                                               "failed_pages": 0}
    report = render_report(scores, None, paper=False)
    assert "| failed searches | failed pages |" in report and "| 1 | 2 |" in report


def test_failed_episodes_are_counted_with_their_causes_and_flagged_at_the_top():
    """A failed episode scores 0 like a wrong answer: the scores count the failures by cause and
    the report says so before any table."""
    from deepresearcher.eval.report import error_kind, failure_summary

    rows = _rows()
    for row, error in zip(rows[:3], ("policy http_error: http://h/v1 answered 500: `boom`",
                                     "policy http_error: answered 503",
                                     "internal error: KeyError: 'x'"), strict=True):
        row.update(status="error", error=error, scores={"f1": 0.0, "em": 0.0})
    scores = compute_scores(rows, seed=0)
    assert scores["failed_episodes"] == 3 and scores["failed_share"] == 0.5
    assert scores["failure_kinds"] == {"policy http_error": 2, "internal KeyError": 1}
    assert scores["by_source"]["nq"]["failed"] == 3 and scores["by_source"]["Bamboogle"]["failed"] == 0
    assert failure_summary(scores).startswith("3 of 6 episodes failed (50%) "
                                              "(policy http_error × 2, internal KeyError × 1)")
    report = render_report(scores, None)
    top = report.split("## Scores", 1)[0]
    assert "**Warning: 3 of 6 episodes failed (50%)" in top
    assert "> - `policy http_error` × 2, e.g. `policy http_error: http://h/v1 answered 500: 'boom'`" \
        in top
    assert error_kind(None) == "unknown" and error_kind("CacheError: damaged") == "CacheError"
    assert error_kind("policy timeout: no reply") == "policy timeout"
    # A trajectory that records its error's class is counted by it, not by its message.
    rows[0]["trajectory"] = {"error_kind": "cache locked"}
    assert compute_scores(rows, seed=0)["failure_kinds"] == {
        "cache locked": 1, "internal KeyError": 1, "policy http_error": 1}
    # None failed: no warning, and the counts say zero.
    clean = compute_scores(_rows(), seed=0)
    assert clean["failed_episodes"] == 0 and failure_summary(clean) is None
    assert "Warning" not in render_report(clean, None)
    every = compute_scores(rows[:3], seed=0)
    assert failure_summary(every).startswith("no episode could be run: all 3 failed")
