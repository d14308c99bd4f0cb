"""Evaluation sets: built-in names, every file format, seeded subsampling, typed row errors."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from deepresearcher.data.paper_format import QARecord, write_records
from deepresearcher.errors import DataError
from deepresearcher.eval.data import (
    builtin_path,
    ids_digest,
    load_eval_data,
    paper_sample,
    select,
)

PAPER_SOURCES = {"nq", "tq", "hotpotqa", "2wiki", "musique", "popqa", "Bamboogle"}


def test_builtin_paper_sets_load_with_their_sizes():
    test = load_eval_data("paper-test")
    assert len(test.records) == 3197 and test.path == builtin_path("paper-test")
    counts = Counter(r.data_source for r in test.records)
    assert counts == {**{s: 512 for s in PAPER_SOURCES - {"Bamboogle"}}, "Bamboogle": 125}
    assert test.sha256 and len(test.sha256) == 64
    dev = load_eval_data("paper-dev")
    assert len(dev.records) == 875 and set(Counter(r.data_source for r in dev.records).values()) == {125}


def _pool(per_source: int) -> list[QARecord]:
    return [QARecord(id=f"{s}_{i}", question=f"q {s} {i}?", golds=["a"], data_source=s)
            for s in ("nq", "hotpotqa", "Bamboogle") for i in range(per_source)]


def test_paper_sample_keeps_512_per_source_and_all_bamboogle_reproducibly():
    pool = _pool(700)
    a, b = paper_sample(pool, seed=3), paper_sample(pool, seed=3)
    assert [r.id for r in a] == [r.id for r in b]
    assert Counter(r.data_source for r in a) == {"nq": 512, "hotpotqa": 512, "Bamboogle": 700}
    assert [r.id for r in paper_sample(pool, seed=4)] != [r.id for r in a]
    # File order is kept, and one source's sample does not depend on the others being there.
    positions = [pool.index(r) for r in a]
    assert positions == sorted(positions)
    only_nq = paper_sample([r for r in pool if r.data_source == "nq"], seed=3)
    assert [r.id for r in only_nq] == [r.id for r in a if r.data_source == "nq"]


def test_select_sources_and_limit_round_robin():
    pool = _pool(5)
    picked = select(pool, sources=["NQ", "bamboogle"], limit=4)
    assert [r.id for r in picked] == ["nq_0", "nq_1", "Bamboogle_0", "Bamboogle_1"]
    with pytest.raises(DataError, match="no questions from tq"):
        select(pool, sources=["triviaqa"])


def test_flashrag_jsonl_csv_and_paper_parquet(tmp_path):
    flash = tmp_path / "bamboogle_test.jsonl"
    flash.write_text(json.dumps({"id": "7", "question": "Who?", "golden_answers": ["Ann", "A."]})
                     + "\n", encoding="utf-8")
    rec = load_eval_data(str(flash)).records[0]
    assert (rec.id, rec.data_source, rec.golds) == ("Bamboogle_7", "Bamboogle", ["Ann", "A."])

    csv_file = tmp_path / "mine.csv"
    csv_file.write_text('id,question,answer\n1,What is 2+2?,"[""4"", ""four""]"\n'
                        "2,Capital of France?,Paris<|answer_split|>paris city\n", encoding="utf-8")
    recs = load_eval_data(str(csv_file), data_source="custom").records
    assert [r.golds for r in recs] == [["4", "four"], ["Paris", "paris city"]]
    assert recs[0].id == "custom_1"

    parquet = write_records(_pool(2), tmp_path / "p.parquet")
    data = load_eval_data(str(parquet))
    assert [r.id for r in data.records] == [r.id for r in _pool(2)]
    assert ids_digest(r.id for r in data.records) != ids_digest(["x"])


def test_a_malformed_row_names_the_file_and_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer,data_source\nOk?,yes,nq\n,no,nq\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv, line 3: .*empty question"):
        load_eval_data(str(bad))
    flash = tmp_path / "nq_dev.jsonl"
    flash.write_text(json.dumps({"id": "1", "question": "Q?", "golden_answers": ["a"]}) + "\n"
                     + json.dumps({"id": "2", "question": "Q2?", "golden_answers": []}) + "\n",
                     encoding="utf-8")
    with pytest.raises(DataError, match=r"nq_dev\.jsonl, line 2: no gold answer"):
        load_eval_data(str(flash))
    with pytest.raises(DataError, match="no such data file"):
        load_eval_data(str(tmp_path / "missing.parquet"))
    with pytest.raises(DataError, match="bad Hub spec"):
        load_eval_data("hf:only-a-repo")
