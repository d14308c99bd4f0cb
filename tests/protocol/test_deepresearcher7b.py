"""The deepresearcher-7b profile against PROTOCOL.md and the original's real payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenario import browse_results, conversation, load_json, search_results

from deepresearcher.protocol import Answer, FormatError, ProfileSettings, ToolCall, get_profile
from deepresearcher.protocol.deepresearcher7b import (
    SYSTEM_PROMPT_TEMPLATE,
    TOOLS,
    parse_turn,
    system_prompt,
)

GOLDEN = Path(__file__).parent / "golden" / "deepresearcher7b_conversation.txt"


@pytest.fixture
def profile():
    return get_profile("deepresearcher-7b", ProfileSettings(date="2025-04-03"))


# --- the system prompt and the tool schemas ----------------------------------------------------


def test_system_prompt_has_the_originals_quirks():
    prompt = system_prompt("2025-04-03")
    assert prompt.startswith("## Background information \n* Today is 2025-04-03\n")
    assert "* A web search tool to help you perform google search. \n" in prompt
    assert prompt.endswith("you should only answer yes or no.\n")
    assert SYSTEM_PROMPT_TEMPLATE.count("{date}") == 1


def test_date_is_a_setting(profile):
    other = get_profile("deepresearcher-7b", ProfileSettings(date="2030-01-31"))
    assert "Today is 2025-04-03" in profile.initial_messages("q")[0]["content"]
    assert "Today is 2030-01-31" in other.initial_messages("q")[0]["content"]


def test_user_message_is_the_bare_question(profile):
    messages = profile.initial_messages("who wrote it?")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "who wrote it?"


def test_tool_schemas_serialize_in_the_originals_key_order():
    assert json.dumps(TOOLS[0]["function"]["parameters"]) == (
        '{"type": "object", "properties": {"query": {"type": "array", "items": {"type": "string", '
        '"description": "The query to search, which helps answer the question"}, "description": '
        '"The queries to search"}}, "required": ["query"], "minItems": 1, "uniqueItems": true}'
    )
    assert json.dumps(TOOLS[1]["function"]["parameters"]) == (
        '{"type": "object", "properties": {"url_list": {"type": "array", "items": {"type": '
        '"string", "description": "The chosen url from the search result, do not use url that '
        'not appeared in the search result"}, "description": "The chosen urls from the search '
        'result."}}, "required": ["url_list"]}'
    )
    assert [t["function"]["name"] for t in TOOLS] == ["web_search", "browse_webpage"]


# --- rendering ------------------------------------------------------------------------------------


def test_render_appends_forced_think(profile, qwen_template_tokenizer):
    rendered = profile.render(profile.initial_messages("q?"), qwen_template_tokenizer)
    assert rendered.text.endswith("<|im_start|>user\nq?<|im_end|>\n<|im_start|>assistant\n<think>")
    assert rendered.prefix == "<think>"
    assert "# Tools\n\nYou may call one or more functions" in rendered.text
    assert rendered.text.startswith("<|im_start|>system\n## Background information \n")


def test_render_needs_a_template(profile):
    with pytest.raises(ValueError, match="chat template"):
        profile.render(profile.initial_messages("q"), None)


def test_full_conversation_matches_golden(original_data, qwen_template_tokenizer):
    profile, messages = conversation(original_data)
    text = qwen_template_tokenizer.apply_chat_template(messages, tools=profile.tools(),
                                                       tokenize=False)
    assert text == GOLDEN.read_text(encoding="utf-8")
    # The write-back shape of PROTOCOL.md §5, spelled out:
    assert (
        '<|im_start|>assistant\n<think> I need to find information about Ray Lake from "The Real '
        'Thing" to answer this question. I will start with a web search. </think>\n<tool_call>\n'
        '{"name": "web_search", "arguments": {"query": ["Ray Lake The Real Thing", '
        '"Ray Lake update", "what happened to Ray Lake"]}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n[{'search_query': 'Ray Lake The Real Thing', "
        "'web_page_info_list': [{'quick_summary': 'The Real Thing is a British soul group formed "
        "in the 1970s. The band charted internationally with their song \"You to Me Are "
        "Everything\"', 'title': 'The Real Thing (British band) - Wikipedia', 'url': "
        "'https://en.wikipedia.org/wiki/The_Real_Thing_(British_band)'}"
    ) in text
    assert text.count("<|im_start|>assistant\n<think>") == 3


# --- observations ---------------------------------------------------------------------------------


def test_search_observation_renders_as_the_original(original_data, profile):
    raw = load_json(original_data / "data_search.json")[0]["content"]
    rendered = profile.format_search(search_results(original_data / "data_search.json"))
    assert rendered == str(raw)  # the original passed the server JSON through Jinja's str()
    assert rendered.startswith("[{'search_query': 'Ray Lake The Real Thing', 'web_page_info_list'")


def test_browse_observation_renders_as_the_original(original_data, profile):
    raw = load_json(original_data / "data_read.json")[0]["content"]
    rendered = profile.format_browse(browse_results(original_data / "data_read.json"))
    assert rendered == str(raw)
    assert rendered.startswith("[{'information': [{'page_number': 0, 'page_summary': ")


def test_search_observation_caps_results_and_queries(profile):
    from deepresearcher.types import SearchHit, SearchResult

    hits = tuple(SearchHit(title=f"t{i}", url=f"u{i}", snippet="s") for i in range(15))
    rendered = profile.format_search([SearchResult(query="q", hits=hits)])
    assert rendered.count("'url'") == 10
    call = ToolCall("web_search", {"query": ["a", "b", "c", "d", "e"]})
    assert profile.queries(call) == ["a", "b", "c"]


def test_failure_observation_is_empty_list(profile):
    assert profile.format_failure() == "[]"


def test_keys_are_sorted_and_quotes_follow_python_repr(profile):
    from deepresearcher.types import BrowseResult, PageExtract

    rendered = profile.format_browse(
        [BrowseResult(url="u", information=(PageExtract(3, "it's \"quoted\"\nnew line"),))]
    )
    assert rendered == (
        "[{'information': [{'page_number': 3, 'page_summary': 'it\\'s \"quoted\"\\nnew line'}], "
        "'url': 'u'}]"
    )


# --- parsing (PROTOCOL.md §4) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think>\n<answer> Paris </answer>", Answer("Paris", "a")),
        ("<think>a</think><answer>x</answer><tool_call>{}</tool_call>", Answer("x", "a")),
        ('<think>t</think>\n<tool_call>\n{"name": "web_search", "arguments": {"query": ["q"]}}\n'
         "</tool_call> trailing text dropped",
         ToolCall("web_search", {"query": ["q"]}, "t")),
        ('<think>t</think><tool_call>{"name": "browse_webpage", "arguments": '
         '{"url_list": ["u"]}}</tool_call><tool_call>{"name": "web_search"}</tool_call>',
         ToolCall("browse_webpage", {"url_list": ["u"]}, "t")),
        ('<think>t</think><tool_call>{"name": "web_search", "arguments": {"query": []}}'
         "</tool_call>", ToolCall("web_search", {"query": []}, "t")),
    ],
)
def test_parse_valid_turns(text, expected):
    assert parse_turn(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<think>a</think>", "neither"),
        ("just text", "no <think>"),
        ("<answer>x</answer>", "no <think>"),
        ("<think>a<answer>x</answer>", "</think>"),
        ("<think>a</think><answer>x", "</answer>"),
        ("<think>a<tool_call>{}</tool_call>", "</think>"),
        ("<think>a</think><tool_call>{}", "</tool_call>"),
        ("<think>a</think><tool_call>{not json}</tool_call>", "JSON"),
        ("<think>a</think><tool_call>[1, 2]</tool_call>", "object"),
        ('<think>a</think><tool_call>{"name": "python", "arguments": {}}</tool_call>',
         "unknown tool"),
        ('<think>a</think><tool_call>{"name": "web_search"}</tool_call>', "arguments"),
        ('<think>a</think><tool_call>{"name": "web_search", "arguments": {"query": "q"}}'
         "</tool_call>", "must be a list"),
        ('<think>a</think><tool_call>{"name": "browse_webpage", "arguments": {"url_list": []}}'
         "</tool_call>", "non-empty"),
    ],
)
def test_parse_malformed_turns(text, reason):
    action = parse_turn(text)
    assert isinstance(action, FormatError)
    assert reason in action.reason


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_never_raises(text):
    action = parse_turn(text)
    assert isinstance(action, (Answer, ToolCall, FormatError))


_tag_free = st.text(st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)))


def _no_turn_end(text: str) -> bool:
    # The test cuts the rendered turn at its first <|im_end|> and the parser the call at its
    # first </tool_call>: an argument holding either literal cannot round-trip through this cut.
    return "<|im_end|>" not in text and "</tool_call>" not in text


_argument = st.text(st.characters(blacklist_categories=("Cs",))).filter(_no_turn_end)


@settings(max_examples=150, deadline=None)
@given(
    think=_tag_free,
    queries=st.lists(_argument, max_size=5),
    urls=st.lists(_argument.filter(bool), min_size=1, max_size=4),
    search=st.booleans(),
)
def test_render_then_parse_round_trips_tool_calls(qwen_template_tokenizer, think, queries, urls,
                                                  search):
    profile = get_profile("deepresearcher-7b", ProfileSettings(date="2025-04-03"))
    call = (ToolCall("web_search", {"query": queries}, think) if search
            else ToolCall("browse_webpage", {"url_list": urls}, think))
    messages = profile.initial_messages("q") + profile.turn_messages(call, "[]")
    text = qwen_template_tokenizer.apply_chat_template(messages, tools=profile.tools(),
                                                       tokenize=False)
    start = text.rindex("<|im_start|>assistant\n") + len("<|im_start|>assistant\n")
    turn = text[start:text.index("<|im_end|>", start)]
    assert parse_turn(turn) == call
