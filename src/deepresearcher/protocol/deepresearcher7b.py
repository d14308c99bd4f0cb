"""The ``deepresearcher-7b`` profile: the exact format the released GAIR/DeepResearcher-7b expects.

Every string constant here is an interface constant of that checkpoint (see PROTOCOL.md); a change of
one byte changes what the model sees. Golden tests pin them.

The checkpoint knows two tools, ``web_search`` and ``browse_webpage``. Tools registered beside them
(``ProfileSettings.tools``) are listed after those two in the chat template's tool block and their
calls are parsed; the system prompt still speaks of two tools, so such a run is no longer the
paper's exact format.
"""

from __future__ import annotations

import json
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
from deepresearcher.types import BrowseResult, SearchResult

SYSTEM_PROMPT_TEMPLATE = (
    "## Background information \n"
    "* Today is {date}\n"
    "* You are Deep AI Research Assistant\n"
    "\n"
    "The question I give you is a complex question that requires a *deep research* to answer.\n"
    "\n"
    "I will provide you with two tools to help you answer the question:\n"
    "* A web search tool to help you perform google search. \n"
    "* A webpage browsing tool to help you get new page content.\n"
    "\n"
    "You don't have to answer the question now, but you should first think about the research plan "
    "or what to search next.\n"
    "\n"
    "Your output format should be one of the following two formats:\n"
    "\n"
    "<think>\n"
    "YOUR THINKING PROCESS\n"
    "</think>\n"
    "<answer>\n"
    "YOUR ANSWER AFTER GETTING ENOUGH INFORMATION\n"
    "</answer>\n"
    "\n"
    "or\n"
    "\n"
    "<think>\n"
    "YOUR THINKING PROCESS\n"
    "</think>\n"
    "<tool_call>\n"
    "YOUR TOOL CALL WITH CORRECT FORMAT\n"
    "</tool_call>\n"
    "\n"
    "You should always follow the above two formats strictly.\n"
    "Only output the final answer (in words, numbers or phrase) inside the <answer></answer> tag, "
    "without any explanations or extra information. If this is a yes-or-no question, you should "
    "only answer yes or no.\n"
)

WEB_SEARCH = "web_search"
BROWSE_WEBPAGE = "browse_webpage"

# Key order matters: the chat template serializes these with ``tojson`` (no key sorting).
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": WEB_SEARCH,
            "description": (
                "Search the web for relevant information from google. You should use this tool if "
                "the historical page content is not enough to answer the question. Or last search "
                "result is not relevant to the question."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {
                        "type": "array",
                        "items": {
                            "type": "string",
                            "description": "The query to search, which helps answer the question",
                        },
                        "description": "The queries to search",
                    }
                },
                "required": ["query"],
                "minItems": 1,
                "uniqueItems": True,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": BROWSE_WEBPAGE,
            "description": (
                "Browse the webpage and return the content that not appeared in the conversation "
                "history. You should use this tool if the last action is search and the search "
                "result maybe relevant to the question."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "url_list": {
                        "type": "array",
                        "items": {
                            "type": "string",
                            "description": (
                                "The chosen url from the search result, do not use url that not "
                                "appeared in the search result"
                            ),
                        },
                        "description": "The chosen urls from the search result.",
                    }
                },
                "required": ["url_list"],
            },
        },
    },
]

THINK_PREFIX = "<think>"


def system_prompt(date: str) -> str:
    """The system prompt with ``date`` (``YYYY-MM-DD``) injected."""
    return SYSTEM_PROMPT_TEMPLATE.format(date=date)


def _between(text: str, open_tag: str, close_tag: str) -> str | None:
    """Text between the first ``open_tag`` and the first ``close_tag`` after it, else None."""
    start = text.find(open_tag)
    if start < 0:
        return None
    start += len(open_tag)
    end = text.find(close_tag, start)
    if end < 0:
        return None
    return text[start:end]


def parse_turn(text: str, extra_tools: tuple[str, ...] = ()) -> Action:
    """Parse one assistant turn (forced ``<think>`` included) by PROTOCOL.md §4. Never raises.

    ``extra_tools``: names of registered tools accepted beside the two built-in ones.
    """
    if not isinstance(text, str):
        return FormatError("turn is not text")
    has_think = "<think>" in text
    if has_think and "<answer>" in text:
        think = _between(text, "<think>", "</think>")
        if think is None:
            return FormatError("answer turn without a closing </think>")
        answer = _between(text, "<answer>", "</answer>")
        if answer is None:
            return FormatError("<answer> without a closing </answer>")
        return Answer(answer=answer.strip(), think=think)
    if has_think and "<tool_call>" in text:
        think = _between(text, "<think>", "</think>")
        if think is None:
            return FormatError("tool-call turn without a closing </think>")
        raw = _between(text, "<tool_call>", "</tool_call>")
        if raw is None:
            return FormatError("<tool_call> without a closing </tool_call>")
        return _parse_call(raw, think, extra_tools)
    if not has_think:
        return FormatError("no <think> block")
    return FormatError("neither <answer> nor <tool_call> in the turn")


def _parse_call(raw: str, think: str, extra_tools: tuple[str, ...] = ()) -> Action:
    try:
        call = json.loads(raw.strip())
    except (ValueError, RecursionError) as exc:
        return FormatError(f"tool call is not valid JSON: {exc}")
    if not isinstance(call, dict):
        return FormatError("tool call is not a JSON object")
    name = call.get("name")
    arguments = call.get("arguments")
    if name not in (WEB_SEARCH, BROWSE_WEBPAGE, *extra_tools):
        return FormatError(f"unknown tool {name!r}")
    if not isinstance(arguments, dict):
        return FormatError("tool call has no 'arguments' object")
    if name in extra_tools:
        return ToolCall(name=name, arguments=arguments, think=think)
    if name == WEB_SEARCH:
        query = arguments.get("query")
        if not isinstance(query, list):
            return FormatError("web_search 'query' must be a list")
    else:
        urls = arguments.get("url_list")
        if not isinstance(urls, list) or not urls:
            return FormatError("browse_webpage 'url_list' must be a non-empty list")
    return ToolCall(name=name, arguments=arguments, think=think)


def _sorted_repr(value: Any) -> str:
    """Python repr with dict keys in alphabetical order, as the original's Jinja rendering gave."""
    return repr(_sort_keys(value))


def _sort_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sort_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sort_keys(v) for v in value]
    return value


def search_payload(results: list[SearchResult], max_results: int = 10) -> list[dict[str, Any]]:
    """The web_search payload of the original tool server (before it is rendered as text)."""
    return [
        {
            "search_query": result.query,
            "web_page_info_list": [
                {"quick_summary": hit.snippet, "title": hit.title, "url": hit.url}
                for hit in result.hits[:max_results]
            ],
        }
        for result in results
    ]


def browse_payload(results: list[BrowseResult]) -> list[dict[str, Any]]:
    """The browse_webpage payload of the original tool server (before it is rendered as text)."""
    return [
        {
            "information": [
                {"page_number": e.page_number, "page_summary": e.page_summary}
                for e in result.information
            ],
            "url": result.url,
        }
        for result in results
    ]


def format_payload(payload: list[dict[str, Any]]) -> str:
    """Render a tool payload the way the released model saw it."""
    return _sorted_repr(payload)


class DeepResearcher7BProfile:
    """The exact DeepResearcher-7b format: Qwen2.5 chat template, two tools, forced ``<think>``."""

    name = "deepresearcher-7b"
    # The original's reader (PROTOCOL.md §5): an entry per search-result occurrence, search order.
    browse_layout: BrowseLayout = "per_occurrence"
    search_tool = WEB_SEARCH
    browse_tool = BROWSE_WEBPAGE

    def __init__(self, settings: ProfileSettings) -> None:
        self.settings = settings
        self._extra_tools = tuple(tool_name(schema) for schema in settings.tools)

    @property
    def tool_names(self) -> tuple[str, ...]:
        return (WEB_SEARCH, BROWSE_WEBPAGE, *self._extra_tools)

    def initial_messages(self, question: str) -> list[Message]:
        return [
            {"role": "system", "content": system_prompt(self.settings.date)},
            {"role": "user", "content": question},
        ]

    def tools(self) -> list[dict[str, Any]]:
        """The paper's two tools, then any registered beside them."""
        return [*TOOLS, *self.settings.tools] if self.settings.tools else TOOLS

    def render(self, messages: list[Message], template: ChatTemplate | None) -> RenderedPrompt:
        if template is None:
            raise ValueError(
                "the deepresearcher-7b profile renders through the model's chat template; "
                "pass the tokenizer"
            )
        tools = self.tools()
        text = template.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=False
        )
        return RenderedPrompt(
            text=text + THINK_PREFIX, messages=messages, tools=tools, prefix=THINK_PREFIX
        )

    def parse(self, text: str, tool_calls: list[dict[str, Any]] | None = None) -> Action:
        """Parse the assistant turn; ``text`` includes the forced ``<think>`` prefix."""
        return parse_turn(text, self._extra_tools)

    def turn_messages(self, action: ToolCall, observation: str) -> list[Message]:
        """The two messages that write a tool turn back (PROTOCOL.md §5)."""
        return [
            {
                "role": "assistant",
                "content": "<think>" + action.think + "</think>",
                "tool_calls": [
                    {"type": "function",
                     "function": {"name": action.name, "arguments": action.arguments}}
                ],
            },
            {"role": "tool", "name": action.name, "content": observation},
        ]

    def queries(self, action: ToolCall) -> list[str]:
        """The queries a web_search call runs: at most ``max_queries``, as strings."""
        raw = action.arguments.get("query") or []
        return [q if isinstance(q, str) else str(q) for q in raw][: self.settings.max_queries]

    def urls(self, action: ToolCall) -> list[str]:
        raw = action.arguments.get("url_list") or []
        return [u if isinstance(u, str) else str(u) for u in raw]

    def format_search(self, results: list[SearchResult]) -> str:
        return format_payload(search_payload(results, self.settings.max_results))

    def format_browse(self, results: list[BrowseResult]) -> str:
        return format_payload(browse_payload(results))

    def format_failure(self) -> str:
        return "[]"
