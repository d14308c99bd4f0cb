"""``deepresearcher model pretrain``: the shared tokenizer, the curriculum's rows, the probe, and
real tiny runs that checkpoint, stop, resume and refuse other settings."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl.chat_template_utils")

from deepresearcher.errors import ConfigError
from deepresearcher.models.curriculum import (
    TRAIN_SEED_START,
    Row,
    copy_tokens,
    long_copy_row,
    shared_tokenizer,
    short_copy_row,
    world_corpus,
    world_rows,
)
from deepresearcher.models.pretrain import (
    PretrainInterrupted,
    pretrain,
    settings_with,
)
from sigint import interruptible

# A run of seconds: a 1,024-token tokenizer over two small worlds, a few steps a stage.
TINY = (
    "vocab_size=1024", "tokenizer_worlds=2", "worlds=2", "entities=100", "world_questions=12",
    "probe_episodes=4", "probe_turns=3", "short_length=32", "long_length=128",
    "text_length=128", "log_every=1",
    "copy_short.rows=short:8", "copy_short.steps_max=4", "copy_short.probe_every=2",
    "copy_long.rows=long:1,text:1", "copy_long.steps_max=3", "copy_long.probe_every=3",
    "mix.rows=long:1,text:1,expert:2", "mix.steps_max=3", "mix.probe_every=3",
)
STEPS = 4 + 3 + 3


def run_tiny(out: Path, *extra: str, prepared: Path | None = None, **kwargs: Any) -> Any:
    """A tiny run into ``out``; ``prepared``: a finished tiny run whose tokenizer and world data
    are reused (their settings differ at most in the stages), so only the training runs."""
    settings = settings_with([*TINY, *extra])
    if prepared is not None and not out.exists():
        out.mkdir(parents=True)
        for name in ("tokenizer", "data"):
            shutil.copytree(prepared / name, out / name)
        (out / "settings.json").write_text(json.dumps(settings.to_json()))
    kwargs.setdefault("threads", 1)
    return pretrain(settings, out, device="cpu", **kwargs)


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run, uninterrupted."""
    out = tmp_path_factory.mktemp("pretrain") / "reference"
    run_tiny(out)
    return out


@pytest.fixture(scope="session")
def tokenizer(reference: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(reference / "tokenizer")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# The shared tokenizer ------------------------------------------------------------------------------


def test_the_shared_tokenizer_spells_names_of_worlds_it_never_saw(tmp_path):
    from deepresearcher.world import generate_world

    seeds = [TRAIN_SEED_START, TRAIN_SEED_START + 1]
    tok = shared_tokenizer(tmp_path / "tok", seeds, entities=100, vocab_size=1024)
    trained = {i for seed in seeds
               for ids in tok(world_corpus(seed, 100), add_special_tokens=False)["input_ids"]
               for i in ids}
    for held_out in (0, 7, 2_000_000):  # the quickstart's seeds and the probe's
        names = [e.name for e in generate_world(held_out, 100).entities]
        pieces = []
        for name in names:
            ids = tok(" " + name, add_special_tokens=False)["input_ids"]
            assert tok.decode(ids) == " " + name  # byte-level: nothing is unknown
            assert len(ids) >= 2, name  # spelled from pieces, not memorised whole
            pieces += ids
        known = sum(i in trained for i in pieces) / len(pieces)
        assert known > 0.98, known  # pieces the training text itself is made of


# Rows -----------------------------------------------------------------------------------------------


def copies(row: Row) -> list[tuple[int, int, int]]:
    """(start, end, distance back) of each scored run: the run plus the token before it (the
    copy's given first token) repeats the span ``distance`` tokens earlier."""
    found, i = [], 0
    while i < len(row.mask):
        if not row.mask[i]:
            i += 1
            continue
        end = i
        while end < len(row.mask) and row.mask[end]:
            end += 1
        first = i - 1
        span = row.ids[first:end]
        back = next(d for d in range(len(span), first + 1)
                    if row.ids[first - d:end - d] == span)
        found.append((first, end, back))
        i = end
    return found


def test_short_copy_rows_score_only_the_repeat():
    rng, tokens = random.Random(0), range(3, 1000)
    for _ in range(200):
        row = short_copy_row(rng, 64, tokens)
        assert len(row.ids) == len(row.mask) == 64 and row.kind == "copy"
        assert all(t in tokens for t in row.ids)
        [(first, end, back)] = copies(row)
        span = end - first
        assert 4 <= span <= 24 and back == span  # repeated right after itself
        assert row.scored == span - 1  # the first token of the repeat is not scored


def test_long_copy_rows_cover_every_distance_of_an_episode():
    rng, tokens = random.Random(0), range(3, 4000)
    distances = []
    for _ in range(100):
        row = long_copy_row(rng, 1536, tokens)
        assert len(row.ids) == len(row.mask) == 1536
        found = copies(row)
        assert len(found) >= 10 and 0.2 < row.scored / 1536 < 0.4
        distances += [back for _, _, back in found]
    assert min(distances) < 8 and max(distances) > 1000
    short = sum(d <= 16 for d in distances) / len(distances)
    far = sum(d > 512 for d in distances) / len(distances)
    assert short > 0.08 and far > 0.15, (short, far)


def test_world_rows_are_the_rows_sft_trains_on(tokenizer, tmp_path):
    from deepresearcher.agent.trajectory import read_jsonl
    from deepresearcher.train.expert import run_expert
    from deepresearcher.train.sft import sft_examples

    rows = world_rows(TRAIN_SEED_START + 5, tokenizer, entities=100, style="terse",
                      question_types=("single_hop",), max_length=1536, limit=5,
                      keep=tmp_path / "world")
    assert rows.expert_count == rows.episodes == 5
    first = rows.expert_row(0)
    assert tokenizer.decode(first.ids[:1]) == "<|im_start|>"
    trained = tokenizer.decode([i for i, m in zip(first.ids, first.mask, strict=True) if m])
    assert "<tool_call>" in trained and "<answer>" in trained
    assert "<tool_response>" not in trained and "Research the question" not in trained
    # Text: the passages, each ended by <|endoftext|>.
    assert (rows.text == tokenizer.convert_tokens_to_ids("<|endoftext|>")).sum() > 100
    # The same episodes recorded the way the quickstart does give the same rows.
    from deepresearcher.models.curriculum import expert_config

    config, toolbox = expert_config(tmp_path / "world", seed=TRAIN_SEED_START + 5)
    questions = [json.loads(line) for line in
                 (tmp_path / "world" / "questions" / "train.jsonl").read_text().splitlines()]
    first_question = next(q for q in questions if q["question_type"] == "single_hop")
    run_expert(tmp_path / "world", "train", tokenizer=tokenizer, out=tmp_path / "e.jsonl",
               limit=questions.index(first_question) + 1, config=config, toolbox=toolbox,
               seed=TRAIN_SEED_START + 5, style="terse")
    expected = [t for t in read_jsonl(tmp_path / "e.jsonl")
                if t.question == first_question["question"]]
    [sft_row], _ = sft_examples(expected, max_length=1536)
    assert sft_row["input_ids"] == first.ids and sft_row["assistant_masks"] == first.mask


# The probe ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def probe(reference: Path, tokenizer: Any) -> Any:
    from deepresearcher.models.curriculum import WorldRows, expert_profile
    from deepresearcher.models.probe import Probe
    from deepresearcher.world import generate_world

    held = WorldRows.load(reference / "data" / "probe-2000000.npz")
    names = [e.name for e in generate_world(2_000_000, 100).entities]
    return Probe.build(held, tokenizer, expert_profile(), names=names, seed=2_000_000,
                       copy_tokens=copy_tokens(tokenizer), long_length=256, episodes=4,
                       format_turns=12)


def knows_the_future(rows: list[list[int]]) -> list[list[int]]:
    """Predicts every next token right: the figures' upper bound."""
    return [[*row[1:], 0] for row in rows]


def copies_by_content(rows: list[list[int]]) -> list[list[int]]:
    """A copier with no knowledge of the format: the token that followed the longest earlier
    match of the context's end (an induction head made exact)."""
    out = []
    for row in rows:
        guesses = []
        for t in range(len(row)):
            best, longest = 0, 0
            for j in range(t):
                n = 0
                while n <= j and n < 32 and row[j - n] == row[t - n]:
                    n += 1
                if n >= longest and n:
                    best, longest = row[j + 1], n
            guesses.append(best)
        out.append(guesses)
    return out


def test_the_probe_scores_a_perfect_copier_one_and_a_random_model_zero(probe, reference):
    from transformers import AutoModelForCausalLM

    from deepresearcher.models.probe import COPY_KINDS

    assert probe.episodes and {s.kind for e in probe.episodes for s in e.spans} == set(COPY_KINDS)
    perfect = probe.copy_scores(knows_the_future)
    assert all(value == 1.0 for value in perfect.values()), perfect
    for rows in (probe.short, probe.long, probe.names):
        assert probe.row_scores(rows, knows_the_future) == (1.0, 1.0)
    # Copying by content alone writes the query's name and the URL's slug (the answer is
    # spelled without the space it has in the page, so a pure copier may miss its tokens).
    content = probe.copy_scores(copies_by_content)
    assert content["query_greedy"] == 1.0 and content["url_tf"] > 0.9, content
    assert probe.row_scores(probe.short, copies_by_content)[0] == 1.0

    from deepresearcher.models.tiny import build_tiny_qwen2

    fresh = build_tiny_qwen2(reference.parent / "random", probe.tokenizer, hidden_size=128,
                             init_std=0.02)
    ten_steps = AutoModelForCausalLM.from_pretrained(reference / "final")
    for model in (fresh, ten_steps):
        figures = probe.run(model)
        for key in ("short_copy", "long_copy", "name_copy_greedy", "copy_tf", "copy_greedy",
                    "format_ok", "action_exact"):
            assert figures[key] < 0.05, (key, figures)
        assert 5.0 < figures["text_loss"] < 8.0


def test_the_format_probe_parses_turns_and_compares_actions(probe):
    from deepresearcher.models.probe import THINK

    tokenizer = probe.tokenizer
    expert_turns = []
    for episode in probe.episodes:
        ends = [t.prompt_end for t in episode.turns]
        for end in ends:
            stop = episode.ids.index(tokenizer.convert_tokens_to_ids("<|im_end|>"), end)
            expert_turns.append(episode.ids[end:stop])
    by_prompt = {tuple(prompt): turn for (prompt, _), turn in
                 zip(probe.turns, expert_turns, strict=False)}

    def expert(prompts: list[list[int]], budget: int) -> list[list[int]]:
        return [by_prompt[tuple(p)] for p in prompts]

    assert probe.format_scores(expert) == {"format_ok": 1.0, "action_exact": 1.0}

    def rewords(prompts: list[list[int]], budget: int) -> list[list[int]]:
        # A valid answer turn, but never the expert's action.
        return [tokenizer("\nHm.\n</think>\n<answer>nobody</answer>",
                          add_special_tokens=False)["input_ids"] for _ in prompts]

    assert probe.format_scores(rewords) == {"format_ok": 1.0, "action_exact": 0.0}
    assert probe.profile.parse(THINK + "no tags").__class__.__name__ == "FormatError"


# Runs ------------------------------------------------------------------------------------------------


def test_a_run_writes_checkpoints_the_final_model_and_its_card(reference):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    card = json.loads((reference / "card.json").read_text())
    assert card["finished"] and card["stopped"] == "finished" and card["steps"] == STEPS
    assert {k: v["steps"] for k, v in card["stages"].items()} == {
        "copy-short": 4, "copy-long": 3, "mix": 3}
    assert all(v["ended"] == "steps_max" and v["tokens"] > 0 for v in card["stages"].values())
    assert card["worlds"] == {"tokenizer": [1_000_000, 1_000_001],
                              "training": [1_000_000, 1_000_001], "probe": 2_000_000}
    assert card["device"] == "cpu" and card["versions"]["torch"]
    assert card["parameters"] < 5_000_000 and card["vocab"] == 1028
    assert card["probe"]["step"] == STEPS and card["probe"]["format_ok"] is not None
    files = sorted(p.name for p in (reference / "final").iterdir())
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert card["files"] == {f"final/{name}": sha256(reference / "final" / name)
                             for name in files}
    model = AutoModelForCausalLM.from_pretrained(reference / "final")
    assert AutoTokenizer.from_pretrained(reference / "final").chat_template
    assert model.generation_config.eos_token_id == [2, 0]
    # The last two complete checkpoints, nothing half-written.
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == [
        "step-00000007", "step-00000010"]
    probes = [json.loads(line) for line in (reference / "probe.jsonl").read_text().splitlines()]
    assert [(p["step"], p["stage"]) for p in probes] == [
        (0, "copy-short"), (2, "copy-short"), (4, "copy-short"), (7, "copy-long"),
        (10, "mix")]
    steps = [json.loads(line) for line in (reference / "train.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1))
    assert {"loss_copy", "loss_text", "loss_expert"} <= set(steps[-1])  # every kind, each step
    # Run again: nothing to do.
    again = run_tiny(reference)
    assert again.stopped == "already finished" and again.card["steps"] == STEPS


def test_other_settings_refuse_to_resume(reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    with pytest.raises(ConfigError, match=r"other settings \(copy_short, worlds differ\)"):
        run_tiny(out, "worlds=3", "copy_short.steps_max=5")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and holds no pretraining"):
        run_tiny(tmp_path / "busy")
    with pytest.raises(ConfigError, match="unknown setting 'wrolds'"):
        settings_with(["wrolds=3"])
    with pytest.raises(ConfigError, match="training worlds must come from 1,000,000"):
        settings_with(["world_seed_start=5"])
    with pytest.raises(ConfigError, match="probe_seed=1000001 is one of the training worlds"):
        settings_with(["probe_seed=1000001"])


@pytest.fixture
def ctrl_c_reaches_python():
    """Python's own SIGINT handler for the test: a test run started in the background inherits
    SIGINT ignored, and a Ctrl-C sent to it would then never arrive."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_saves_a_checkpoint_and_the_resumed_run_matches_an_uninterrupted_one(
        reference, tmp_path, ctrl_c_reaches_python):
    out = tmp_path / "run"
    events: list[tuple[str, dict[str, Any]]] = []

    def interrupt_at_step_5(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, data))
        if kind == "step" and data["step"] == 5:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, through the real handler

    with pytest.raises(PretrainInterrupted) as stopped:
        run_tiny(out, prepared=reference, on_event=interrupt_at_step_5,
                 checkpoint_minutes=60)
    assert stopped.value.step == 5 and stopped.value.checkpoint == out / "checkpoints" / \
        "step-00000005"
    assert not (out / "final").exists()

    events.clear()
    result = run_tiny(out, on_event=lambda kind, data: events.append((kind, data)))
    assert ("resume", {"step": 5, "path": str(out / "checkpoints" / "step-00000005"),
                       "stage": "copy-long"}) in events
    steps = [data["step"] for kind, data in events if kind == "step"]
    assert steps == list(range(6, STEPS + 1))
    assert result.card["steps"] == STEPS
    # The same batches in the same order, from the same state: the same weights.
    assert sha256(out / "final" / "model.safetensors") == \
        sha256(reference / "final" / "model.safetensors")
    probes = [json.loads(line)["step"] for line in (out / "probe.jsonl").read_text().splitlines()]
    assert probes == [0, 2, 4, 7, 10]


def cli(out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "deepresearcher.cli.main", "model", "pretrain", "--out", str(out),
         "--device", "cpu", "--threads", "1", "--checkpoint-minutes", "0.001", *TINY, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        preexec_fn=interruptible)


def wait_for_checkpoint(out: Path, proc: subprocess.Popen[str]) -> None:
    """Until a checkpoint past step 0 is complete."""
    deadline = time.monotonic() + 120
    while not [p for p in out.glob("checkpoints/step-*/meta.json")
               if p.parent.name != "step-00000000"]:
        assert proc.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.02)


# Longer: the first two stages run 12 steps each, so a signal lands mid-run.
LONGER = ("copy_short.steps_max=12", "copy_short.probe_every=6", "copy_long.steps_max=12",
          "copy_long.probe_every=6")


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_the_command_stops_on_a_signal_and_resumes_to_the_same_end(reference, tmp_path, how):
    out = tmp_path / "run"
    run_tiny(out, *LONGER, prepared=reference, max_minutes=0)  # prepared, no step yet
    proc = cli(out, *LONGER)
    wait_for_checkpoint(out, proc)
    proc.send_signal(how)
    output, _ = proc.communicate(timeout=60)
    if how == signal.SIGINT:
        assert proc.returncode == 130, output
        assert "interrupted; resume from the checkpoint at step" in output
        assert "with: deepresearcher model pretrain --out" in output
        assert "Traceback" not in output
    else:
        assert proc.returncode == -signal.SIGKILL
    card = json.loads((out / "card.json").read_text())
    assert not card["finished"]  # the card of the max_minutes=0 run
    saved = json.loads(sorted((out / "checkpoints").glob("step-*/meta.json"))[-1].read_text())
    assert 0 < saved["state"]["step"] < 12 + 12 + 3

    resumed = cli(out, *LONGER)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resumed from {out / 'checkpoints'}" in output
    card = json.loads((out / "card.json").read_text())
    assert card["finished"] and card["steps"] == 12 + 12 + 3
    assert {k: v["steps"] for k, v in card["stages"].items()} == {
        "copy-short": 12, "copy-long": 12, "mix": 3}
    steps = [json.loads(line)["step"] for line in (out / "train.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 28))  # the steps after the checkpoint logged once


def test_a_time_budget_stops_with_a_checkpoint_and_a_larger_one_continues(reference, tmp_path):
    out = tmp_path / "run"
    first = run_tiny(out, prepared=reference, max_minutes=0)
    assert first.stopped == "time budget" and not first.finished
    assert first.card["steps"] == 0 and (out / "final" / "model.safetensors").is_file()
    second = run_tiny(out)
    assert second.finished and second.card["steps"] == STEPS


# A real, short pretraining ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_short_first_stage_teaches_copying_of_names_never_seen(tmp_path):
    """Stage 1 alone with the real settings but fewer worlds for the tokenizer: fresh names,
    repeated among random tokens, go from never copied to mostly copied."""
    result = pretrain(settings_with([
        "tokenizer_worlds=8", "probe_episodes=8", "copy_short.steps_min=10000",
        "copy_short.steps_max=800", "copy_short.probe_every=100"]),
        tmp_path / "run", device="cpu", until="copy-short", threads=1)
    probes = [json.loads(line) for line in (tmp_path / "run" / "probe.jsonl").read_text()
              .splitlines()]
    assert probes[0]["step"] == 0 and probes[0]["name_copy_tf"] < 0.05
    last = probes[-1]
    assert last["stage"] == "copy-short" and last["step"] == 800
    assert last["short_copy"] > 0.5 and last["name_copy_tf"] > 0.5, last
    assert result.card["stages"]["copy-short"]["steps"] == 800
