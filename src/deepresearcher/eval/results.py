"""The append-only results file of an evaluation run: one JSON line per finished (question, sample).

Each line is written with a single ``write`` on an ``O_APPEND`` descriptor and fsynced before the
question counts as done, so a run killed at any moment (SIGKILL included) loses at most the
questions in flight. A kill during a write can leave a torn last line (no newline): reading drops
it and truncates the file back to the last whole line, so the resumed run appends cleanly. A
malformed line anywhere else is corruption, not a kill, and is a ``DataError`` naming the line.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from deepresearcher.errors import DataError


def result_key(question_id: str, sample: int) -> str:
    """The key of one result line: the question id and the sample number."""
    return f"{question_id}#{sample}"


class ResultStore:
    """Reads and appends the lines of one results JSONL file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.torn_bytes = 0  # bytes of a torn last line dropped by the last load()

    def load(self, *, repair: bool = True) -> dict[str, dict[str, Any]]:
        """Every result by key (a later line for a key supersedes an earlier one).

        ``repair`` truncates a torn last line away (only a run that will append should repair).
        """
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        results: dict[str, dict[str, Any]] = {}
        end_of_good = 0
        lines = data.split(b"\n")
        for n, raw in enumerate(lines, start=1):
            is_last = n == len(lines)
            if is_last:
                # Bytes after the final newline: empty when the file ends cleanly, else a torn line.
                if raw.strip():
                    self.torn_bytes = len(raw)
                    if repair:
                        with self.path.open("r+b") as fh:
                            fh.truncate(end_of_good)
                            os.fsync(fh.fileno())
                break
            if raw.strip():
                try:
                    record = json.loads(raw)
                except ValueError as exc:
                    raise DataError(
                        f"{self.path}, line {n}: not valid JSON ({exc})",
                        hint="only the last line can be torn by a kill; this file was edited or "
                        "corrupted: remove the line or start a new --out",
                    ) from exc
                if not isinstance(record, dict) or "key" not in record:
                    raise DataError(f"{self.path}, line {n}: not a result record (no key)")
                results[str(record["key"])] = record
            end_of_good += len(raw) + 1
        return results

    def append(self, record: dict[str, Any]) -> None:
        """Append one result durably: one write of the whole line, then fsync."""
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(line)
                while view:  # a regular file takes it in one write; loop for the exotic case
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)


def result_record(
    *,
    question_id: str,
    sample: int,
    data_source: str,
    question: str,
    golds: list[str],
    status: str,
    answer: str | None,
    scores: dict[str, float],
    verdict: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    turns: int = 0,
    seconds: float = 0.0,
    error: str | None = None,
    trajectory: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One line of a results file. ``scores`` holds every string metric and, when judged,
    ``mbe``; ``verdict`` the judge's outcome and rationale; ``trajectory`` the episode in the
    trajectory schema (absent when re-scoring a file that has none)."""
    return {
        "key": result_key(question_id, sample),
        "id": question_id,
        "sample": sample,
        "data_source": data_source,
        "question": question,
        "golds": golds,
        "status": status,
        "answer": answer,
        "scores": scores,
        "judge": verdict,
        "usage": usage or {},
        "turns": turns,
        "seconds": seconds,
        "error": error,
        "trajectory": trajectory,
    }
