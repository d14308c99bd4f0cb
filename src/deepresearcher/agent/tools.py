"""Tools the agent calls, registered by name: the built-in search and browse, and your own.

A tool is anything with a ``name``, a ``schema`` the profile shows the model, and an async
``run(arguments, context)`` that returns the observation and a :class:`ToolRecord`. The episode
loop looks a call's name up in the agent's registry and runs what it finds; it knows no tool.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from deepresearcher.agent.toolbox import Toolbox
from deepresearcher.agent.trajectory import ToolRecord, Usage
from deepresearcher.protocol.base import PromptProfile, ToolCall
from deepresearcher.protocol.native import TOOLS as _NATIVE_TOOLS
from deepresearcher.types import BrowseMemory


@dataclass
class ToolContext:
    """What a tool call may use of its episode: the question, the profile that formats
    observations, the episode's browse memory and its usage counters."""

    question: str
    profile: PromptProfile
    memory: BrowseMemory
    usage: Usage


@dataclass(frozen=True)
class ToolOutput:
    """What a tool call gives back: the observation the model reads, and the call's record."""

    observation: str
    record: ToolRecord


@runtime_checkable
class Tool(Protocol):
    """A tool the model can call by ``name``.

    ``schema`` is the OpenAI function format (``{"type": "function", "function": {"name",
    "description", "parameters"}}``); profiles list it after their search and browse tools.
    ``run`` should not raise: a failure is an observation plus ``record.error`` (the loop turns an
    exception that escapes into the profile's failure observation all the same).
    """

    name: str

    @property
    def schema(self) -> dict[str, Any]: ...

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput: ...


@dataclass(frozen=True)
class FunctionTool:
    """A tool made of a function of the call's arguments that returns the observation text.

    ``function`` gets the arguments as one dict and may be async. An exception it raises is the
    call's error: the model reads ``Error: <type>: <message>`` and the record keeps it.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[[dict[str, Any]], str | Awaitable[str]] = field(repr=False)

    @property
    def schema(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        started = time.perf_counter()
        try:
            result = self.function(arguments)
            if inspect.isawaitable(result):
                result = await result
            observation, error = str(result), None
        except Exception as exc:  # the tool's own failure: the model reads it and may retry
            error = f"{type(exc).__name__}: {exc}"
            observation = f"Error: {error}"
        record = ToolRecord(name=self.name, arguments=arguments, error=error,
                            seconds=round(time.perf_counter() - started, 4))
        return ToolOutput(observation, record)


def _native_schema(index: int, name: str) -> dict[str, Any]:
    schema = _NATIVE_TOOLS[index]
    return {**schema, "function": {**schema["function"], "name": name}}


class SearchTool:
    """The built-in search tool: the call's queries through the toolbox's search backend."""

    def __init__(self, toolbox: Toolbox, name: str = "web_search") -> None:
        self.toolbox = toolbox
        self.name = name

    @property
    def schema(self) -> dict[str, Any]:
        # Profiles render their own text for the built-in tools; this is for listings.
        return _native_schema(0, self.name)

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        queries = context.profile.queries(ToolCall(self.name, arguments))
        outcome = await self.toolbox.search(queries, context.memory)
        context.usage.search_calls += 1
        context.usage.queries += len(queries)
        record = ToolRecord(name=self.name, arguments=arguments, queries=queries,
                            error=outcome.error, hits=sum(len(r.hits) for r in outcome.results),
                            seconds=round(outcome.seconds, 4))
        if outcome.error:
            return ToolOutput(context.profile.format_failure(), record)
        return ToolOutput(context.profile.format_search(outcome.results), record)


class BrowseTool:
    """The built-in browse tool: pages of the latest search, read for the question."""

    def __init__(self, toolbox: Toolbox, name: str = "browse_webpage") -> None:
        self.toolbox = toolbox
        self.name = name

    @property
    def schema(self) -> dict[str, Any]:
        return _native_schema(1, self.name)

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolOutput:
        profile = context.profile
        urls = profile.urls(ToolCall(self.name, arguments))
        browse = await self.toolbox.browse(urls, context.question, context.memory,
                                           per_occurrence=profile.browse_layout == "per_occurrence")
        context.usage.browse_calls += 1
        context.usage.pages_read += len({r.url for r in browse.results if r.error is None})
        record = ToolRecord(name=self.name, arguments=arguments, urls=urls,
                            refused_urls=browse.refused, failed_urls=browse.failed,
                            error=browse.error,
                            extracts=sum(len(r.information) for r in browse.results),
                            seconds=round(browse.seconds, 4))
        if browse.error:
            return ToolOutput(profile.format_failure(), record)
        return ToolOutput(profile.format_browse(browse.results), record)
