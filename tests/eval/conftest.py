"""Fixtures for the evaluation tests: a mini world with world.json, and a question file over it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eval_helpers import make_records

from deepresearcher.data.paper_format import write_records
from miniworld import write_mini_world


@pytest.fixture(scope="session")
def eval_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_mini_world(tmp_path_factory.mktemp("eval_world"))
    (root / "world.json").write_text(json.dumps({"site": "wiki"}), encoding="utf-8")
    return root


@pytest.fixture
def questions_file(tmp_path: Path) -> Path:
    return write_records(make_records(), tmp_path / "questions.parquet")
