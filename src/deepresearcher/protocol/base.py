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
    """Settings of a profile that change what the model sees."""

    date: str  # YYYY-MM-DD, injected into the system prompt; a setting, so runs are reproducible
    max_queries: int = 3
    max_results: int = 10
    extra: dict[str, Any] = field(default_factory=dict)


# How a browse observation is laid out: one entry per requested URL in request order, or the
# original's, one entry per occurrence of a requested URL in the latest search, in search order.
BrowseLayout = Literal["per_url", "per_occurrence"]


@runtime_checkable
class PromptProfile(Protocol):
    """Renders a conversation for one model family and parses its turns."""

    name: str
    browse_layout: BrowseLayout

    def initial_messages(self, question: str) -> list[Message]: ...

    def tools(self) -> list[dict[str, Any]]: ...

    def render(self, messages: list[Message], template: ChatTemplate | None) -> RenderedPrompt: ...

    def parse(self, text: str, tool_calls: list[dict[str, Any]] | None = None) -> Action: ...

    def turn_messages(self, action: ToolCall, observation: str) -> list[Message]: ...

    def format_search(self, results: list[SearchResult]) -> str: ...

    def format_browse(self, results: list[BrowseResult]) -> str: ...

    def format_failure(self) -> str: ...
