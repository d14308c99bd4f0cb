"""Files that are not what a command expects (binary, empty, not JSON Lines, a folder that is not
a run, an index or a world, malformed YAML): one clear line naming the file (and the line), exit
2, no traceback, through the real command line. Tool cache files: test_cache_cli.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "deepresearcher.cli.main", *args],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    (root / "binary.jsonl").write_bytes(b"\xff\xfe\x00\x01" + bytes(range(256)) * 8)
    (root / "empty.jsonl").write_text("")
    (root / "random.jsonl.gz").write_bytes(bytes(range(7, 256)) * 4)
    (root / "text.jsonl").write_text('{"id": "1", "question": "q?", "golden_answers": ["a"]}\n'
                                     "just some words\n")
    (root / "huge.jsonl").write_text('{"id": "1", "question": "' + "x" * (8 << 20) + "\n")
    (root / "results.jsonl").write_text('{"key": "a#0", "id": "a", "scores": {}}\nnot json\n')
    (root / "notes.txt").write_text("not a run\n")
    (root / "folder").mkdir()
    (root / "bad.yaml").write_text("name: [unclosed\n  model: : :\n")
    (root / "binary.yaml").write_bytes(b"\xb8\x00\xff" * 100)
    return root


CASES = [
    (["eval", "--data", "{bad}/binary.jsonl"], ["binary.jsonl, line 1: not UTF-8 text"]),
    (["eval", "--data", "{bad}/empty.jsonl"], ["empty.jsonl", "no questions"]),
    (["eval", "--data", "{bad}/random.jsonl.gz"], ["random.jsonl.gz: cannot be read",
                                                   "Not a gzipped file"]),
    (["eval", "--data", "{bad}/text.jsonl", "--data-source", "nq"],
     ["text.jsonl, line 2: not valid JSON"]),
    (["eval", "--data", "{bad}/huge.jsonl"], ["huge.jsonl, line 1: not valid JSON"]),
    (["eval", "score", "{bad}/binary.jsonl", "--out", "{out}"],
     ["binary.jsonl, line 1: not UTF-8 text"]),
    (["eval", "score", "{bad}/empty.jsonl", "--out", "{out}"], ["empty.jsonl holds no rollouts"]),
    (["eval", "score", "{bad}/results.jsonl", "--out", "{out}"],
     ["results.jsonl, line 2: not valid JSON"]),
    (["eval", "compare", "{bad}/folder", "{bad}/folder"], ["no protocol.json in", "folder"]),
    (["eval", "compare", "{bad}/notes.txt", "{bad}/folder"], ["notes.txt is not a run directory"]),
    (["index", "build", "{bad}/binary.jsonl", "--out", "{out}"], ["binary.jsonl", "1"]),
    (["index", "build", "{bad}/text.jsonl", "--out", "{out}"], ["text.jsonl", "1"]),
    (["search", "q", "--index", "{bad}/folder"], ["no search index at", "folder"]),
    (["world", "question", "{bad}/folder"], ["folder is not a generated world"]),
    (["train", "{bad}/bad.yaml", "--dry-run"], ["bad.yaml: not valid YAML (line 2, column 8"]),
    (["train", "{bad}/binary.yaml", "--dry-run"], ["binary.yaml: not UTF-8 text"]),
    (["sft", "{bad}/binary.jsonl", "--model", "m", "--out", "{out}"],
     ["binary.jsonl:1: not UTF-8 text"]),
    (["sft", "{bad}/text.jsonl", "--model", "m", "--out", "{out}"], ["text.jsonl:1"]),
]


@pytest.mark.parametrize(("args", "words"), CASES, ids=[" ".join(c[0][:2]) + f"-{i}"
                                                        for i, c in enumerate(CASES)])
def test_a_bad_file_is_one_clear_line_and_exit_2(bad: Path, tmp_path: Path, args: list[str],
                                                 words: list[str]) -> None:
    result = run(*(a.format(bad=bad, out=tmp_path / "out") for a in args))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and len(lines) <= 2, result.stderr
    assert all(w in errors[0] for w in words), errors[0]
