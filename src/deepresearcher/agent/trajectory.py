"""The ``Trajectory`` record: one episode, as written to JSONL by ask, eval and train alike.

The schema is versioned (``schema_version``); docs/trajectory.md documents every field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from deepresearcher.errors import DataError
from deepresearcher.protocol.base import Action, Answer, FormatError, ToolCall

SCHEMA_VERSION = 1

Status = Literal["answered", "format_error", "max_turns", "context_exhausted", "error"]
STATUSES: tuple[str, ...] = ("answered", "format_error", "max_turns", "context_exhausted", "error")


class ActionRecord(BaseModel):
    """The parsed action of a turn."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["tool_call", "answer", "format_error"]
    think: str | None = None
    name: str | None = None
    arguments: dict[str, Any] | None = None
    answer: str | None = None
    reason: str | None = None

    @classmethod
    def from_action(cls, action: Action) -> ActionRecord:
        if isinstance(action, ToolCall):
            return cls(type="tool_call", think=action.think, name=action.name,
                       arguments=action.arguments)
        if isinstance(action, Answer):
            return cls(type="answer", think=action.think, answer=action.answer)
        assert isinstance(action, FormatError)
        return cls(type="format_error", reason=action.reason)


class ToolRecord(BaseModel):
    """What a tool did for a call: any tool fills ``name``, ``arguments``, ``error``, ``seconds``
    and may put its own counts in ``details``; the observation is the turn's ``observation``.

    ``queries`` to ``extracts`` are what the built-in search and browse tools record (kept as
    fields: readers of older files and reports use them).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    # Absent from files written before tools were registered by name.
    arguments: dict[str, Any] | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    queries: list[str] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    refused_urls: list[str] = Field(default_factory=list)
    failed_urls: dict[str, str] = Field(default_factory=dict)  # url -> error kind
    hits: int = 0
    extracts: int = 0
    error: str | None = None
    seconds: float = 0.0


class Turn(BaseModel):
    """One assistant turn and the observation it produced."""

    model_config = ConfigDict(extra="forbid")

    index: int
    text: str  # the assistant turn as generated, forced prefix included
    action: ActionRecord
    observation: str | None = None
    tool: ToolRecord | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    generate_seconds: float = 0.0


class Usage(BaseModel):
    """Counters over an episode."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    search_calls: int = 0
    queries: int = 0
    browse_calls: int = 0
    pages_read: int = 0


class Cost(BaseModel):
    """What the tools spent in an episode (or a run), and its estimated price in USD.

    Added after schema version 1 shipped, as an optional field: files without it still load.
    """

    search_queries: int = 0
    search_upstream: int = 0
    search_cached: int = 0
    pages: int = 0
    pages_fetched: int = 0
    pages_cached: int = 0
    fetch_bytes: int = 0
    reader_calls: int = 0
    reader_upstream: int = 0
    reader_cached: int = 0
    reader_prompt_tokens: int = 0
    reader_completion_tokens: int = 0
    usd: float = 0.0

    @classmethod
    def from_usage(cls, counts: dict[str, int], usd: float) -> Cost:
        known = {k: v for k, v in counts.items() if k in cls.model_fields}
        return cls(**known, usd=usd)


class Tokens(BaseModel):
    """The whole episode as token ids, with the training loss mask (1 = trained on)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    loss_mask: list[int]


class Trajectory(BaseModel):
    """One episode of the agent."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    id: str
    question: str
    golds: list[str] | None = None
    data_source: str | None = None
    group: int | None = None
    rollout: int | None = None
    profile: str
    model: str
    settings: dict[str, Any] = Field(default_factory=dict)
    messages: list[dict[str, Any]] = Field(default_factory=list)
    turns: list[Turn] = Field(default_factory=list)
    status: Status = "error"
    answer: str | None = None
    sources: list[str] = Field(default_factory=list)
    error: str | None = None
    # The error's class as a short string (``policy timeout``, ``cache locked``, ``ConfigError``,
    # ``internal KeyError``: deepresearcher.errors.error_kind); absent from older files.
    error_kind: str | None = None
    reward: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    cost: Cost | None = None
    tokens: Tokens | None = None
    started_at: str | None = None
    seconds: float = 0.0
    # The text the paper reward reads, set by the episode that rendered it (not saved: it is the
    # conversation again, re-rendered by the policy's chat template).
    _response: str | None = PrivateAttr(default=None)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=False)

    def set_response_text(self, text: str) -> None:
        self._response = text

    def __eq__(self, other: object) -> bool:
        # What is saved: a trajectory read back equals the one written.
        return isinstance(other, Trajectory) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def response_text(self) -> str:
        """Everything the episode appended after the prompt, as the reward reads it.

        As the original trained on it (PROTOCOL.md §5) when the episode rendered it: tool turns
        re-rendered by the chat template from the parsed calls, the final turn as sampled. Else
        (a trajectory read back from a file, a chat-API profile): each assistant turn and each
        tool observation, in order.
        """
        if self._response is not None:
            return self._response
        parts = []
        for turn in self.turns:
            parts.append(turn.text)
            if turn.observation is not None:
                parts.append(turn.observation)
        return "\n".join(parts)


def write_jsonl(path: Path, trajectories: list[Trajectory], *, append: bool = True) -> None:
    """Append trajectories to ``path`` (one JSON object per line), flushing each line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as fh:
        for t in trajectories:
            fh.write(t.to_json() + "\n")
            fh.flush()


def read_jsonl(path: Path) -> Iterator[Trajectory]:
    """Read trajectories back; a malformed line is a ``DataError`` naming the file and line."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {exc.start + 1}); not a "
                                "trajectory JSONL file?") from exc
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            version = data.get("schema_version") if isinstance(data, dict) else None
            if version != SCHEMA_VERSION:
                raise DataError(
                    f"{path}:{lineno}: trajectory schema_version {version!r} is not supported "
                    f"(this version reads {SCHEMA_VERSION})"
                )
            try:
                yield Trajectory.model_validate(data)
            except ValueError as exc:
                raise DataError(f"{path}:{lineno}: not a valid trajectory: {exc}") from exc
