"""The paper's question files as typed records: parquet in the DeepResearcher layout, and JSONL.

A row of the paper's parquet (``train``/``dev``/``test.parquet`` of GAIR-NLP/DeepResearcher)::

    data_source   "nq" | "tq" | "hotpotqa" | "2wiki" | "popqa" | "musique" | "Bamboogle" | ...
    prompt        [{"content": <question>, "role": "user"}]          (exactly one user message)
    ability       "search & question answering"
    reward_model  {"ground_truth": <aliases joined by "<|answer_split|>">, "style": "unknown"}
    extra_info    {"index": <id>, "split": <split>, ...}

``QARecord`` is one such row. Reading validates every row and names the file and row of the first
malformed one; writing produces the same columns and Arrow types as the paper's files, so
read → write → read is the identity.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearcher.errors import DataError
from deepresearcher.protocol.metrics import ANSWER_SPLIT

ABILITY = "search & question answering"  # the paper's value, on every row
STYLE = "unknown"  # the paper's reward_model.style, on every row
PAPER_COLUMNS = ("data_source", "prompt", "ability", "reward_model", "extra_info")
_RESERVED_EXTRA = ("index", "split")


@dataclass(frozen=True)
class QARecord:
    """One question with its gold answer aliases.

    ``id`` is the row's ``extra_info.index`` (the paper writes ``<data_source>_<original id>``);
    ``extra`` holds any further ``extra_info`` fields (null ones are dropped on reading).
    """

    id: str
    question: str
    golds: list[str]
    data_source: str
    split: str = "train"
    extra: dict[str, Any] = field(default_factory=dict)
    ability: str = ABILITY
    style: str = STYLE

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem is not None:
            raise DataError(f"invalid question record {self.id!r}: {problem}")

    @property
    def ground_truth(self) -> str:
        """The golds as the data files store them: joined by ``<|answer_split|>``."""
        return ANSWER_SPLIT.join(self.golds)

    def to_row(self) -> dict[str, Any]:
        """The record as one row of the paper's parquet layout."""
        return {
            "data_source": self.data_source,
            "prompt": [{"content": self.question, "role": "user"}],
            "ability": self.ability,
            "reward_model": {"ground_truth": self.ground_truth, "style": self.style},
            "extra_info": {"index": self.id, "split": self.split, **self.extra},
        }

    def to_json(self) -> dict[str, Any]:
        """The record as one flat JSONL object (defaults left out)."""
        out: dict[str, Any] = {
            "id": self.id,
            "question": self.question,
            "golds": list(self.golds),
            "data_source": self.data_source,
            "split": self.split,
        }
        if self.extra:
            out["extra"] = self.extra
        if self.ability != ABILITY:
            out["ability"] = self.ability
        if self.style != STYLE:
            out["style"] = self.style
        return out


def _problem(r: QARecord) -> str | None:
    """What is wrong with a record, or None."""
    if not isinstance(r.id, str) or not r.id:
        return "empty id"
    if not isinstance(r.question, str) or not r.question.strip():
        return "empty question"
    if not isinstance(r.data_source, str) or not r.data_source:
        return "empty data_source"
    if not isinstance(r.split, str):
        return "split is not a string"
    if not isinstance(r.golds, list) or not r.golds:
        return "no gold answer"
    for gold in r.golds:
        if not isinstance(gold, str) or not gold.strip():
            return f"empty or non-string gold answer in {r.golds!r}"
        if ANSWER_SPLIT in gold:
            return f"a gold answer contains the separator {ANSWER_SPLIT}: {gold!r}"
    if not isinstance(r.extra, dict):
        return "extra is not a mapping"
    clash = [k for k in _RESERVED_EXTRA if k in r.extra]
    if clash:
        return f"extra may not hold {', '.join(clash)} (they are the id and split)"
    return None


# Reading ------------------------------------------------------------------------------------------


def record_from_row(row: dict[str, Any], where: str) -> QARecord:
    """A record from one row of the paper's layout; ``where`` ("file, row N") names it in errors."""
    missing = [c for c in PAPER_COLUMNS if c not in row]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {', '.join(missing)}",
            hint=f"the paper's layout has columns {', '.join(PAPER_COLUMNS)}",
        )
    prompt = row["prompt"]
    if not isinstance(prompt, list | tuple) or len(prompt) != 1 or not isinstance(prompt[0], dict):
        raise DataError(f"{where}: prompt must be a list holding one user message, got {prompt!r}")
    message = prompt[0]
    if message.get("role") != "user":
        raise DataError(
            f"{where}: the prompt's message has role {message.get('role')!r}, not 'user'"
        )
    question = message.get("content")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: empty question")
    reward = row["reward_model"]
    if not isinstance(reward, dict):
        raise DataError(f"{where}: reward_model must be a struct, got {reward!r}")
    truth = reward.get("ground_truth")
    if isinstance(truth, dict):
        raise DataError(
            f"{where}: reward_model.ground_truth is a struct {sorted(truth)}, not a "
            "string: this looks like a Search-R1 file",
            hint="load it with deepresearcher.data.sources.load_qa_file, "
            "or `deepresearcher data convert`",
        )
    if not isinstance(truth, str) or not truth.strip():
        raise DataError(f"{where}: no gold answer (reward_model.ground_truth is {truth!r})")
    extra_info = row["extra_info"]
    if not isinstance(extra_info, dict):
        raise DataError(
            f"{where}: extra_info must be a struct with index and split, got {extra_info!r}"
        )
    index = extra_info.get("index")
    if isinstance(index, int) and not isinstance(index, bool):
        index = str(index)
    if not isinstance(index, str) or not index:
        raise DataError(f"{where}: no id (extra_info.index is {index!r})")
    data_source = row["data_source"]
    if not isinstance(data_source, str) or not data_source:
        raise DataError(f"{where}: empty data_source")
    ability = row["ability"]
    style = reward.get("style")
    extra = {k: v for k, v in extra_info.items() if k not in _RESERVED_EXTRA and v is not None}
    try:
        return QARecord(
            id=index,
            question=question,
            golds=truth.split(ANSWER_SPLIT),
            data_source=data_source,
            split=str(extra_info.get("split") or ""),
            extra=extra,
            ability=ability if isinstance(ability, str) else ABILITY,
            style=style if isinstance(style, str) else STYLE,
        )
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc


def read_parquet(path: str | Path) -> list[QARecord]:
    """Every row of a parquet file in the paper's layout, validated."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError as exc:
        raise DataError(f"no such file: {path}") from exc
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for non-parquet bytes
        raise DataError(f"{path}: not a readable parquet file ({exc})") from exc
    missing = [c for c in PAPER_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(it has {', '.join(table.column_names)})",
            hint=f"the paper's layout has columns {', '.join(PAPER_COLUMNS)}; other "
            "QA formats load with `deepresearcher data convert`",
        )
    rows = table.select(list(PAPER_COLUMNS)).to_pylist()
    return [record_from_row(row, f"{path}, row {i}") for i, row in enumerate(rows)]


def _record_from_json(obj: Any, where: str) -> QARecord:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("id", "question", "golds", "data_source") if k not in obj]
    if missing:
        raise DataError(
            f"{where}: missing field(s) {', '.join(missing)}",
            hint='a record line is {"id", "question", "golds": [...], "data_source", "split"}',
        )
    golds = obj["golds"]
    if isinstance(golds, str):
        golds = golds.split(ANSWER_SPLIT)
    try:
        return QARecord(
            id=str(obj["id"]),
            question=obj["question"],
            golds=list(golds) if isinstance(golds, list | tuple) else golds,
            data_source=obj["data_source"],
            split=obj.get("split", "train"),
            extra=obj.get("extra") or {},
            ability=obj.get("ability", ABILITY),
            style=obj.get("style", STYLE),
        )
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from exc


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed object)`` for each non-blank line of a JSONL file (``.gz`` too)."""
    import gzip

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        fh = opener(path, "rb")  # type: ignore[operator]
    except FileNotFoundError as exc:
        raise DataError(f"no such file: {path}") from exc
    with fh:
        for n, raw in enumerate(_read_lines(fh, path), start=1):
            if not raw.strip():
                continue
            try:
                # Decoded line by line, so that bytes that are not UTF-8 are named by their line.
                yield n, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}, line {n}: not UTF-8 text (byte {exc.start + 1}); "
                                "not a JSONL file?") from exc
            except ValueError as exc:
                raise DataError(f"{path}, line {n}: not valid JSON ({exc})") from exc


def _read_lines(fh: Any, path: Path) -> Iterator[bytes]:
    try:
        yield from fh
    except (OSError, EOFError) as exc:  # a .gz that is not gzip, or is cut short
        raise DataError(f"{path}: cannot be read ({exc})") from exc


def read_jsonl(path: str | Path) -> list[QARecord]:
    """Records from a JSONL file written by ``write_jsonl``."""
    return [_record_from_json(obj, f"{path}, line {n}") for n, obj in iter_jsonl(path)]


def read_records(path: str | Path) -> list[QARecord]:
    """Records from a paper-layout ``.parquet`` or a records ``.jsonl`` file."""
    path = Path(path)
    if path.suffix == ".parquet":
        return read_parquet(path)
    if path.suffix in (".jsonl", ".gz"):
        return read_jsonl(path)
    raise DataError(
        f"{path}: unknown extension {path.suffix!r}",
        hint="use .parquet (the paper's layout) or .jsonl (one record per line)",
    )


# Writing ------------------------------------------------------------------------------------------


def paper_schema(extra_type: Any = None) -> Any:  # -> pyarrow.Schema (pyarrow imported lazily)
    """The paper's columns and Arrow types; ``extra_type`` replaces ``extra_info``'s struct type."""
    import pyarrow as pa

    return pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("ground_truth", pa.string()), ("style", pa.string())])),
            (
                "extra_info",
                extra_type or pa.struct([("index", pa.string()), ("split", pa.string())]),
            ),
        ]
    )


def records_to_table(records: Iterable[QARecord]) -> Any:  # -> pyarrow.Table
    """The records as an Arrow table in the paper's layout (ids must be unique)."""
    import pyarrow as pa

    records = list(records)
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise DataError(f"duplicate id {r.id!r}: every row needs its own extra_info.index")
        seen.add(r.id)
    rows = [r.to_row() for r in records]
    extra_type = None
    if any(r.extra for r in records):
        try:
            inferred = pa.array([row["extra_info"] for row in rows]).type
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(
                f"extra fields of different types across records: {exc}",
                hint="give each extra field one type in every record",
            ) from exc
        others = [f for f in inferred if f.name not in _RESERVED_EXTRA]
        extra_type = pa.struct([("index", pa.string()), ("split", pa.string()), *others])
    return pa.Table.from_pylist(rows, schema=paper_schema(extra_type))


def write_parquet(records: Iterable[QARecord], path: str | Path) -> Path:
    """Write records as the paper's parquet; the file appears whole or not at all."""
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = records_to_table(records)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def write_jsonl(records: Iterable[QARecord], path: str | Path) -> Path:
    """Write one record per line (UTF-8, not ASCII-escaped)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def write_records(records: Iterable[QARecord], path: str | Path) -> Path:
    """Write ``.parquet`` (the paper's layout) or ``.jsonl`` by the file's extension."""
    path = Path(path)
    if path.suffix == ".parquet":
        return write_parquet(records, path)
    if path.suffix == ".jsonl":
        return write_jsonl(records, path)
    raise DataError(
        f"{path}: unknown extension {path.suffix!r}",
        hint="use .parquet (the paper's layout) or .jsonl (one record per line)",
    )
