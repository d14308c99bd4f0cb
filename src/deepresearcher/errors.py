"""Typed errors. Each carries a one-line message and, where useful, a hint for the user."""

from __future__ import annotations


class DeepResearcherError(Exception):
    """Base class of every error this package raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(DeepResearcherError):
    """A setting, flag or configuration file is wrong."""


class DataError(DeepResearcherError):
    """A dataset file or row is malformed."""


class CacheError(DeepResearcherError):
    """A tool cache file cannot be used. ``kind``: is_directory, not_sqlite, not_a_cache,
    schema_version, corrupt, unreadable, unwritable, locked, error."""

    def __init__(self, message: str, *, kind: str = "error", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind


class SearchError(DeepResearcherError):
    """A search backend failed. ``kind`` says how: missing_index, bad_query, auth, quota, ..."""

    def __init__(self, message: str, *, kind: str = "error", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind


class IndexNotFoundError(SearchError):
    """A local search index is missing or unreadable."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, kind="missing_index", hint=hint)


class FetchError(DeepResearcherError):
    """A page could not be fetched. ``kind``: not_found, blocked, too_large, timeout, unsupported, ..."""

    def __init__(self, message: str, *, kind: str = "error", url: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.url = url


class ExtractError(DeepResearcherError):
    """Text could not be extracted from fetched content."""


class PolicyError(DeepResearcherError):
    """The policy (the model) could not produce a turn. ``kind``: unreachable, model_not_found,
    context_overflow, bad_response, http_error, ..."""

    def __init__(self, message: str, *, kind: str = "error", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind


class ContextOverflowError(PolicyError):
    """The prompt plus the turn budget would not fit in the model's context window."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, kind="context_overflow", hint=hint)


# The kinds of FetchError the fetchers raise, for docs and for callers that branch on them.
FETCH_ERROR_KINDS = (
    "blocked", "timeout", "too_large", "too_many_redirects", "http_status", "unsupported_type",
    "unsupported_encoding", "unsupported", "extract_failed", "extract_timeout", "network",
    "not_found", "error", "internal",
)


class ReaderError(DeepResearcherError):
    """The LLM reader could not read a page. ``kind``: auth, unreachable, timeout, http_error,
    bad_response, ..."""

    def __init__(self, message: str, *, kind: str = "error", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
