"""The Python API as a library user calls it: real tools over a small world, a real loopback
OpenAI-compatible server or a real tiny model, or scripted turns through the real loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepresearcher import (
    AgentConfig,
    Evaluation,
    Researcher,
    Task,
    ToolSettings,
    Trajectory,
    load_trajectories,
)
from deepresearcher.agent.build import build_toolbox
from deepresearcher.errors import ConfigError, DataError
from miniworld import write_mini_world
from scripted import ScriptedPolicy, answer_turn, browse_turn, search_turn

QUESTION = "Where was the founder of the Brackenhold Institute born?"
COUNTRY = "In which country is Tarrowmere?"
FOUNDER = "local://wiki/Velmora_Quist"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = write_mini_world(tmp_path_factory.mktemp("api_world"))
    (root / "world.json").write_text(json.dumps({"site": "wiki"}), encoding="utf-8")
    return root


def scripted(tokenizer, world: Path, script) -> Researcher:
    """A researcher whose policy plays ``script`` again in each episode of a question."""
    turns = script if callable(script) else lambda prompt, turn: script[turn % len(script)]
    policy = ScriptedPolicy(turns, tokenizer)
    toolbox = build_toolbox(ToolSettings(world=world))
    return Researcher(policy, toolbox, AgentConfig(date="2025-04-03", max_turns=4))


def by_question(prompt, turn: int) -> str:
    """Search once, then answer: right about the founder, wrong about the country."""
    if turn % 2 == 0:
        return search_turn("Tarrowmere")
    question = prompt.messages[1]["content"]
    return answer_turn("Tarrowmere" if "founder" in question else "Ostrevan")


def test_run_sync_against_a_policy_server(openai_server, tiny_tokenizer_dir, world):
    openai_server.push(search_turn("Velmora Quist"), browse_turn(FOUNDER),
                       answer_turn("Tarrowmere"), search_turn("Tarrowmere"),
                       answer_turn("Lenivar"))
    seen = []
    with Researcher.from_settings("tiny", base_url=openai_server.base_url,
                                  tokenizer=str(tiny_tokenizer_dir), world=str(world),
                                  date="2025-04-03", max_turns=4) as researcher:
        assert researcher.config.temperature == 0.0  # the CLI's default, greedy
        first = researcher.run(QUESTION, on_event=seen.append)
        # A second episode on the same researcher (its event loop and pools live on).
        second = researcher.run(Task(COUNTRY, golds=["Lenivar"]))
    assert isinstance(first, Trajectory)
    assert first.status == "answered" and first.answer == "Tarrowmere"
    assert first.sources == [FOUNDER]
    assert [e.kind for e in seen] == ["start", "generate", "turn", "observation", "generate",
                                      "turn", "observation", "generate", "turn", "end"]
    assert second.answer == "Lenivar" and second.metrics == {"f1": 1.0, "em": 1.0}
    first_request = openai_server.generation_requests()[0]
    assert first_request.path == "/v1/completions"
    assert "* Today is 2025-04-03\n" in first_request.json["prompt"]
    assert first_request.json["temperature"] == 0.0


def test_arun_and_stream_events_in_order(tiny_tokenizer, world):
    researcher = scripted(tiny_tokenizer, world,
                          [search_turn("Velmora Quist born"), answer_turn("Tarrowmere")])

    async def go() -> tuple[Trajectory, list]:
        async with researcher:
            trajectory = await researcher.arun(Task(QUESTION, golds=["Tarrowmere"]))
            events = [event async for event in researcher.stream(QUESTION)]
        return trajectory, events

    trajectory, events = asyncio.run(go())
    assert trajectory.status == "answered" and trajectory.metrics["f1"] == 1.0
    assert [e.kind for e in events] == ["start", "generate", "turn", "observation", "generate",
                                        "turn", "end"]
    actions = [e.data["action"] for e in events if e.kind == "turn"]
    assert actions[0]["name"] == "web_search" and actions[0]["arguments"]["query"] == [
        "Velmora Quist born"]
    assert actions[1]["type"] == "answer" and actions[1]["answer"] == "Tarrowmere"
    observation = next(e for e in events if e.kind == "observation")
    assert observation.data["tool"]["hits"] > 0 and FOUNDER in observation.data["observation"]
    end = events[-1].data
    assert end["status"] == "answered" and end["trajectory"].answer == "Tarrowmere"
    assert len({e.episode_id for e in events}) == 1


def test_stream_shows_a_format_error(tiny_tokenizer, world):
    researcher = scripted(tiny_tokenizer, world, ["I will not use the format."])

    async def go() -> list:
        return [event async for event in researcher.stream(QUESTION)]

    events = asyncio.run(go())
    assert [e.kind for e in events] == ["start", "generate", "turn", "end"]
    assert events[2].data["action"]["type"] == "format_error"
    assert events[-1].data["status"] == "format_error"


def test_closing_a_stream_early_cancels_the_episode(tiny_tokenizer, world):
    researcher = scripted(tiny_tokenizer, world, [search_turn("Velmora Quist")])

    async def go() -> list:
        kinds = []
        async with contextlib.aclosing(researcher.stream(QUESTION)) as events:
            async for event in events:
                kinds.append(event.kind)
                if event.kind == "turn":
                    break
        await asyncio.sleep(0.2)  # time enough for a leaked episode to ask for another turn
        return kinds

    assert asyncio.run(go()) == ["start", "generate", "turn"]
    assert len(researcher.policy.prompts) == 1


def test_evaluate_scores_questions_and_writes_a_run(tiny_tokenizer, world, tmp_path):
    researcher = scripted(tiny_tokenizer, world, by_question)
    questions = [{"question": QUESTION, "golds": ["Tarrowmere"], "id": "founder"},
                 {"question": COUNTRY, "answer": "Lenivar", "id": "country"}]
    with researcher:
        evaluation = researcher.evaluate(questions, concurrency=2)
        assert isinstance(evaluation, Evaluation)
        assert [r["id"] for r in evaluation.results] == ["founder", "country"]
        assert [r["scores"]["f1"] for r in evaluation.results] == [1.0, 0.0]
        assert evaluation.metrics["f1"] == 0.5 and evaluation.metrics["em"] == 0.5
        assert "cover_em" in evaluation.metrics
        assert [t.answer for t in evaluation.trajectories] == ["Tarrowmere", "Ostrevan"]

        out = tmp_path / "run"
        saved = researcher.evaluate(questions, out=out)
        assert saved.metrics["f1"] == 0.5
        assert (out / "scores.json").is_file() and (out / "report.md").is_file()
        loaded = load_trajectories(out)
        assert [t.question for t in loaded] == [QUESTION, COUNTRY]
        assert [t.answer for t in loaded] == ["Tarrowmere", "Ostrevan"]
        assert load_trajectories(out / "trajectories.jsonl") == loaded

        # The run directory resumes: nothing left to run, no new prompt.
        prompts = len(researcher.policy.prompts)
        again = researcher.evaluate(questions, out=out)
        assert len(researcher.policy.prompts) == prompts
        assert again.metrics == saved.metrics


def test_evaluate_needs_gold_answers(tiny_tokenizer, world):
    researcher = scripted(tiny_tokenizer, world, by_question)
    with researcher, pytest.raises(ConfigError, match="gold answers"):
        researcher.evaluate([QUESTION])


def test_a_local_tiny_model_runs_an_episode(tiny_model_dir, world):
    with Researcher.from_settings(str(tiny_model_dir), world=world, max_turns=2,
                                  max_tokens_per_turn=16) as researcher:
        trajectory = researcher.run(QUESTION)
    # A random model writes no valid turn, but the episode runs end to end and is recorded.
    assert trajectory.status in ("format_error", "max_turns")
    assert trajectory.turns and trajectory.model


def test_settings_errors_name_the_fix(world):
    with pytest.raises(ConfigError, match="did you mean 'max_turns'"):
        Researcher.from_settings("tiny", base_url="http://127.0.0.1:9/v1", world=world,
                                 max_turn=3)
    with pytest.raises(ConfigError, match="not a world directory"):
        Researcher.from_settings("tiny", base_url="http://127.0.0.1:9/v1", world=world / "pages")
    with pytest.raises(DataError, match="no trajectory file"):
        load_trajectories(world / "none.jsonl")


def test_sync_calls_inside_an_event_loop_say_what_to_do(tiny_tokenizer, world):
    researcher = scripted(tiny_tokenizer, world, [answer_turn("Tarrowmere")])

    async def go() -> None:
        with pytest.raises(RuntimeError, match="await arun"):
            researcher.run(QUESTION)
        await researcher.aclose()

    asyncio.run(go())


def test_importing_the_package_stays_light():
    code = ("import sys, deepresearcher\n"
            "from deepresearcher import Researcher, Trajectory, load_trajectories\n"
            "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]\n"
            "print(','.join(heavy) or 'light')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "light"
