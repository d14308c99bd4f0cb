"""The compact profile: DeepResearcher-7b's turn format behind a short system prompt."""

from __future__ import annotations

from deepresearcher.protocol import Answer, ProfileSettings, ToolCall, get_profile
from deepresearcher.types import SearchHit, SearchResult


def _profiles():
    settings = ProfileSettings(date="2025-04-03", max_queries=1)
    return get_profile("compact", settings), get_profile("deepresearcher-7b", settings)


def test_prompt_is_short_and_has_no_tool_block(tiny_tokenizer):
    compact, exact = _profiles()
    messages = compact.initial_messages("Who founded the Brackenhold Institute?")
    rendered = compact.render(messages, tiny_tokenizer)
    full = exact.render(exact.initial_messages("Who founded the Brackenhold Institute?"),
                        tiny_tokenizer)
    assert rendered.text.endswith("<|im_start|>assistant\n<think>")
    assert "# Tools" not in rendered.text and "<tools>" not in rendered.text
    assert "Who founded the Brackenhold Institute?<|im_end|>" in rendered.text
    short = len(tiny_tokenizer(rendered.text)["input_ids"])
    long = len(tiny_tokenizer(full.text)["input_ids"])
    assert short * 4 < long  # the point of the profile


def test_turns_parse_and_write_back_exactly_like_deepresearcher_7b(tiny_tokenizer):
    compact, exact = _profiles()
    turn = ('<think>\nLet me search.\n</think>\n<tool_call>\n'
            '{"name": "web_search", "arguments": {"query": ["a question"]}}\n</tool_call>')
    action = compact.parse(turn)
    assert action == exact.parse(turn)
    assert isinstance(action, ToolCall) and compact.queries(action) == ["a question"]
    assert isinstance(compact.parse("<think>x</think>\n<answer>Paris</answer>"), Answer)
    hits = [SearchHit(title="T", url="local://wiki/t", snippet="s")]
    result = SearchResult(query="a question", hits=hits)
    observation = compact.format_search([result])
    assert observation == exact.format_search([result])
    messages = compact.initial_messages("q") + compact.turn_messages(action, observation)
    text = compact.render(messages, tiny_tokenizer).text
    assert ('<tool_call>\n{"name": "web_search", "arguments": {"query": ["a question"]}}\n'
            "</tool_call><|im_end|>") in text
    assert "<tool_response>\n" + observation + "\n</tool_response>" in text
