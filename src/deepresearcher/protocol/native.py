"""The ``native-tools`` profile: any chat model with native tool calling (hosted APIs, Qwen, Llama...).

Same two tools and payloads as DeepResearcher-7b, but an instruction-style system prompt, JSON
observations and no forced prefix. Tool calls come either as structured ``tool_calls`` from a chat
API or as Hermes-style ``<tool_call>{...}</tool_call>`` text from a completion backend.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from deepresearcher.protocol.base import (
    Action,
    Answer,
    BrowseLayout,
    ChatTemplate,
    FormatError,
    Message,
    ProfileSettings,
    RenderedPrompt,
    ToolCall,
    tool_name,
)
from deepresearcher.protocol.deepresearcher7b import (
    BROWSE_WEBPAGE,
    WEB_SEARCH,
    browse_payload,
    search_payload,
)
from deepresearcher.types import BrowseResult, SearchResult

SYSTEM_PROMPT_TEMPLATE = """You are a careful research assistant. Today is {date}.

Answer the user's question by researching it with the tools:
- web_search: run up to {max_queries} search queries and get titles, URLs and snippets.
- browse_webpage: read pages from your latest search results; returns only new relevant passages.

Search, read the most promising pages, cross-check facts across sources, then answer.
When you are confident, reply with the final answer only (a name, number, date or short phrase;
"yes" or "no" for yes-or-no questions) inside <answer></answer>, with no explanation."""

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": WEB_SEARCH,
            "description": "Search the web. Returns titles, URLs and snippets for each query.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "One to three search queries.",
                    }
                },
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": BROWSE_WEBPAGE,
            "description": (
                "Read web pages from the latest search results and return the passages relevant "
                "to the question that were not returned before."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "url_list": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "URLs taken from the latest search results.",
                    }
                },
                "required": ["url_list"],
            },
        },
    },
]

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def _call_from(name: Any, arguments: Any, think: str, extra_tools: tuple[str, ...] = ()) -> Action:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError) as exc:
            return FormatError(f"tool call arguments are not valid JSON: {exc}")
    if name not in (WEB_SEARCH, BROWSE_WEBPAGE, *extra_tools):
        return FormatError(f"unknown tool {name!r}")
    if not isinstance(arguments, dict):
        return FormatError("tool call arguments are not an object")
    if name in extra_tools:
        return ToolCall(name=name, arguments=arguments, think=think)
    if name == WEB_SEARCH:
        query = arguments.get("query")
        if isinstance(query, str):  # a common slip of chat models: one query as a string
            arguments = {**arguments, "query": [query]}
        elif not isinstance(query, list) or not query:
            return FormatError("web_search 'query' must be a non-empty list")
    else:
        urls = arguments.get("url_list")
        if isinstance(urls, str):
            arguments = {**arguments, "url_list": [urls]}
        elif not isinstance(urls, list) or not urls:
            return FormatError("browse_webpage 'url_list' must be a non-empty list")
    return ToolCall(name=name, arguments=arguments, think=think)


class NativeToolsProfile:
    """A profile for chat models that call tools natively."""

    name = "native-tools"
    browse_layout: BrowseLayout = "per_url"
    search_tool = WEB_SEARCH
    browse_tool = BROWSE_WEBPAGE

    def __init__(self, settings: ProfileSettings) -> None:
        self.settings = settings
        self._extra_tools = tuple(tool_name(schema) for schema in settings.tools)

    @property
    def tool_names(self) -> tuple[str, ...]:
        return (WEB_SEARCH, BROWSE_WEBPAGE, *self._extra_tools)

    def initial_messages(self, question: str) -> list[Message]:
        system = SYSTEM_PROMPT_TEMPLATE.format(
            date=self.settings.date, max_queries=self.settings.max_queries
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": question}]

    def tools(self) -> list[dict[str, Any]]:
        """Search and browse, then the tools registered beside them."""
        return [*TOOLS, *self.settings.tools] if self.settings.tools else TOOLS

    def render(self, messages: list[Message], template: ChatTemplate | None) -> RenderedPrompt:
        tools = self.tools()
        text = None
        if template is not None:
            text = template.apply_chat_template(
                messages, tools=tools, add_generation_prompt=True, tokenize=False
            )
        return RenderedPrompt(text=text, messages=_for_chat_api(messages), tools=tools)

    def parse(self, text: str, tool_calls: list[dict[str, Any]] | None = None) -> Action:
        text = text if isinstance(text, str) else ""
        think = "".join(m[len("<think>"):-len("</think>")] for m in _THINK_BLOCK.findall(text))
        visible = _THINK_BLOCK.sub("", text)
        if tool_calls:
            first = tool_calls[0]
            fn = first.get("function", first) if isinstance(first, dict) else {}
            return _call_from(fn.get("name"), fn.get("arguments"), think or visible.strip(),
                              self._extra_tools)
        match = _TOOL_CALL.search(visible)
        if match:
            try:
                call = json.loads(match.group(1).strip())
            except (ValueError, RecursionError) as exc:
                return FormatError(f"tool call is not valid JSON: {exc}")
            if not isinstance(call, dict):
                return FormatError("tool call is not a JSON object")
            prose = visible[: match.start()].strip()
            return _call_from(call.get("name"), call.get("arguments"), think or prose,
                              self._extra_tools)
        answer = _ANSWER.search(visible)
        if answer:
            return Answer(answer=answer.group(1).strip(), think=think)
        if "<tool_call>" in visible or "<answer>" in visible:
            return FormatError("unclosed <tool_call> or <answer> tag")
        final = visible.strip()
        if not final:
            return FormatError("empty turn")
        return Answer(answer=final, think=think)

    def turn_messages(self, action: ToolCall, observation: str) -> list[Message]:
        return [
            {
                "role": "assistant",
                "content": action.think,
                "tool_calls": [
                    {"type": "function",
                     "function": {"name": action.name, "arguments": action.arguments}}
                ],
            },
            {"role": "tool", "name": action.name, "content": observation},
        ]

    def queries(self, action: ToolCall) -> list[str]:
        raw = action.arguments.get("query") or []
        return [q if isinstance(q, str) else str(q) for q in raw][: self.settings.max_queries]

    def urls(self, action: ToolCall) -> list[str]:
        raw = action.arguments.get("url_list") or []
        return [u if isinstance(u, str) else str(u) for u in raw]

    def format_search(self, results: list[SearchResult]) -> str:
        return json.dumps(search_payload(results, self.settings.max_results), ensure_ascii=False)

    def format_browse(self, results: list[BrowseResult]) -> str:
        return json.dumps(browse_payload(results), ensure_ascii=False)

    def format_failure(self) -> str:
        return "[]"


def _for_chat_api(messages: list[Message]) -> list[Message]:
    """Messages as the OpenAI chat API wants them: call ids, and arguments as JSON strings."""
    out: list[Message] = []
    call_index = 0
    last_id = ""
    for message in messages:
        message = copy.deepcopy(message)
        if message.get("role") == "assistant" and message.get("tool_calls"):
            for call in message["tool_calls"]:
                last_id = f"call_{call_index}"
                call_index += 1
                call["id"] = last_id
                args = call["function"]["arguments"]
                if not isinstance(args, str):
                    call["function"]["arguments"] = json.dumps(args, ensure_ascii=False)
        elif message.get("role") == "tool":
            message["tool_call_id"] = last_id
        out.append(message)
    return out
