"""The quickstart: a reduced run that must learn, its report files, resume, and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("trl")
pytest.importorskip("matplotlib")

from deepresearcher.errors import ConfigError, PolicyError
from deepresearcher.train.quickstart import (
    STAGES,
    Quickstart,
    QuickstartSettings,
    fast_settings,
)


def mean(values):
    return sum(values) / len(values)


# The learning run: the quickstart's own settings (seed 0, from the shipped pretrained base) with
# GRPO cut from 14 steps to 12. The base copies names, so the SFT start answers some held-out
# questions right (F1 well above 0; the random model scored 0.000 on every seed); GRPO must
# raise the reward, keep the rollouts well-formed and not lose what SFT reached. About 7 minutes on 2
# cores: marked slow (CI runs it; docs/quickstart.md has the numbers).
REDUCED_OVERRIDES = ("grpo.max_steps=12",)
# The plumbing run of the default suite: every stage for real, with tiny budgets (~30 s).
TINY = dict(entities=60, sft_steps=4, eval_questions=4, train_questions=8, vocab_size=2048)
TINY_OVERRIDES = (
    "grpo.max_steps=2",
    "grpo.questions_per_step=2",
    "grpo.rollouts_per_question=2",
    "agent.max_turns=3",
    "agent.max_tokens_per_turn=24",
)


def _run(out, settings):
    events = []
    result = Quickstart(out, settings, on_event=lambda k, d: events.append((k, d))).run()
    return out, result, events, settings


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "tiny"
    return _run(out, fast_settings(**TINY, overrides=TINY_OVERRIDES))


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "reduced"
    return _run(out, QuickstartSettings(seed=0, overrides=REDUCED_OVERRIDES))


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the module's fixture runs inside the test's time
def test_reduced_quickstart_learns(reduced):
    _, result, _, _ = reduced
    assert result.stages["model"].data["base"] == "pretrained"
    steps = result.stages["grpo"].data["steps"]
    assert len(steps) == 12
    # Held out, greedy: the SFT start copies names into its queries and answers from the page.
    assert result.before["f1"] > 0.1, result.before
    assert result.before["answered_rate"] > 0.8, result.before
    rewards = [s["reward"] for s in steps]
    first, last = mean(rewards[:3]), mean(rewards[-3:])
    assert last > first + 0.05, f"GRPO did not raise the reward: {rewards}"
    # The base writes the format: sampled turns stay mostly well-formed through training.
    errors = [s["rollout/format_error_rate"] for s in steps]
    assert mean(errors) < 0.3 and max(errors[-3:]) < 0.5, f"rollout format errors: {errors}"
    # RL keeps what SFT reached (within two of the 45 held-out questions).
    assert result.after["f1"] > result.before["f1"] - 0.05, (result.before, result.after)


def test_report_files_exist_and_parse(tiny):
    out, result, events, _ = tiny
    report = json.loads((out / "report.json").read_text())
    assert set(report["stage_seconds"]) == set(STAGES) - {"report"}  # written by "report"
    for side in ("before", "after"):
        m = report[side]
        assert m["episodes"] == result.stages["expert"].data["eval_questions"] > 0
        assert 0.0 <= m["f1"] <= 1.0 and 0.0 <= m["format_error_rate"] <= 1.0
    assert len(report["grpo_steps"]) == 2 and "reward" in report["grpo_steps"][0]
    assert report["delta"]["f1"] == pytest.approx(
        report["after"]["f1"] - report["before"]["f1"], abs=1e-3
    )
    png = (out / "reward_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    for heading in (
        "## Before and after RL",
        "## Reward curve",
        "## Example episodes",
        "**Question:**",
        "**Gold:**",
    ):
        assert heading in md
    import re

    assert re.search(r"; loss \d+\.\d{3} -> \d+\.\d{3}\n", md), "SFT losses rounded"
    for name in ("eval_before", "eval_after"):
        lines = (out / "trajectories" / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == report[name.split("_")[1]]["episodes"]
        assert json.loads(lines[0])["question"]
    # The evaluation is on held-out test questions, never on the ones trained on.
    train = {json.loads(x)["question"] for x in (out / "data/train.jsonl").read_text().splitlines()}
    held = {json.loads(x)["question"] for x in (out / "data/eval.jsonl").read_text().splitlines()}
    assert held and not train & held
    assert list((out / "grpo" / "runs").rglob("events.out.tfevents.*"))
    kinds = [k for k, _ in events]
    assert kinds.count("stage_end") == len(STAGES) and "grpo_step" in kinds


def test_a_second_run_reuses_every_finished_stage(tiny):
    out, first, _, settings = tiny
    _, again, events, _ = _run(out, settings)
    skipped = [d["stage"] for k, d in events if k == "stage_skip"]
    assert skipped == [s for s in STAGES if s != "report"]
    assert again.after == first.after
    # Another GRPO setting reruns GRPO and what follows, not the stages before it.
    changed = fast_settings(**TINY, overrides=(*TINY_OVERRIDES, "grpo.max_steps=1"))
    _, _, events, _ = _run(out, changed)
    ran = [d["stage"] for k, d in events if k == "stage_start"]
    assert ran == ["grpo", "eval_after", "report"]
    # An SFT setting keeps the world, the model and the demonstrations.
    changed = fast_settings(**{**TINY, "sft_steps": 3}, overrides=TINY_OVERRIDES)
    _, _, events, _ = _run(out, changed)
    ran = [d["stage"] for k, d in events if k == "stage_start"]
    assert ran == ["sft", "eval_before", "grpo", "eval_after", "report"]


def test_progress_outside_a_terminal_is_one_line_per_event(tiny):
    """In a log file or a pipe the CLI prints plain lines as the run goes (live bars render only
    at the end there, cut to 80 columns): a start and a result line per stage, in order, and a
    line per GRPO step."""
    import io

    from rich.console import Console

    from deepresearcher.cli.quickstart import PlainStages
    from deepresearcher.train.quickstart import STAGE_TITLES

    _, _, events, _ = tiny
    sink = io.StringIO()
    console = Console(file=sink, width=80)
    assert not console.is_terminal
    with PlainStages(console) as stages:
        for kind, data in events:
            stages.on_event(kind, data)
    lines = sink.getvalue().splitlines()
    assert all(len(line) > 0 and "…" not in line for line in lines)
    done = [next(i for i, line in enumerate(lines) if f"{STAGE_TITLES[s]}: done" in line)
            for s in STAGES]
    assert done == sorted(done)
    assert any("eval before RL: done, F1 " in line for line in lines)
    steps = [line for line in lines if "grpo step" in line]
    assert len(steps) == len([k for k, _ in events if k == "grpo_step"]) > 0
    assert "(1/2)" in steps[0]


def test_ctrl_c_says_which_stages_a_rerun_reuses(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from sigint import interruptible

    proc = subprocess.Popen(
        [sys.executable, "-m", "deepresearcher.cli.main", "quickstart", "--out",
         str(tmp_path / "qs"), "--fast"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}, preexec_fn=interruptible)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "SFT warm start: started" in line:
            break
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    assert ("interrupted; finished stages (world, tokenizer + model, expert trajectories) are "
            "reused") in rest
    assert "Traceback" not in rest


def test_refuses_a_folder_that_is_not_a_quickstart(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not a quickstart"):
        Quickstart(tmp_path, QuickstartSettings()).run()


def test_bad_override_fails_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"grpo\.lr"):
        Quickstart(tmp_path / "q", QuickstartSettings(overrides=("grpo.lr=1",))).run()
    assert not (tmp_path / "q" / "world").exists()


def test_cli_help_lists_the_options():
    import typer
    from typer.testing import CliRunner

    from deepresearcher.cli.quickstart import register

    app = typer.Typer()
    register(app)

    @app.command("other")
    def other() -> None:
        """A second command keeps typer in multi-command mode (``quickstart`` stays a subcommand)."""

    result = CliRunner().invoke(app, ["quickstart", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--out", "--seed", "--fast", "--resume", "--base-model", "--device", "--sft-lr"):
        assert option in result.output


def test_report_renders_a_trajectory_readably(tmp_path):
    from deepresearcher.agent.trajectory import ActionRecord, ToolRecord, Trajectory, Turn
    from deepresearcher.train.quickstart import pick_examples, plot_curve, render_trajectory

    t = Trajectory(
        id="1",
        question="when was x founded",
        golds=["1880"],
        profile="p",
        model="m",
        status="answered",
        answer="1880",
        metrics={"f1": 1.0, "em": 1.0},
        turns=[
            Turn(
                index=0,
                text="<think>s</think>",
                observation="[{'a': 1}]",
                action=ActionRecord(
                    type="tool_call",
                    think="search it",
                    name="web_search",
                    arguments={"query": ["x founded"]},
                ),
                tool=ToolRecord(name="web_search"),
            ),
            Turn(
                index=1,
                text="<think>a</think>",
                action=ActionRecord(type="answer", think="found", answer="1880"),
            ),
        ],
    )
    bad = t.model_copy(
        update={
            "id": "2",
            "status": "format_error",
            "answer": None,
            "metrics": {"f1": 0.0, "em": 0.0},
        }
    )
    assert [x.id for x in pick_examples([bad, t])] == ["1", "2"]
    # All wrong: the longest episode, then a failure of another kind, never one episode twice.
    wrong = t.model_copy(update={"id": "3", "metrics": {"f1": 0.0, "em": 0.0}, "answer": "1"})
    assert [x.id for x in pick_examples([wrong, bad])] == ["3", "2"]
    assert [x.id for x in pick_examples([wrong])] == ["3"]
    text = render_trajectory(t)
    assert "**search**" in text and "**answer:** 1880" in text and "**Gold:** 1880" in text
    plot_curve(
        [{"step": 1, "reward": -1.0, "rollout/f1": 0.0}, {"step": 2, "reward": 0.5}],
        tmp_path / "c.png",
    )
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_settings_round_trip():
    data = fast_settings(seed=3).to_json()
    assert data["seed"] == 3 and data["fast"] and isinstance(data["overrides"], list)


def test_the_pretrained_base_is_the_default_with_its_own_defaults():
    from deepresearcher.train.quickstart import (
        PRETRAINED_OVERRIDES,
        PRETRAINED_SFT_STEPS,
        TINY_SFT_STEPS,
    )

    pretrained, scratch = QuickstartSettings(), QuickstartSettings(tiny="random")
    assert pretrained.pretrained_tiny and not scratch.pretrained_tiny
    assert pretrained.effective_sft_steps == PRETRAINED_SFT_STEPS
    assert scratch.effective_sft_steps == TINY_SFT_STEPS
    assert fast_settings().effective_sft_steps == PRETRAINED_SFT_STEPS // 2
    assert QuickstartSettings(sft_steps=7).to_json()["sft_steps"] == 7
    recipe = Quickstart("unused", pretrained).recipe()
    for override in PRETRAINED_OVERRIDES:
        key, value = override.split("=")
        section, name = key.split(".")
        assert float(getattr(getattr(recipe, section), name)) == float(value)
    # What the user says wins.
    mine = Quickstart("unused", QuickstartSettings(overrides=("grpo.learning_rate=3e-5",)))
    assert mine.recipe().grpo.learning_rate == 3e-5
    assert Quickstart("unused", scratch).recipe().agent.temperature == 1.0
    with pytest.raises(ConfigError, match="unknown tiny model"):
        Quickstart("unused", QuickstartSettings(tiny="huge")).recipe()


def test_the_model_stage_writes_the_shipped_base_and_sft_refuses_a_changed_one(tiny, tmp_path):
    from deepresearcher.models.shipped import ChecksumError, read_card, verify

    out, result, _, _ = tiny
    model = result.stages["model"].data
    card = read_card()
    assert model["base"] == "pretrained" and model["sha256"] == card["files"]["model.safetensors"]
    assert verify(out / "model") == card
    sft = result.stages["sft"].data
    assert sft["copy_rows"] == round(0.25 * result.stages["expert"].data["episodes"])
    # A base altered on disk is not trained on.
    copy = tmp_path / "qs"
    shutil.copytree(out, copy)
    with (copy / "model" / "model.safetensors").open("r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\x00" * 8)
    (copy / "stages" / "sft.json").unlink()
    with pytest.raises(ChecksumError, match=r"model\.safetensors"):
        Quickstart(copy, result.settings).run()


def test_a_base_model_replaces_the_tiny_model(tiny_model_dir, tmp_path):
    """--base-model: the expert, SFT and GRPO start from it, with its own tokenizer."""
    from transformers import AutoTokenizer

    settings = fast_settings(
        **{**TINY, "base_model": str(tiny_model_dir), "sft_lr": 1e-3}, overrides=TINY_OVERRIDES
    )
    out, result, _, _ = _run(tmp_path / "qs", settings)
    model = result.stages["model"].data
    assert model["base_model"] == str(tiny_model_dir) and model["model_type"] == "qwen2"
    assert not (out / "model").exists()  # nothing of the tiny model's is built
    base = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model["vocab"] == len(base)
    expert = json.loads((out / "expert.jsonl").read_text().splitlines()[0])
    prompt = expert["tokens"]["prompt_ids"]
    assert base.decode(prompt).startswith("<|im_start|>system")  # the base's own tokenizer
    assert AutoTokenizer.from_pretrained(out / "sft").get_vocab() == base.get_vocab()
    assert (out / "grpo" / "final" / "model.safetensors").is_file()
    md = (out / "report.md").read_text()
    assert f"{tiny_model_dir} (vocabulary {len(base)})" in md
    # Another base model reruns everything from the model stage on; the world is kept.
    other = tmp_path / "other-base"
    shutil.copytree(tiny_model_dir, other)
    changed = fast_settings(
        **{**TINY, "base_model": str(other), "sft_lr": 1e-3}, overrides=TINY_OVERRIDES
    )
    _, _, events, _ = _run(out, changed)
    assert [d["stage"] for k, d in events if k == "stage_start"] == list(STAGES[1:])


def test_a_base_model_without_a_chat_template_is_refused(tiny_model_dir, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    for name in ("chat_template.jinja", "chat_template.json"):
        (plain / name).unlink(missing_ok=True)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    settings = fast_settings(**{**TINY, "base_model": str(plain)}, overrides=TINY_OVERRIDES)
    with pytest.raises(ConfigError, match="no chat template"):
        Quickstart(tmp_path / "qs", settings).run()
    missing = fast_settings(**{**TINY, "base_model": str(tmp_path / "nope")})
    with pytest.raises(PolicyError, match="nope") as raised:
        Quickstart(tmp_path / "qs2", missing).run()
    assert raised.value.kind == "model_not_found"


def test_an_unknown_device_fails_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        Quickstart(tmp_path / "q", QuickstartSettings(device="tpu")).run()
    assert not (tmp_path / "q" / "world").exists()


def test_cuda_where_there_is_none_fails_before_any_work(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        Quickstart(tmp_path / "q", QuickstartSettings(device="cuda")).run()
    assert not (tmp_path / "q" / "world").exists()


def test_a_base_model_gets_fine_tuning_learning_rates():
    from deepresearcher.cli.quickstart import quickstart_settings
    from deepresearcher.train.quickstart import (
        BASE_MODEL_SFT_LR,
        PRETRAINED_SFT_LR,
        TINY_SFT_LR,
    )

    common = dict(seed=1, fast=False, device="cuda", sft_steps=None, sft_lr=None)
    tiny = quickstart_settings(base_model=None, overrides=["grpo.max_steps=3"], **common)
    assert tiny.effective_sft_lr == PRETRAINED_SFT_LR and tiny.overrides == ("grpo.max_steps=3",)
    assert tiny.device == "cuda" and tiny.base_model is None and tiny.pretrained_tiny
    scratch = quickstart_settings(base_model=None, overrides=[], from_scratch=True, **common)
    assert scratch.effective_sft_lr == TINY_SFT_LR and not scratch.pretrained_tiny
    assert Quickstart("unused", scratch).recipe().grpo.learning_rate == 5e-4
    with pytest.raises(ConfigError, match="exclude each other"):
        quickstart_settings(base_model="m", overrides=[], from_scratch=True, **common)
    # The same defaults from the command line and from Python.
    for base in (
        quickstart_settings(base_model="Qwen/Qwen2.5-0.5B-Instruct", overrides=[], **common),
        QuickstartSettings(base_model="Qwen/Qwen2.5-0.5B-Instruct", device="cuda"),
    ):
        assert base.effective_sft_lr == BASE_MODEL_SFT_LR
        assert base.to_json()["sft_lr"] == BASE_MODEL_SFT_LR  # what the report and stage key see
        recipe = Quickstart("unused", base).recipe()
        assert recipe.grpo.learning_rate == 1e-6 and recipe.backend.device == "cuda"
        # A pretrained model's 64 episodes a step do not fit one micro-batch.
        assert recipe.grpo.per_device_batch == 8 and recipe.backend.gradient_checkpointing
        assert recipe.backend.dtype == "auto"  # bfloat16 where the GPU supports it
    assert Quickstart("unused", QuickstartSettings()).recipe().backend.dtype == "float32"
    # What the user says wins over the base model's defaults.
    mine = quickstart_settings(
        base_model="m", overrides=["grpo.learning_rate=3e-6"], **{**common, "sft_lr": 2e-5}
    )
    assert mine.effective_sft_lr == 2e-5
    assert Quickstart("unused", mine).recipe().grpo.learning_rate == 3e-6
