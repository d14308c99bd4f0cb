"""Evaluation question sets: built-in names, files in any supported format, the Hub; seeded
subsampling (the paper's "512 per dataset + all Bamboogle") and the digests a protocol card records.

A data spec is one of:

- ``paper-test`` / ``paper-dev``: the paper's sets, shipped in ``eval/datasets/``;
- a file: the paper's parquet, Search-R1 parquet, FlashRAG or records JSONL, the public QA JSON
  layouts (all through :func:`deepresearcher.data.sources.load_qa_file`), a world's
  ``questions/<split>.jsonl`` (``world build``), or a CSV;
- ``hf:REPO[:CONFIG]:SPLIT``: a dataset on the Hugging Face Hub (through ``load_hub``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from deepresearcher.data.paper_format import QARecord, iter_jsonl
from deepresearcher.data.sources import canonical_source, load_hub, load_qa_file
from deepresearcher.errors import DataError
from deepresearcher.protocol.metrics import ANSWER_SPLIT

BUILTIN_SETS = {"paper-test": "test.parquet", "paper-dev": "dev.parquet"}
PAPER_PER_SOURCE = 512
PAPER_KEEP_ALL = ("Bamboogle",)  # the paper kept all 125 Bamboogle questions


@dataclass(frozen=True)
class EvalData:
    """A loaded question set and where it came from.

    ``sha256`` is the digest of the file's bytes (None for the Hub, where ``spec`` and the
    question ids identify the set).
    """

    spec: str
    records: list[QARecord]
    path: Path | None = None
    sha256: str | None = None

    @property
    def builtin(self) -> str | None:
        return self.spec if self.spec in BUILTIN_SETS else None


def builtin_path(name: str) -> Path:
    """The packaged file of a built-in set (``paper-test``, ``paper-dev``)."""
    if name not in BUILTIN_SETS:
        raise DataError(f"no built-in set {name!r}", hint=f"built-in sets: {', '.join(BUILTIN_SETS)}")
    ref = resources.files("deepresearcher.eval") / "datasets" / BUILTIN_SETS[name]
    path = Path(str(ref))
    if not path.is_file():
        raise DataError(
            f"the packaged file of {name!r} is missing ({path})",
            hint="reinstall deepresearcher; the wheel ships eval/datasets/*.parquet",
        )
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ids_digest(ids: Iterable[str]) -> str:
    """sha256 of the question ids in order, one per line: identifies a selection of a set."""
    return hashlib.sha256("".join(f"{i}\n" for i in ids).encode("utf-8")).hexdigest()


def load_eval_data(spec: str, *, data_source: str | None = None, fmt: str = "auto") -> EvalData:
    """The questions named by ``spec`` (see the module docstring), validated, ids unique."""
    if spec in BUILTIN_SETS:
        path = builtin_path(spec)
        records = load_qa_file(path, fmt="paper")
        return EvalData(spec, _unique(records, spec), path, file_sha256(path))
    if spec.startswith("hf:"):
        parts = spec[3:].split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise DataError(
                f"bad Hub spec {spec!r}",
                hint="write hf:REPO:SPLIT or hf:REPO:CONFIG:SPLIT, e.g. "
                "hf:RUC-NLPIR/FlashRAG_datasets:bamboogle:test",
            )
        repo, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
        records = load_hub(repo, split, config=config, data_source=data_source, fmt=fmt)
        return EvalData(spec, _unique(records, spec))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DataError(
            f"no such data file: {path}",
            hint=f"pass a file (.parquet, .jsonl, .json, .csv), hf:REPO:SPLIT, or a built-in set "
            f"({', '.join(BUILTIN_SETS)})",
        )
    if path.suffix.lower() == ".csv":
        records = load_csv(path, data_source=data_source)
    elif _is_world_questions(path):
        records = load_world_questions(path, data_source=data_source)
    else:
        records = load_qa_file(path, data_source=data_source, fmt=fmt, split="test")
    return EvalData(str(path), _unique(records, str(path)), path, file_sha256(path))


def _unique(records: list[QARecord], where: str) -> list[QARecord]:
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise DataError(f"{where}: question id {r.id!r} appears twice",
                            hint="every question needs its own id: results are keyed by it")
        seen.add(r.id)
    if not records:
        raise DataError(f"{where}: no questions")
    return records


# The fields of a line of a world's questions/<split>.jsonl (world/questions.py) that say it is one.
_WORLD_FIELDS = ("index", "question", "answers", "data_source", "supporting_urls")


def _is_world_questions(path: Path) -> bool:
    """Whether ``path`` is a world's questions JSONL (judged by its first row)."""
    if not path.name.lower().endswith(".jsonl"):
        return False
    for _, row in iter_jsonl(path):
        return isinstance(row, dict) and all(f in row for f in _WORLD_FIELDS)
    return False


def load_world_questions(path: Path, *, data_source: str | None = None) -> list[QARecord]:
    """The questions of a world's ``questions/<split>.jsonl``: the same ids, golds and sources as
    its ``<split>.parquet`` (``index`` is the id, ``answers`` the aliases)."""
    out = []
    for n, row in iter_jsonl(path):
        where = f"{path}, line {n}"
        if not isinstance(row, dict) or not all(f in row for f in _WORLD_FIELDS):
            raise DataError(f"{where}: not a world question (fields: "
                            f"{', '.join(_WORLD_FIELDS)})")
        answers = row["answers"]
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise DataError(f"{where}: answers must be a list of strings")
        source = data_source or row["data_source"]
        if not isinstance(source, str) or not source:
            raise DataError(f"{where}: no data_source")
        out.append(_record(where, str(row["index"]), str(row["question"] or ""),
                           [a.strip() for a in answers], canonical_source(source)))
    return out


_CSV_GOLD_COLUMNS = ("golds", "golden_answers", "answers", "answer")


def load_csv(path: Path, *, data_source: str | None = None) -> list[QARecord]:
    """Questions from a CSV with a header: ``question``, one of ``golds``/``golden_answers``/
    ``answers``/``answer``, and optionally ``id`` and ``data_source``.

    Several gold aliases go in one cell as a JSON list or joined by ``<|answer_split|>``.
    """
    try:
        fh = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    with fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        gold_col = next((c for c in _CSV_GOLD_COLUMNS if c in header), None)
        if "question" not in header or gold_col is None:
            raise DataError(
                f"{path}: a QA CSV needs a header with question and one of "
                f"{', '.join(_CSV_GOLD_COLUMNS)} (it has {', '.join(header) or 'none'})"
            )
        out = []
        for n, row in enumerate(reader, start=2):  # line 1 is the header
            where = f"{path}, line {n}"
            source = (row.get("data_source") or data_source or "").strip()
            if not source:
                raise DataError(f"{where}: no data_source",
                                hint="add a data_source column or pass --data-source")
            source = canonical_source(source)
            raw_id = (row.get("id") or "").strip() or str(n - 2)
            out.append(
                _record(where, f"{source}_{raw_id}" if not raw_id.startswith(f"{source}_") else raw_id,
                        row.get("question") or "", _csv_golds(row.get(gold_col) or "", where), source)
            )
    return out


def _csv_golds(cell: str, where: str) -> list[str]:
    cell = cell.strip()
    if cell.startswith("["):
        try:
            values = json.loads(cell)
        except ValueError as exc:
            raise DataError(f"{where}: the answer cell looks like a JSON list but is not ({exc})") \
                from exc
        if not isinstance(values, list):
            raise DataError(f"{where}: the answer cell must be a JSON list of strings")
        return [str(v).strip() for v in values]
    return [g.strip() for g in cell.split(ANSWER_SPLIT)]


def _record(where: str, rid: str, question: str, golds: list[str], source: str) -> QARecord:
    try:
        return QARecord(id=rid, question=question.strip(), golds=golds, data_source=source,
                        split="test")
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc


def select(
    records: Sequence[QARecord],
    *,
    sources: Sequence[str] | None = None,
    per_source: int | None = None,
    keep_all: Sequence[str] = PAPER_KEEP_ALL,
    seed: int = 0,
    limit: int | None = None,
) -> list[QARecord]:
    """A reproducible selection of questions, in file order.

    ``sources`` keeps those data sources (names canonicalized: ``triviaqa`` -> ``tq``);
    ``per_source`` samples that many questions of each source (seeded per source, so adding a
    source does not change another's sample), except sources in ``keep_all``, which are kept whole;
    ``limit`` then keeps ``limit`` questions in all, taken round-robin over the sources in file
    order (so a small run covers every source rather than the first one only).
    """
    chosen = list(records)
    if sources:
        wanted = {canonical_source(s) for s in sources}
        known = {r.data_source for r in chosen}
        missing = sorted(wanted - known)
        if missing:
            raise DataError(f"no questions from {', '.join(missing)} in this set",
                            hint=f"its sources: {', '.join(sorted(known))}")
        chosen = [r for r in chosen if r.data_source in wanted]
    by_source: dict[str, list[int]] = {}
    for i, r in enumerate(chosen):
        by_source.setdefault(r.data_source, []).append(i)
    keep: set[int] = set()
    for source, positions in by_source.items():
        if per_source is not None and source not in keep_all and len(positions) > per_source:
            rng = random.Random(f"{seed}:{source}")
            positions = sorted(rng.sample(positions, per_source))
        by_source[source] = positions
    if limit is not None:
        queues = list(by_source.values())
        while len(keep) < limit and any(queues):
            for queue in queues:
                if queue and len(keep) < limit:
                    keep.add(queue.pop(0))
    else:
        keep = {i for positions in by_source.values() for i in positions}
    return [r for i, r in enumerate(chosen) if i in keep]


def paper_sample(records: Sequence[QARecord], *, seed: int = 0) -> list[QARecord]:
    """The paper's test-set recipe: 512 questions per dataset, all of Bamboogle."""
    return select(records, per_source=PAPER_PER_SOURCE, keep_all=PAPER_KEEP_ALL, seed=seed)
