"""``deepresearcher train``: recipe errors are one clear line, before any work."""

from __future__ import annotations

import subprocess
import sys

import yaml


def train(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepresearcher.cli.main", "train", *args],
                          capture_output=True, text=True, timeout=120)


def test_dry_run_prints_the_resolved_recipe(tmp_path):
    result = train("quickstart-cpu", "grpo.learning_rate=3e-4", "agent.max_turns=2", "--dry-run")
    assert result.returncode == 0, result.stderr
    recipe = yaml.safe_load(result.stdout)
    assert recipe["grpo"]["learning_rate"] == 3e-4 and recipe["agent"]["max_turns"] == 2


def test_unknown_key_fails_with_one_line_and_a_hint():
    result = train("quickstart-cpu", "grpo.learnin_rate=1")
    assert result.returncode == 2
    assert "grpo.learnin_rate: unknown key" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_world_fails_before_loading_anything(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: nowhere\ntools: {world: nope}\ndata: {train: q.parquet}\n",
                      encoding="utf-8")
    result = train(str(recipe))
    assert result.returncode == 2
    assert "not a world directory" in result.stderr and "Traceback" not in result.stderr


def test_usage_errors_are_one_message_not_a_traceback():
    """A missing or extra argument is click's usage message and exit code 2, whichever click
    (its own package, or the copy inside typer) raised it."""
    for args in (["model", "tiny", "surplus"], ["quickstart", "--device"], ["train"]):
        result = subprocess.run([sys.executable, "-m", "deepresearcher.cli.main", *args],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert "Usage:" in result.stderr or "Error" in result.stderr, (args, result.stderr)
