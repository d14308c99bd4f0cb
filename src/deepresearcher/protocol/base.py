"""What a prompt profile is: the typed actions a turn parses into and the profile interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from deepresearcher.types import BrowseResult, SearchResult

Message = dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """The model asked to run a tool."""

    name: str
    arguments: dict[str, Any]
    think: str = ""


@dataclass(frozen=True)
class Answer:
    """The model gave its final answer."""

    answer: str
    think: str = ""


@dataclass(frozen=True)
class FormatError:
    """The turn could not be parsed; ``reason`` says why in one line."""

    reason: str


Action = ToolCall | Answer | FormatError


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt ready for a policy.

    ``text`` is the exact string for completion-style backends (chat template applied, forced prefix
    appended); ``messages`` and ``tools`` are what a chat-completions backend sends instead.
    ``prefix`` is the forced start of the assistant turn (already at the end of ``text``).
    """

    text: str | None
    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    prefix: str = ""


@runtime_checkable
class ChatTemplate(Protocol):
    """Anything that renders messages with a chat template (a Hugging Face tokenizer is one)."""

    def apply_chat_template(self, conversation: list[Message], **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class ProfileSettings:
    """Settings of a profile that change what the model sees.

    ``tools`` are the schemas (OpenAI function format, ``{"type": "function", "function": {"name",
    "description", "parameters"}}``) of tools registered beside the built-in search and browse:
    the profile lists them after its own two and its parser accepts calls to them.
    """

    date: str  # YYYY-MM-DD, injected into the system prompt; a setting, so runs are reproducible
    max_queries: int = 3
    max_results: int = 10
    extra: dict[str, Any] = field(default_factory=dict)
    tools: tuple[dict[str, Any], ...] = ()


def tool_name(schema: dict[str, Any]) -> str:
    """The name in a tool schema (OpenAI function format, or a bare function)."""
    return str(schema.get("function", schema)["name"])


# How a browse observation is laid out: one entry per requested URL in request order, or the
# original's, one entry per occurrence of a requested URL in the latest search, in search order.
BrowseLayout = Literal["per_url", "per_occurrence"]


@runtime_checkable
class PromptProfile(Protocol):
    """Renders a conversation for one model family and parses its turns.

    Everything the episode loop uses of a profile is declared here. ``search_tool`` and
    ``browse_tool`` name the two built-in tools in this profile's format; ``tool_names`` are all
    the tool names its parser accepts (the built-in two, then those of ``settings.tools``).
    ``queries`` and ``urls`` read a search or browse call's arguments as this profile defines them
    (the query cap, strings coerced). ``format_search``/``format_browse`` render the built-in
    tools' observations; ``format_failure`` is the observation of a failed tool call.
    """

    name: str
    settings: ProfileSettings
    browse_layout: BrowseLayout
    search_tool: str
    browse_tool: str

    @property
    def tool_names(self) -> tuple[str, ...]: ...

    def initial_messages(self, question: str) -> list[Message]: ...

    def tools(self) -> list[dict[str, Any]]: ...

    def render(self, messages: list[Message], template: ChatTemplate | None) -> RenderedPrompt: ...

    def parse(self, text: str, tool_calls: list[dict[str, Any]] | None = None) -> Action: ...

    def turn_messages(self, action: ToolCall, observation: str) -> list[Message]: ...

    def queries(self, action: ToolCall) -> list[str]: ...

    def urls(self, action: ToolCall) -> list[str]: ...

    def format_search(self, results: list[SearchResult]) -> str: ...

    def format_browse(self, results: list[BrowseResult]) -> str: ...

    def format_failure(self) -> str: ...
