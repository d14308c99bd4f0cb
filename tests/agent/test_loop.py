"""The episode loop, driven by scripted turns through real tools (tantivy, local pages, reader)."""

from __future__ import annotations

import asyncio
import json

import pytest

from deepresearcher.agent.config import AgentConfig
from deepresearcher.agent.loop import Agent, Task
from deepresearcher.agent.trajectory import Trajectory, read_jsonl, write_jsonl
from scripted import ScriptedPolicy, answer_turn, browse_turn, search_turn

QUESTION = "Where was the founder of the Brackenhold Institute born?"
INSTITUTE = "local://wiki/Brackenhold_Institute"
FOUNDER = "local://wiki/Velmora_Quist"


def run(agent, task, **kw):
    return asyncio.run(agent.run(task, **kw))


@pytest.fixture
def config():
    return AgentConfig(date="2025-04-03", max_turns=6)


def test_search_browse_answer_episode(tiny_tokenizer, toolbox, config):
    script = [
        search_turn("Brackenhold Institute founder"),
        browse_turn(INSTITUTE),
        search_turn("Velmora Quist born"),
        browse_turn(FOUNDER),
        answer_turn("Tarrowmere"),
    ]
    policy = ScriptedPolicy(script, tiny_tokenizer)
    events = []
    t = run(Agent(policy, toolbox, config),
            Task(QUESTION, golds=["Tarrowmere"], id="q1", data_source="world_2wiki"),
            events=events.append)

    assert t.status == "answered" and t.answer == "Tarrowmere"
    assert t.metrics == {"f1": 1.0, "em": 1.0} and t.reward == 1.0
    assert [turn.action.type for turn in t.turns] == ["tool_call"] * 4 + ["answer"]
    search_obs = t.turns[0].observation
    assert search_obs.startswith("[{'search_query': 'Brackenhold Institute founder', "
                                 "'web_page_info_list': [{'quick_summary': ")
    assert INSTITUTE in search_obs
    browse_obs = t.turns[1].observation
    assert browse_obs.startswith("[{'information': [{'page_number': 0, 'page_summary': ")
    assert "Velmora Quist" in browse_obs and browse_obs.endswith(f"'url': '{INSTITUTE}'}}]")
    assert "Tarrowmere" in t.turns[3].observation
    assert t.sources == [INSTITUTE, FOUNDER]
    assert t.usage.search_calls == 2 and t.usage.browse_calls == 2 and t.usage.pages_read == 2
    # The prompt of each turn is the re-rendered conversation ending in the forced <think>.
    assert all(p.text.endswith("<|im_start|>assistant\n<think>") for p in policy.prompts)
    assert "<tool_response>\n" + search_obs + "\n</tool_response>" in policy.prompts[1].text
    assert [e.kind for e in events][:3] == ["start", "generate", "turn"]
    assert events[-1].kind == "end" and events[-1].data["status"] == "answered"


def test_trajectory_round_trips_through_jsonl(tiny_tokenizer, toolbox, config, tmp_path):
    policy = ScriptedPolicy([search_turn("Tarrowmere"), answer_turn("Lenivar")], tiny_tokenizer)
    t = run(Agent(policy, toolbox, config), Task("In which country is Tarrowmere?", ["Lenivar"]))
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [t, t])
    back = list(read_jsonl(path))
    assert len(back) == 2 and back[0] == t
    assert json.loads(path.read_text().splitlines()[0])["schema_version"] == 1


def test_loss_mask_covers_exactly_the_assistant_turns(tiny_tokenizer, toolbox, config):
    policy = ScriptedPolicy([search_turn("Quist"), answer_turn("Tarrowmere")], tiny_tokenizer)
    t = run(Agent(policy, toolbox, config), QUESTION)
    tokens = t.tokens
    assert tokens is not None
    assert len(tokens.completion_ids) == len(tokens.loss_mask)
    decoded_masked = tiny_tokenizer.decode(
        [i for i, m in zip(tokens.completion_ids, tokens.loss_mask, strict=True) if m]
    )
    decoded_unmasked = tiny_tokenizer.decode(
        [i for i, m in zip(tokens.completion_ids, tokens.loss_mask, strict=True) if not m]
    )
    assert decoded_masked.startswith("<think> Let me search. </think>\n<tool_call>\n")
    assert decoded_masked.endswith("<answer>Tarrowmere</answer><|im_end|>")
    assert decoded_masked.count("<|im_end|>") == 2
    assert "<tool_response>" in decoded_unmasked and "<tool_response>" not in decoded_masked
    assert "<|im_start|>assistant" in decoded_unmasked
    prompt = tiny_tokenizer.decode(tokens.prompt_ids)
    assert prompt.endswith("<|im_start|>assistant\n") and "<think>" not in prompt.split("user")[-1]


def test_format_error_ends_the_episode(tiny_tokenizer, toolbox, config):
    policy = ScriptedPolicy(["I will just guess: Paris"], tiny_tokenizer)
    t = run(Agent(policy, toolbox, config), Task(QUESTION, ["Tarrowmere"]))
    assert t.status == "format_error"
    assert "neither <answer> nor <tool_call>" in t.error
    assert t.reward == -1.0 and t.metrics["f1"] == 0.0


def test_unknown_tool_is_a_format_error(tiny_tokenizer, toolbox, config):
    bad = ' x</think>\n<tool_call>\n{"name": "python", "arguments": {"code": "1"}}\n</tool_call>'
    t = run(Agent(ScriptedPolicy([bad], tiny_tokenizer), toolbox, config), QUESTION)
    assert t.status == "format_error" and "unknown tool 'python'" in t.error


def test_browse_before_search_returns_empty_list(tiny_tokenizer, toolbox, config):
    policy = ScriptedPolicy([browse_turn(INSTITUTE), answer_turn("x")], tiny_tokenizer)
    t = run(Agent(policy, toolbox, config), QUESTION)
    assert t.turns[0].observation == "[]"
    assert t.turns[0].tool.error == "browse before any search"


def test_browse_of_unknown_url_is_refused_and_recorded(tiny_tokenizer, toolbox, config):
    script = [search_turn("Brackenhold Institute"),
              browse_turn("local://wiki/Not_In_Results", INSTITUTE), answer_turn("x")]
    t = run(Agent(ScriptedPolicy(script, tiny_tokenizer), toolbox, config), QUESTION)
    turn = t.turns[1]
    assert turn.tool.refused_urls == ["local://wiki/Not_In_Results"]
    # The paper's layout (the original's reader): no entry for a URL not in the latest search.
    assert turn.observation.startswith("[{'information': [{")
    assert "Not_In_Results" not in turn.observation
    assert t.sources == [INSTITUTE]


def test_other_profiles_list_a_refused_url_with_an_empty_entry(tiny_tokenizer, toolbox, config):
    script = [search_turn("Brackenhold Institute"),
              browse_turn("local://wiki/Not_In_Results", INSTITUTE), answer_turn("x")]
    compact = config.model_copy(update={"profile": "compact"})
    t = run(Agent(ScriptedPolicy(script, tiny_tokenizer), toolbox, compact), QUESTION)
    assert t.turns[1].observation.startswith(
        "[{'information': [], 'url': 'local://wiki/Not_In_Results'}, {'information': [{")


def test_repeated_browse_returns_only_new_extracts(tiny_tokenizer, toolbox, config):
    script = [search_turn("Brackenhold Institute"), browse_turn(INSTITUTE),
              browse_turn(INSTITUTE), answer_turn("x")]
    t = run(Agent(ScriptedPolicy(script, tiny_tokenizer), toolbox, config), QUESTION)
    assert t.turns[1].tool.extracts >= 1
    assert t.turns[2].tool.extracts == 0
    assert t.turns[2].observation == f"[{{'information': [], 'url': '{INSTITUTE}'}}]"


def test_max_turns_skips_the_last_tool_call(tiny_tokenizer, toolbox):
    config = AgentConfig(date="2025-04-03", max_turns=2)
    script = [search_turn("a"), search_turn("b")]
    t = run(Agent(ScriptedPolicy(script, tiny_tokenizer), toolbox, config), QUESTION)
    assert t.status == "max_turns" and len(t.turns) == 2
    assert t.turns[1].tool is None and t.usage.search_calls == 1


def test_context_guard_ends_the_episode_instead_of_overflowing(tiny_tokenizer, toolbox):
    policy = ScriptedPolicy(lambda prompt, i: search_turn("Brackenhold Institute founder"),
                            tiny_tokenizer)
    first_prompt = policy.count_tokens(
        Agent(policy, toolbox, AgentConfig(date="2025-04-03")).profile.render(
            Agent(policy, toolbox, AgentConfig(date="2025-04-03")).profile.initial_messages(
                QUESTION), tiny_tokenizer).text)
    config = AgentConfig(date="2025-04-03", max_turns=10, max_tokens_per_turn=100,
                         context_window=first_prompt + 150)
    t = run(Agent(policy, toolbox, config), QUESTION)
    assert t.status == "context_exhausted"
    assert len(t.turns) == 1  # the search result made the next turn not fit
    for prompt in policy.prompts:
        assert policy.count_tokens(prompt.text) + 100 <= config.context_window


def test_context_policy_shrink_uses_the_room_left(tiny_tokenizer, toolbox):
    policy = ScriptedPolicy([answer_turn("x")], tiny_tokenizer)
    agent = Agent(policy, toolbox, AgentConfig(date="2025-04-03"))
    used = policy.count_tokens(agent.profile.render(agent.profile.initial_messages(QUESTION),
                                                    tiny_tokenizer).text)
    config = AgentConfig(date="2025-04-03", max_tokens_per_turn=2000, context_policy="shrink",
                         min_turn_tokens=50, context_window=used + 300)
    t = run(Agent(policy, toolbox, config), QUESTION)
    assert t.status == "answered"
    assert policy.samplings[0].max_tokens == 300


def test_many_episodes_run_concurrently(tiny_tokenizer, toolbox, config):
    script = [search_turn("Velmora Quist"), browse_turn(FOUNDER), answer_turn("Tarrowmere")]
    policy = ScriptedPolicy(lambda prompt, i: script[i], tiny_tokenizer)
    # The scripted policy tells episodes apart by their question.
    tasks = [Task(f"{QUESTION} ({n})", ["Tarrowmere"], id=f"q{n}") for n in range(24)]
    done = []
    trajectories = asyncio.run(
        Agent(policy, toolbox, config).run_many(tasks, concurrency=8, on_done=done.append))
    assert [t.id for t in trajectories] == [f"q{n}" for n in range(24)]
    assert all(t.status == "answered" and t.metrics["f1"] == 1.0 for t in trajectories)
    assert len(done) == 24
    # Each episode kept its own browse memory: every one got the extract.
    assert all(t.turns[1].tool.extracts >= 1 for t in trajectories)


def test_trajectory_schema_rejects_unknown_fields():
    with pytest.raises(ValueError):
        Trajectory(id="x", question="q", profile="p", model="m", unknown=1)


def test_a_bare_corpus_is_browsable_through_its_index(tiny_tokenizer, tmp_path, config):
    from deepresearcher.agent.build import ToolSettings, build_toolbox
    from deepresearcher.tools.local_search import build_index

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        json.dumps({"id": "7", "contents": '"Lenivar"\nLenivar is a kingdom whose capital is '
                    'Saltmarch, a port on the western coast.'}) + "\n", encoding="utf-8")
    build_index(corpus, tmp_path / "index")
    toolbox = build_toolbox(ToolSettings(index=tmp_path / "index"))
    script = [search_turn("Lenivar capital"), browse_turn("local://corpus/7"),
              answer_turn("Saltmarch")]
    t = run(Agent(ScriptedPolicy(script, tiny_tokenizer), toolbox, config),
            Task("What is the capital of Lenivar?", ["Saltmarch"]))
    assert "local://corpus/7" in t.turns[0].observation
    assert "Saltmarch" in t.turns[1].observation and t.turns[1].tool.failed_urls == {}
    assert t.metrics["em"] == 1.0


def test_missing_index_is_a_clear_error(tmp_path):
    from deepresearcher.agent.build import ToolSettings, build_toolbox
    from deepresearcher.errors import IndexNotFoundError

    with pytest.raises(IndexNotFoundError) as info:
        build_toolbox(ToolSettings(index=tmp_path / "nope"))
    assert "deepresearcher index build" in (info.value.hint or "")


def test_unknown_search_backend_is_a_config_error(tmp_path):
    from deepresearcher.agent.build import ToolSettings, build_toolbox
    from deepresearcher.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown search backend"):
        build_toolbox(ToolSettings(search="bing", index=tmp_path))


def test_completion_ends_at_im_end_and_a_cut_turn_is_left_open(tiny_tokenizer, toolbox, config):
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    done = run(Agent(ScriptedPolicy([answer_turn("x")], tiny_tokenizer), toolbox, config), "q")
    assert done.tokens.completion_ids[-1] == im_end and done.tokens.loss_mask[-1] == 1

    class Cut(ScriptedPolicy):
        async def generate(self, prompt, sampling):
            from dataclasses import replace

            return replace(await super().generate(prompt, sampling), finish_reason="length")

    cut = run(Agent(Cut([" thinking and thinking"], tiny_tokenizer), toolbox, config), "q")
    assert cut.status == "format_error"
    assert cut.tokens.completion_ids[-1] != im_end
    assert tiny_tokenizer.decode(cut.tokens.completion_ids).endswith("thinking and thinking")


def test_a_toolbox_survives_successive_event_loops_under_contention(tiny_tokenizer, mini_world,
                                                                     config):
    # A GRPO run calls asyncio.run once per step with the same toolbox; a concurrency limit that
    # had to wait in one loop must not break the next.
    from deepresearcher.agent.build import ToolSettings, build_toolbox

    toolbox = build_toolbox(ToolSettings(index=mini_world / "index", pages=mini_world / "pages",
                                         concurrency=1))
    script = [search_turn("Velmora Quist", "Tarrowmere", "Brackenhold"), answer_turn("x")]
    for _ in range(2):
        policy = ScriptedPolicy(lambda prompt, i: script[i], tiny_tokenizer)
        tasks = [Task(f"{QUESTION} ({n})", ["x"]) for n in range(6)]
        done = asyncio.run(Agent(policy, toolbox, config).run_many(tasks, concurrency=6))
        assert all(t.status == "answered" and t.turns[0].tool.error is None for t in done)


def test_a_tool_failing_with_a_foreign_error_fails_that_call_not_the_batch(tiny_tokenizer,
                                                                         toolbox, config):
    """A library's own exception (not one of ours) in the fetcher or the reader: that page fails
    (kind ``internal``, logged) and the episode goes on; an unexpected error
    anywhere else ends that episode with status ``error``; other episodes are untouched."""
    fetcher, reader = toolbox.fetcher, toolbox.reader

    class BrokenFetcher:
        async def fetch(self, url):
            if url == INSTITUTE:
                raise RuntimeError("Failed to load page.")  # e.g. pdfium's PdfiumError
            return await fetcher.fetch(url)

    class BrokenReader:
        async def read(self, document, **kw):
            if document.url == FOUNDER:
                raise KeyError("chunk")
            return await reader.read(document, **kw)

    toolbox.fetcher, toolbox.reader = BrokenFetcher(), BrokenReader()
    try:
        script = [search_turn("Brackenhold Institute founder"), browse_turn(INSTITUTE),
                  search_turn("Velmora Quist born"), browse_turn(FOUNDER), answer_turn("x")]
        t = run(Agent(ScriptedPolicy(script, tiny_tokenizer), toolbox, config), Task(QUESTION))
    finally:
        toolbox.fetcher, toolbox.reader = fetcher, reader
    assert t.status == "answered"  # the episode went on, with each broken page read as failed
    assert t.turns[1].observation == f"[{{'information': [], 'url': '{INSTITUTE}'}}]"
    assert t.turns[3].observation == f"[{{'information': [], 'url': '{FOUNDER}'}}]"

    class Exploding(ScriptedPolicy):
        async def generate(self, prompt, sampling):
            if "Tarrowmere" in prompt.text:
                raise ZeroDivisionError("a bug")
            return await super().generate(prompt, sampling)

    agent = Agent(Exploding([answer_turn("Lenivar")], tiny_tokenizer), toolbox, config)
    done = asyncio.run(agent.run_many([Task("In which country is Tarrowmere?", id="a"),
                                       Task(QUESTION, id="b")]))
    assert [d.status for d in done] == ["error", "answered"]
    assert done[0].error == "internal error: ZeroDivisionError: a bug"
    assert done[0].error_kind == "internal ZeroDivisionError" and done[1].error_kind is None
    # The failed pages above record their kind; a foreign error in the fetcher is "internal".
    assert t.turns[1].tool.failed_urls == {INSTITUTE: "internal"}


def test_a_parser_failure_is_an_extract_error(monkeypatch):
    from deepresearcher.errors import ExtractError
    from deepresearcher.tools import extract as extract_module

    def broken(*args, **kwargs):
        raise ValueError("lxml: document is empty")

    monkeypatch.setattr(extract_module, "_extract", broken)
    with pytest.raises(ExtractError, match="cannot be read"):
        extract_module.extract(b"<html>x</html>", content_type="text/html", url="u")


def test_the_paper_reward_reads_re_rendered_tool_turns_and_the_raw_final_turn(
        tiny_tokenizer, toolbox, config):
    from deepresearcher.protocol.metrics import paper_reward

    # Text after </tool_call> is sampled but not re-rendered: the original scored (and trained
    # on) the re-rendered call, so a stray "<think>" there does not unbalance the tags.
    stray = search_turn("Tarrowmere") + "\n<think>"
    policy = ScriptedPolicy([stray, answer_turn("Lenivar")], tiny_tokenizer)
    t = run(Agent(policy, toolbox, config), Task("In which country is Tarrowmere?", ["Lenivar"]))
    assert t.status == "answered" and t.reward == 1.0
    response = t.response_text()
    assert response.startswith("<think> Let me search. </think>\n<tool_call>\n")
    assert "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n" in response
    assert response.endswith("<think> I know it now. </think>\n<answer>Lenivar</answer>")
    assert "</tool_call>\n<think>" not in response
    # Read as the raw turns joined, the same episode would score -1.
    raw = "\n".join(p for turn in t.turns for p in (turn.text, turn.observation) if p is not None)
    assert paper_reward(raw, ["Lenivar"]) == -1.0
    # A trajectory read back from its file has no rendering: its raw turns are what is left.
    assert Trajectory.model_validate_json(t.to_json()).response_text() == raw


def test_a_failed_episode_records_its_errors_class(tiny_tokenizer, toolbox, config):
    """``error_kind`` names the error's class: ``policy KIND`` for the policy, ``FAMILY KIND`` for
    another error with kinds, the class name for one without; the message stays in ``error``."""
    from deepresearcher.errors import CacheLocked, ConfigError, PolicyTimeout

    class Failing(ScriptedPolicy):
        async def generate(self, prompt, sampling):
            question = prompt.text or ""
            if "Tarrowmere" in question:
                raise PolicyTimeout("no reply within 5 s")
            if "Lenivar" in question:
                raise CacheLocked("the tool cache c.sqlite stayed locked")
            raise ConfigError("a bad setting")

    agent = Agent(Failing([], tiny_tokenizer), toolbox, config)
    done = asyncio.run(agent.run_many([Task("In which country is Tarrowmere?", id="a"),
                                       Task("Where is Lenivar?", id="b"), Task(QUESTION, id="c")]))
    assert [d.status for d in done] == ["error"] * 3
    assert [d.error_kind for d in done] == ["policy timeout", "cache locked", "ConfigError"]
    assert done[0].error == "policy timeout: no reply within 5 s"
    assert done[1].error == "CacheLocked: the tool cache c.sqlite stayed locked"
    assert Trajectory.model_validate_json(done[0].to_json()).error_kind == "policy timeout"
