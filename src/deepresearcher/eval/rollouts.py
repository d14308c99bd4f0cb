"""Reading finished rollouts for re-scoring: our trajectory or results JSONL, and the original
DeepResearcher's ``rollout_step_*.json``.

The original writes a JSON list of ``{"idx", "question", "message_str", ...}``, ``message_str``
being the whole rendered conversation. Only its last assistant turn is scored (PROTOCOL.md §8):
the prediction is that turn's ``<answer>``; no answer there, or unbalanced tags in the response
(the original's format check), is a format failure, which scores 0. ``idx`` is the row of the
data file the question came from; the question text is checked against that row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearcher.data.paper_format import QARecord
from deepresearcher.errors import DataError
from deepresearcher.protocol.metrics import extract_answer, tags_balanced

ASSISTANT_START = "<|im_start|>assistant"
TURN_END = "<|im_end|>"


@dataclass
class Rollout:
    """One episode to score: who asked what, how it ended, what it answered."""

    question_id: str
    sample: int
    question: str
    data_source: str
    golds: list[str]
    status: str
    prediction: str | None
    usage: dict[str, Any] = field(default_factory=dict)
    turns: int = 0
    seconds: float = 0.0
    error: str | None = None
    trajectory: dict[str, Any] | None = None


def last_assistant_answer(message_str: str) -> tuple[str, str | None, int]:
    """``(status, prediction, assistant turns)`` of a rendered conversation.

    The response is everything from the first assistant turn on (the system prompt's own tag
    examples must not count); the prediction is the ``<answer>`` of the last assistant turn.
    """
    first = message_str.find(ASSISTANT_START)
    if first < 0:
        return "format_error", None, 0
    response = message_str[first:]
    turns = response.count(ASSISTANT_START)
    last = response[response.rfind(ASSISTANT_START) + len(ASSISTANT_START):]
    end = last.find(TURN_END)
    last = last if end < 0 else last[:end]
    answer = extract_answer(last)
    if answer is None or not tags_balanced(response):
        return "format_error", None, turns
    return "answered", answer, turns


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def read_original(path: Path, records: Sequence[QARecord] | None) -> list[Rollout]:
    """Rollouts from the original's ``rollout_step_*.json`` (``records``: the data file's rows)."""
    if records is None:
        raise DataError(f"{path}: the original's rollout files carry no gold answers",
                        hint="pass the data file they were sampled from with --data")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of rollouts")
    by_question = {_norm(r.question): r for r in records}
    seen: dict[str, int] = {}
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}, item {i}"
        if not isinstance(entry, dict) or "message_str" not in entry:
            raise DataError(f"{where}: not a rollout (expected idx, question, message_str)")
        message = entry["message_str"]
        if not isinstance(message, str):
            raise DataError(f"{where}: message_str is not a string")
        record = _match(entry, records, by_question, where)
        status, prediction, turns = last_assistant_answer(message)
        sample = seen.get(record.id, 0)
        seen[record.id] = sample + 1
        out.append(Rollout(record.id, sample, record.question, record.data_source,
                           list(record.golds), status, prediction, turns=turns))
    return out


def _match(entry: dict[str, Any], records: Sequence[QARecord], by_question: dict[str, QARecord],
           where: str) -> QARecord:
    """The data row of an original rollout: row ``idx``, confirmed by the question text."""
    idx, question = entry.get("idx"), entry.get("question")
    if isinstance(idx, int) and not isinstance(idx, bool) and 0 <= idx < len(records):
        row = records[idx]
        if not isinstance(question, str) or _norm(question) == _norm(row.question):
            return row
    if isinstance(question, str) and _norm(question) in by_question:
        return by_question[_norm(question)]
    raise DataError(f"{where}: no row of the data file matches idx {idx!r} / question "
                    f"{str(question)[:80]!r}",
                    hint="pass the data file the rollouts were sampled from with --data")


def read_ours(path: Path, records: Sequence[QARecord] | None) -> list[Rollout]:
    """Rollouts from our trajectory JSONL or results JSONL (golds from ``records`` when given)."""
    from deepresearcher.agent.trajectory import read_jsonl
    from deepresearcher.eval.results import ResultStore

    golds_of = {r.id: r for r in records} if records is not None else {}
    with path.open("rb") as fh:
        first = next(((n, line) for n, line in enumerate(fh, 1) if line.strip()), None)
    if first is None:
        raise DataError(f"{path} holds no rollouts (the file is empty)")
    n, line = first
    try:
        head = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}, line {n}: not UTF-8 text (byte {exc.start + 1}); not a "
                        "rollout file?") from exc
    except ValueError as exc:
        raise DataError(f"{path}, line {n}: not valid JSON ({exc})") from exc
    out: list[Rollout] = []
    if isinstance(head, dict) and "key" in head and "scores" in head:
        for row in ResultStore(path).load(repair=False).values():
            out.append(_with_golds(Rollout(
                str(row["id"]), int(row.get("sample", 0)), row.get("question", ""),
                str(row.get("data_source")), list(row.get("golds") or []), str(row.get("status")),
                row.get("answer") if row.get("status") == "answered" else None,
                row.get("usage") or {}, int(row.get("turns") or 0), float(row.get("seconds") or 0),
                row.get("error"), row.get("trajectory")), golds_of, path))
        return out
    seen: dict[str, int] = {}
    for t in read_jsonl(path):
        qid = t.id.split("#", 1)[0]
        sample = seen.get(qid, 0)
        seen[qid] = sample + 1
        out.append(_with_golds(Rollout(
            qid, sample, t.question, t.data_source or "?", list(t.golds or []), t.status,
            t.answer if t.status == "answered" else None, t.usage.model_dump(), len(t.turns),
            t.seconds, t.error, t.model_dump(mode="json")), golds_of, path))
    return out


def _with_golds(r: Rollout, golds_of: dict[str, QARecord], path: Path) -> Rollout:
    record = golds_of.get(r.question_id)
    if record is not None:
        r.golds, r.data_source = list(record.golds), record.data_source
    if not r.golds:
        raise DataError(f"{path}: episode {r.question_id!r} has no gold answers",
                        hint="pass the data file with --data")
    return r


def read_rollouts(path: Path, records: Sequence[QARecord] | None) -> list[Rollout]:
    """Rollouts from any supported file, by its shape (a JSON list is the original's format)."""
    if not path.is_file():
        raise DataError(f"no such rollout file: {path}")
    with path.open("rb") as fh:
        head = fh.read(64).lstrip()
    rollouts = read_original(path, records) if head.startswith(b"[") else read_ours(path, records)
    if not rollouts:
        raise DataError(f"{path} holds no rollouts")
    return rollouts
