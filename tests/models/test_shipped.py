"""The pretrained tiny base that ships with the package: its card, its checksums, writing it out,
and that it copies names of a world it was never trained on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("transformers")

from deepresearcher.cli.main import app
from deepresearcher.models.shipped import (
    SHIPPED_DIR,
    ChecksumError,
    read_card,
    render_card,
    ship,
    verify,
    write_pretrained,
)

EXPECTED_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


def test_the_shipped_card_lists_every_model_file_with_its_checksum():
    card = verify()
    assert set(card["files"]) >= EXPECTED_FILES
    on_disk = {p.name for p in SHIPPED_DIR.iterdir() if p.is_file()}
    assert on_disk == set(card["files"]) | {"card.json", "README.md"}
    # What a model card must say: data, seeds, steps, time, probe figures.
    assert card["worlds"]["training"][0] >= 1_000_000
    assert card["worlds"]["probe"] not in card["worlds"]["training"]
    assert card["steps"] > 0 and card["tokens"] > 0 and card["seconds"] > 0
    assert 0 < card["parameters"] <= 5_000_000
    assert {"name_copy_greedy", "query_greedy", "format_ok", "action_exact"} <= set(card["probe"])
    readme = (SHIPPED_DIR / "README.md").read_text(encoding="utf-8")
    assert readme == render_card(card)
    assert card["files"]["model.safetensors"] in readme


def test_writing_it_out_gives_a_loadable_verified_model(tmp_path):
    from transformers import AutoModelForCausalLM

    from deepresearcher.agent.policy import load_tokenizer

    out = tmp_path / "base"
    card = write_pretrained(out)
    assert verify(out) == card
    model = AutoModelForCausalLM.from_pretrained(out)
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    tokenizer = load_tokenizer(str(out))
    assert len(tokenizer) == card["vocab"] and tokenizer.chat_template
    assert not list(tmp_path.glob(".base-*")), "no temporary folder is left behind"


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_file_is_named_and_nothing_loads(tmp_path, damage):
    out = tmp_path / "base"
    write_pretrained(out)
    weights = out / "model.safetensors"
    data = weights.read_bytes()
    if damage == "flip":
        weights.write_bytes(data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
    elif damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    else:
        weights.unlink()
    with pytest.raises(ChecksumError) as caught:
        verify(out)
    assert caught.value.path == weights and "model.safetensors" in str(caught.value)
    # Written out again from a damaged source: refused before anything is copied.
    with pytest.raises(ChecksumError):
        write_pretrained(tmp_path / "again", source=out)
    assert not (tmp_path / "again").exists()


def test_a_card_naming_a_file_outside_its_folder_is_refused(tmp_path):
    out = tmp_path / "base"
    write_pretrained(out)
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    card["files"]["../secret"] = "0" * 64
    (out / "card.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ChecksumError, match="outside its folder"):
        read_card(out)
    (out / "card.json").write_bytes(b" " * (2 << 20))
    with pytest.raises(ChecksumError, match="larger than a model card"):
        read_card(out)
    (out / "card.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ChecksumError, match="not a readable model card"):
        verify(out)


def test_a_folder_with_files_is_not_overwritten(tmp_path):
    from deepresearcher.errors import ConfigError

    out = tmp_path / "base"
    out.mkdir()
    (out / "mine.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(ConfigError, match="not an empty folder"):
        write_pretrained(out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_ship_makes_a_pretraining_run_the_shipped_base(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(SHIPPED_DIR, run / "final")
    card = read_card()
    (run / "final" / "card.json").unlink()
    (run / "final" / "README.md").unlink()
    run_card = {**card, "files": {f"final/{k}": v for k, v in card["files"].items()}}
    (run / "card.json").write_text(json.dumps(run_card), encoding="utf-8")
    shipped = ship(run, tmp_path / "dest")
    assert shipped == card
    assert verify(tmp_path / "dest") == card
    # A run whose weights changed after its card was written does not ship.
    with (run / "final" / "model.safetensors").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ChecksumError):
        ship(run, tmp_path / "dest2")
    assert not (tmp_path / "dest2").exists()


def test_the_command_writes_it_and_refuses_random_model_options(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["model", "tiny", "--pretrained", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "checksums verified" in " ".join(result.output.split())
    assert verify(tmp_path / "m")["files"] == read_card()["files"]
    refused = subprocess.run(
        [sys.executable, "-m", "deepresearcher.cli.main", "model", "tiny", "--pretrained", "--seed", "3",
         "--out", str(tmp_path / "n")], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--seed" in refused.stderr, refused.stderr
    assert not (tmp_path / "n").exists()


def test_it_copies_names_of_a_world_it_never_saw():
    """The skill it ships for: names of a fresh world (a seed no pretraining used), twice among
    random tokens, the second copied token for token."""
    from transformers import AutoModelForCausalLM

    from deepresearcher.agent.policy import load_tokenizer
    from deepresearcher.models.curriculum import copy_tokens
    from deepresearcher.models.probe import Probe, model_next_tokens, name_rows
    from deepresearcher.world import generate_world

    card = read_card()
    fresh = 3_000_017
    assert fresh not in card["worlds"]["training"] and fresh != card["worlds"]["probe"]
    tokenizer = load_tokenizer(str(SHIPPED_DIR))
    names = [e.name for e in generate_world(fresh, 80).entities]
    rows = name_rows(names, tokenizer, copy_tokens(tokenizer), seed=fresh)
    assert len(rows) >= 40
    model = AutoModelForCausalLM.from_pretrained(SHIPPED_DIR)
    token_accuracy, whole = Probe.row_scores(rows, model_next_tokens(model))
    assert token_accuracy > 0.9 and whole > 0.8, (token_accuracy, whole)
