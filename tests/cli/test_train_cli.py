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


def test_step_rows_keep_steps_and_evaluations_only():
    from deepresearcher.train.grpo import step_row

    logs = {"reward": -0.5, "rollout/f1": 0.25, "kl": 0.01, "loss": 0.3, "flag": True}
    assert step_row(logs, 3) == {"step": 3, "mode": "train", "reward": -0.5,
                                 "rollout/f1": 0.25, "kl": 0.01}
    assert step_row({"eval_reward": 0.1, "eval_rollout/f1": 0.4}, 10) == {
        "step": 10, "mode": "eval", "reward": 0.1, "rollout/f1": 0.4}
    assert step_row({"train_runtime": 50.0, "train_loss": 0.0}, 4) is None


def test_step_lines_show_progress_time_split_and_eta():
    import io

    from rich.console import Console

    from deepresearcher.cli.train import StepLines

    sink = io.StringIO()
    lines = StepLines(Console(file=sink, width=200))
    now = iter([100.0, 130.0, 160.0, 190.0])
    lines.clock = lambda: next(now)
    lines.started = lines.clock()
    row = {"mode": "train", "total": 10, "reward": -0.25, "rollout/f1": 0.5,
           "rollout/format_error_rate": 0.125, "step_time": 30.0, "time/generation": 20.0,
           "time/tools": 2.5}
    lines({**row, "step": 5})  # a run resumed from checkpoint-4: its first step is 5
    lines({**row, "step": 6})
    lines({"mode": "eval", "step": 6, "reward": 0.5, "rollout/f1": 0.75})
    lines({**row, "step": 10})
    out = sink.getvalue().splitlines()
    assert out[0].startswith("step    5/10  reward -0.250  F1 0.500  format errors 12%")
    assert "30.0 s (generation 20.0, tools 2.5)" in out[0]
    assert out[0].endswith("ETA 2 min 30 s")  # 30 s for 1 step since the resume, 5 to go
    assert out[1].endswith("ETA 2 min 00 s")
    assert out[2] == "eval at step 6: reward +0.500  F1 0.750"
    assert "ETA" not in out[3]


def test_every_command_summary_is_one_line():
    """The command lists of --help show each command's first docstring paragraph as written
    (typer's rich mode keeps its line breaks): it must be a single line."""
    import inspect

    import typer

    from deepresearcher.cli.main import app

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            first = inspect.cleandoc(sub.help or "").split("\n\n")[0]
            yield [*path, name], first
            yield from walk(sub, [*path, name])

    summaries = list(walk(typer.main.get_command(app), []))
    assert len(summaries) > 20
    assert [path for path, first in summaries if "\n" in first or not first] == []
