"""Tool usage counters and the cost estimate built from them.

Tools record what they spend (an upstream search, a page downloaded, reader tokens) into every
:class:`ToolUsage` active in the current asyncio context. The toolbox activates two around each
tool call: its run-wide total and the episode's own, so concurrent episodes are told apart without
any tool knowing about episodes. Tasks started inside inherit the context, so fetches gathered
concurrently still count for the episode that asked.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from deepresearcher.errors import ConfigError


@dataclass
class ToolUsage:
    """What tools did, counted. ``search_queries`` counts every query; ``search_cached`` those
    answered by the cache (so ``search_upstream`` = the difference). The same for pages and reader
    calls. ``fetch_bytes`` are bytes downloaded (decoded); tokens are the reader LLM's."""

    search_queries: int = 0
    search_cached: int = 0
    pages: int = 0
    pages_cached: int = 0
    fetch_bytes: int = 0
    reader_calls: int = 0
    reader_cached: int = 0
    reader_prompt_tokens: int = 0
    reader_completion_tokens: int = 0

    @property
    def search_upstream(self) -> int:
        return self.search_queries - self.search_cached

    @property
    def pages_fetched(self) -> int:
        return self.pages - self.pages_cached

    @property
    def reader_upstream(self) -> int:
        return self.reader_calls - self.reader_cached

    def add(self, **counts: int) -> None:
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value)

    def merge(self, other: ToolUsage) -> None:
        self.add(**asdict(other))

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "search_upstream": self.search_upstream,
                "pages_fetched": self.pages_fetched, "reader_upstream": self.reader_upstream}


_ACTIVE: contextvars.ContextVar[tuple[ToolUsage, ...]] = contextvars.ContextVar(
    "deepresearcher_tool_usage", default=()
)


def record(**counts: int) -> None:
    """Add ``counts`` (field name -> amount) to every usage counter active in this context."""
    for usage in _ACTIVE.get():
        usage.add(**counts)


@contextlib.contextmanager
def counting(*usages: ToolUsage) -> Iterator[None]:
    """Within the block (and the tasks it starts), :func:`record` also adds to ``usages``."""
    token = _ACTIVE.set(_ACTIVE.get() + usages)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


# Example list prices in USD, as of mid-2025: check your own plan and override them (YAML or
# flags). Search: per 1,000 upstream queries. Reader: per million tokens.
DEFAULT_SEARCH_PRICES: dict[str, float] = {
    "serper": 1.00,
    "tavily": 8.00,
    "brave": 5.00,
    "searxng": 0.0,
    "ddgs": 0.0,
    "local": 0.0,
}
DEFAULT_READER_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1-mini": (0.40, 1.60),
}


@dataclass(frozen=True)
class PriceTable:
    """Prices for the cost estimate. ``search``: provider -> USD per 1,000 upstream queries;
    ``reader``: model -> (USD per 1M prompt tokens, USD per 1M completion tokens). Unknown
    providers and models cost ``default_search`` / ``default_reader``."""

    search: Mapping[str, float]
    reader: Mapping[str, tuple[float, float]]
    default_search: float = 0.0
    default_reader: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def defaults(cls) -> PriceTable:
        return cls(dict(DEFAULT_SEARCH_PRICES), dict(DEFAULT_READER_PRICES))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> PriceTable:
        """Defaults overridden by ``{"search": {name: usd_per_1k}, "reader": {model: {"prompt":
        usd_per_1m, "completion": usd_per_1m}}}`` (the YAML shape); a bad entry is a ConfigError."""
        base = cls.defaults()
        if not data:
            return base
        search = dict(base.search)
        reader = dict(base.reader)
        try:
            for name, price in (data.get("search") or {}).items():
                search[str(name)] = float(price)
            for name, price in (data.get("reader") or {}).items():
                if isinstance(price, Mapping):
                    reader[str(name)] = (float(price["prompt"]), float(price["completion"]))
                else:
                    prompt, completion = price
                    reader[str(name)] = (float(prompt), float(completion))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"bad price table: {exc!r}",
                hint="search: {serper: 1.0} (USD per 1,000 queries); "
                "reader: {gpt-4o-mini: {prompt: 0.15, completion: 0.6}} (USD per 1M tokens)",
            ) from exc
        return cls(search, reader)

    def estimate(self, usage: ToolUsage, *, search: str | None, reader_model: str | None) -> float:
        """Estimated USD of ``usage`` with the given search provider(s) and reader model. For a
        fallback chain (``"serper,searxng"``) the first provider's price is used."""
        provider = (search or "").split(",")[0].strip()
        per_query = self.search.get(provider, self.default_search) / 1000
        prompt, completion = (self.reader.get(reader_model, self.default_reader)
                              if reader_model else (0.0, 0.0))
        return round(
            usage.search_upstream * per_query
            + usage.reader_prompt_tokens * prompt / 1e6
            + usage.reader_completion_tokens * completion / 1e6,
            6,
        )


def load_prices(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A price table from a YAML file (the shape :meth:`PriceTable.from_mapping` takes)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the price table {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a price table is a mapping with search: and reader:")
    PriceTable.from_mapping(data)  # validate now, not at the end of a run
    return data


USAGE_FIELDS = tuple(f.name for f in fields(ToolUsage))
