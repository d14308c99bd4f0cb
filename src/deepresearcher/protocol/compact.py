"""The ``compact`` profile: the DeepResearcher-7b turn format with a short system prompt.

Same tags, same tool-call JSON, same observation payloads and the same forced ``<think>`` as
``deepresearcher-7b`` (so parsing, masking, rewards and the expert carry over unchanged), but the
system message is a few lines and the chat template's tool block is left out. For small models
trained from scratch, where the ~630-token system prompt of the released checkpoint would dominate
every training row (the CPU quickstart uses it); never for GAIR/DeepResearcher-7b itself.

Tools registered beside search and browse (``ProfileSettings.tools``) go in the chat template's
tool block, which is otherwise left out.
"""

from __future__ import annotations

from typing import Any

from deepresearcher.protocol.base import BrowseLayout, ChatTemplate, Message, RenderedPrompt
from deepresearcher.protocol.deepresearcher7b import THINK_PREFIX, DeepResearcher7BProfile

COMPACT_SYSTEM_PROMPT = (
    "Research the question, then answer it.\n"
    "Tools: web_search {\"query\": [..]} and browse_webpage {\"url_list\": [..]}.\n"
    "Reply <think>..</think> then <tool_call>{\"name\": .., \"arguments\": ..}</tool_call> "
    "or <answer>..</answer>.\n"
)


class CompactProfile(DeepResearcher7BProfile):
    """DeepResearcher-7b's turn format behind a short system prompt, with no tool block."""

    name = "compact"
    # Short observations for small models: one entry per requested URL (not the paper's layout).
    browse_layout: BrowseLayout = "per_url"

    def initial_messages(self, question: str) -> list[Message]:
        return [
            {"role": "system", "content": COMPACT_SYSTEM_PROMPT},
            {"role": "user", "content": question},
        ]

    def tools(self) -> list[dict[str, Any]]:
        """Only the tools registered beside search and browse (those two are in the prompt)."""
        return list(self.settings.tools)

    def render(self, messages: list[Message], template: ChatTemplate | None) -> RenderedPrompt:
        if template is None:
            raise ValueError("the compact profile renders through the model's chat template; "
                             "pass the tokenizer")
        tools = self.tools()
        if tools:
            text = template.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                                tokenize=False)
        else:
            text = template.apply_chat_template(messages, add_generation_prompt=True,
                                                tokenize=False)
        return RenderedPrompt(text=text + THINK_PREFIX, messages=messages, tools=tools,
                              prefix=THINK_PREFIX)
