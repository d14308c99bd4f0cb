"""Typed errors, in one tree. Each carries a one-line message and, where useful, a hint.

Callers catch classes (``except FetchTimeout``); ``kind`` is the same fact as a string, for the
records that outlive the exception (a trajectory's ``failed_urls`` and ``error_kind``, ``--json``
output). Building a family with a kind, ``FetchError(msg, kind="timeout")``, gives its subclass.

    DeepResearcherError
    ├── ConfigError                  a setting, flag or configuration file is wrong
    ├── DataError                    a dataset file or row is malformed
    │   └── ChecksumError            (models.shipped) a shipped file fails its checksum
    ├── ExtractError                 text could not be extracted from fetched content
    │   └── ExtractTimeoutError      extraction passed its deadline (its worker was killed)
    └── KindedError                  a family whose subclasses each fix one ``kind``
        ├── CacheError                   kind "error"
        │   ├── CacheIsDirectory             "is_directory"
        │   ├── CacheNotSQLite               "not_sqlite"
        │   ├── CacheNotACache               "not_a_cache"
        │   ├── CacheSchemaVersion           "schema_version"
        │   ├── CacheCorrupt                 "corrupt"
        │   ├── CacheUnreadable              "unreadable"
        │   ├── CacheUnwritable              "unwritable"
        │   └── CacheLocked                  "locked"
        ├── SearchError                  kind "error"
        │   ├── IndexNotFoundError           "missing_index"
        │   ├── CacheMissError               "cache_miss" (tools.cache: a replay miss)
        │   ├── SearchBadQuery               "bad_query"
        │   ├── SearchAuthFailed             "auth"
        │   ├── SearchQuotaExhausted         "quota"
        │   ├── SearchRateLimited            "rate_limited"
        │   ├── SearchTimeout                "timeout"
        │   ├── SearchServerError            "server"
        │   ├── SearchMalformedReply         "malformed"
        │   ├── SearchUnreachable            "unreachable"
        │   ├── SearchHTTPError              "http_error"
        │   └── SearchMisconfigured          "config"
        ├── FetchError                   kind "error"
        │   ├── FetchBlocked                 "blocked"
        │   ├── FetchTimeout                 "timeout"
        │   ├── FetchTooLarge                "too_large"
        │   ├── FetchTooManyRedirects        "too_many_redirects"
        │   ├── FetchHTTPStatus              "http_status"
        │   ├── FetchUnsupportedType         "unsupported_type"
        │   ├── FetchUnsupportedEncoding     "unsupported_encoding"
        │   ├── FetchUnsupportedURL          "unsupported"
        │   ├── FetchNotFound                "not_found"
        │   ├── FetchNetworkError            "network"
        │   ├── FetchExtractFailed           "extract_failed"
        │   ├── FetchExtractTimeout          "extract_timeout"
        │   └── FetchInternalError           "internal"
        ├── ReaderError                  kind "error"
        │   ├── ReaderAuthFailed             "auth"
        │   ├── ReaderRateLimited            "rate_limited"
        │   ├── ReaderServerError            "server"
        │   ├── ReaderUnreachable            "unreachable"
        │   ├── ReaderTimeout                "timeout"
        │   ├── ReaderHTTPError              "http_error"
        │   └── ReaderBadResponse            "bad_response"
        └── PolicyError                  kind "error"
            ├── PolicyUnreachable            "unreachable"
            ├── PolicyTimeout                "timeout"
            ├── PolicyAuthFailed             "auth"
            ├── PolicyModelNotFound          "model_not_found"
            ├── PolicyRateLimited            "rate_limited"
            ├── PolicyHTTPError              "http_error"
            ├── PolicyBadResponse            "bad_response"
            ├── PolicyBadRequest             "bad_request"
            ├── PolicyGenerationFailed       "generation_failed"
            ├── PolicyMissingDependency      "missing_dependency"
            └── ContextOverflowError         "context_overflow"
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, TypeVar, cast

__all__ = [
    "CacheCorrupt", "CacheError", "CacheErrorKind", "CacheIsDirectory", "CacheLocked",
    "CacheNotACache", "CacheNotSQLite", "CacheSchemaVersion", "CacheUnreadable",
    "CacheUnwritable", "ConfigError", "ContextOverflowError", "DataError", "DeepResearcherError",
    "ExtractError", "ExtractTimeoutError", "FetchBlocked", "FetchError", "FetchErrorKind",
    "FetchExtractFailed", "FetchExtractTimeout", "FetchHTTPStatus", "FetchInternalError",
    "FetchNetworkError", "FetchNotFound", "FetchTimeout", "FetchTooLarge", "FetchTooManyRedirects",
    "FetchUnsupportedEncoding", "FetchUnsupportedType", "FetchUnsupportedURL",
    "IndexNotFoundError", "KindedError", "PolicyAuthFailed", "PolicyBadRequest",
    "PolicyBadResponse", "PolicyError", "PolicyErrorKind", "PolicyGenerationFailed",
    "PolicyHTTPError", "PolicyMissingDependency", "PolicyModelNotFound", "PolicyRateLimited",
    "PolicyTimeout", "PolicyUnreachable", "ReaderAuthFailed", "ReaderBadResponse", "ReaderError",
    "ReaderErrorKind", "ReaderHTTPError", "ReaderRateLimited", "ReaderServerError",
    "ReaderTimeout", "ReaderUnreachable", "SearchAuthFailed", "SearchBadQuery", "SearchError",
    "SearchErrorKind", "SearchHTTPError", "SearchMalformedReply", "SearchMisconfigured", "SearchQuotaExhausted",
    "SearchRateLimited", "SearchServerError", "SearchTimeout", "SearchUnreachable", "error_kind",
]  # fmt: skip

CacheErrorKind = Literal[
    "error", "is_directory", "not_sqlite", "not_a_cache", "schema_version", "corrupt",
    "unreadable", "unwritable", "locked",
]  # fmt: skip
SearchErrorKind = Literal[
    "error", "missing_index", "cache_miss", "bad_query", "auth", "quota", "rate_limited",
    "timeout", "server", "malformed", "unreachable", "http_error", "config",
]  # fmt: skip
FetchErrorKind = Literal[
    "error", "blocked", "timeout", "too_large", "too_many_redirects", "http_status",
    "unsupported_type", "unsupported_encoding", "unsupported", "not_found", "network",
    "extract_failed", "extract_timeout", "internal",
]  # fmt: skip
ReaderErrorKind = Literal[
    "error", "auth", "rate_limited", "server", "unreachable", "timeout", "http_error",
    "bad_response",
]  # fmt: skip
PolicyErrorKind = Literal[
    "error", "unreachable", "timeout", "auth", "model_not_found", "rate_limited", "http_error",
    "bad_response", "bad_request", "generation_failed", "missing_dependency", "context_overflow",
]  # fmt: skip


_Kinded = TypeVar("_Kinded", bound="KindedError")


def _rebuild(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    return BaseException.__new__(cls, *args)


class DeepResearcherError(Exception):
    """Base class of every error this package raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (an extraction worker sends its errors back) without calling __init__, whose
        # arguments differ by subclass; the attributes (kind, url, hint, ...) travel as state.
        return _rebuild, (type(self), self.args), self.__dict__


class ConfigError(DeepResearcherError):
    """A setting, flag or configuration file is wrong."""


class DataError(DeepResearcherError):
    """A dataset file or row is malformed."""


class ExtractError(DeepResearcherError):
    """Text could not be extracted from fetched content."""


class ExtractTimeoutError(ExtractError):
    """Extraction did not finish within its deadline (its worker was killed)."""


class KindedError(DeepResearcherError):
    """An error of a family (``FetchError``, ``SearchError``, ...) whose subclasses each fix one
    ``kind``. ``Family(message, kind=k)`` builds the family's subclass for ``k``."""

    kind: str = "error"
    family: ClassVar[str] = ""  # the word an episode's ``error_kind`` starts with
    _by_kind: ClassVar[dict[str, type[KindedError]]] = {}

    def __init_subclass__(cls, **options: Any) -> None:
        super().__init_subclass__(**options)
        if KindedError in cls.__bases__:
            cls._by_kind = {}
        elif "kind" in cls.__dict__ and "__init__" not in cls.__dict__:
            # A subclass with a constructor of its own (CacheMissError) is built by name only.
            cls._by_kind.setdefault(cls.kind, cls)

    def __new__(cls: type[_Kinded], *args: Any, kind: str | None = None,
                **options: Any) -> _Kinded:
        chosen = cls._by_kind.get(kind, cls) if kind is not None else cls
        if not issubclass(chosen, cls):
            chosen = cls
        return cast(_Kinded, Exception.__new__(chosen))

    def __init__(self, message: str, *, kind: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        if kind is not None and kind != self.kind:
            if KindedError not in type(self).__bases__:
                raise TypeError(f"{type(self).__name__} is of kind {self.kind!r}, not {kind!r}")
            self.kind = kind  # a kind that no subclass fixes


class CacheError(KindedError):
    """A tool cache file cannot be used."""

    kind: CacheErrorKind = "error"
    family = "cache"

    def __init__(self, message: str, *, kind: CacheErrorKind | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, kind=kind, hint=hint)


class CacheIsDirectory(CacheError):
    """The cache path is a directory."""

    kind = "is_directory"


class CacheNotSQLite(CacheError):
    """The cache file is not a SQLite database."""

    kind = "not_sqlite"


class CacheNotACache(CacheError):
    """The file is a SQLite database of something else."""

    kind = "not_a_cache"


class CacheSchemaVersion(CacheError):
    """The file is a tool cache of another schema version."""

    kind = "schema_version"


class CacheCorrupt(CacheError):
    """The cache file is damaged."""

    kind = "corrupt"


class CacheUnreadable(CacheError):
    """The cache file cannot be opened for reading."""

    kind = "unreadable"


class CacheUnwritable(CacheError):
    """The cache file or its folder cannot be written."""

    kind = "unwritable"


class CacheLocked(CacheError):
    """Another process held the cache locked for too long."""

    kind = "locked"


class SearchError(KindedError):
    """A search backend failed. ``provider``, ``status`` and ``retry_after`` are set by web
    providers: the provider's name, the HTTP status of its reply, the wait it asked for (s)."""

    kind: SearchErrorKind = "error"
    family = "search"
    provider: str | None = None
    status: int | None = None
    retry_after: float | None = None

    def __init__(self, message: str, *, kind: SearchErrorKind | None = None,
                 provider: str | None = None, status: int | None = None,
                 retry_after: float | None = None, hint: str | None = None) -> None:
        super().__init__(message, kind=kind, hint=hint)
        self.provider, self.status, self.retry_after = provider, status, retry_after


class IndexNotFoundError(SearchError):
    """A local search index is missing or unreadable."""

    kind = "missing_index"


class SearchBadQuery(SearchError):
    """The query cannot be searched (empty)."""

    kind = "bad_query"


class SearchAuthFailed(SearchError):
    """The provider refused the API key (401/403)."""

    kind = "auth"


class SearchQuotaExhausted(SearchError):
    """The provider's plan or credits are used up."""

    kind = "quota"


class SearchRateLimited(SearchError):
    """The provider asked to slow down (429)."""

    kind = "rate_limited"


class SearchTimeout(SearchError):
    """The provider did not answer in time."""

    kind = "timeout"


class SearchServerError(SearchError):
    """The provider failed on its side (5xx)."""

    kind = "server"


class SearchMalformedReply(SearchError):
    """The provider's reply is not what its API sends."""

    kind = "malformed"


class SearchUnreachable(SearchError):
    """The provider cannot be reached."""

    kind = "unreachable"


class SearchHTTPError(SearchError):
    """The provider answered with another HTTP error."""

    kind = "http_error"


class SearchMisconfigured(SearchError):
    """The provider is set up in a way that cannot serve searches (SearXNG without JSON)."""

    kind = "config"


class FetchError(KindedError):
    """A page could not be fetched. ``url``: the page asked for."""

    kind: FetchErrorKind = "error"
    family = "fetch"
    url: str | None = None

    def __init__(self, message: str, *, kind: FetchErrorKind | None = None,
                 url: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, kind=kind, hint=hint)
        self.url = url


class FetchBlocked(FetchError):
    """The URL may not be fetched (scheme, address, or a path out of a local site)."""

    kind = "blocked"


class FetchTimeout(FetchError):
    """The page did not arrive in time."""

    kind = "timeout"


class FetchTooLarge(FetchError):
    """The page is larger than the byte cap."""

    kind = "too_large"


class FetchTooManyRedirects(FetchError):
    """The redirect chain is longer than allowed."""

    kind = "too_many_redirects"


class FetchHTTPStatus(FetchError):
    """The server answered with an HTTP error (or a redirect without a Location)."""

    kind = "http_status"


class FetchUnsupportedType(FetchError):
    """The page is of a type no extractor reads (an image, an archive, binary data)."""

    kind = "unsupported_type"


class FetchUnsupportedEncoding(FetchError):
    """The body is compressed with a coding that was not asked for."""

    kind = "unsupported_encoding"


class FetchUnsupportedURL(FetchError):
    """The fetcher does not serve this URL (another scheme or local site)."""

    kind = "unsupported"


class FetchNotFound(FetchError):
    """No page at this URL."""

    kind = "not_found"


class FetchNetworkError(FetchError):
    """The host cannot be resolved or reached, or the download broke."""

    kind = "network"


class FetchExtractFailed(FetchError):
    """The page arrived, but no text could be extracted from it."""

    kind = "extract_failed"


class FetchExtractTimeout(FetchError):
    """Extracting the page's text passed its deadline."""

    kind = "extract_timeout"


class FetchInternalError(FetchError):
    """The fetcher failed with an error of its own (a bug or a library's error)."""

    kind = "internal"


class ReaderError(KindedError):
    """The LLM reader could not read a page. ``retry_after``: the wait the server asked for."""

    kind: ReaderErrorKind = "error"
    family = "reader"
    retry_after: float | None = None

    def __init__(self, message: str, *, kind: ReaderErrorKind | None = None,
                 retry_after: float | None = None, hint: str | None = None) -> None:
        super().__init__(message, kind=kind, hint=hint)
        self.retry_after = retry_after


class ReaderAuthFailed(ReaderError):
    """The reader's server refused the API key."""

    kind = "auth"


class ReaderRateLimited(ReaderError):
    """The reader's server asked to slow down (429)."""

    kind = "rate_limited"


class ReaderServerError(ReaderError):
    """The reader's server failed on its side."""

    kind = "server"


class ReaderUnreachable(ReaderError):
    """The reader's server cannot be reached."""

    kind = "unreachable"


class ReaderTimeout(ReaderError):
    """The reader's server did not answer in time."""

    kind = "timeout"


class ReaderHTTPError(ReaderError):
    """The reader's server answered with another HTTP error."""

    kind = "http_error"


class ReaderBadResponse(ReaderError):
    """The reader's reply is malformed or too large."""

    kind = "bad_response"


class PolicyError(KindedError):
    """The policy (the model) could not produce a turn."""

    kind: PolicyErrorKind = "error"
    family = "policy"

    def __init__(self, message: str, *, kind: PolicyErrorKind | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, kind=kind, hint=hint)


class PolicyUnreachable(PolicyError):
    """The policy server cannot be reached."""

    kind = "unreachable"


class PolicyTimeout(PolicyError):
    """The policy server did not answer in time."""

    kind = "timeout"


class PolicyAuthFailed(PolicyError):
    """The policy server refused the API key."""

    kind = "auth"


class PolicyModelNotFound(PolicyError):
    """The model cannot be found (not served, not on disk, not on the Hub)."""

    kind = "model_not_found"


class PolicyRateLimited(PolicyError):
    """The policy server kept asking to slow down."""

    kind = "rate_limited"


class PolicyHTTPError(PolicyError):
    """The policy server answered with another HTTP error."""

    kind = "http_error"


class PolicyBadResponse(PolicyError):
    """The policy server's reply is malformed or too large."""

    kind = "bad_response"


class PolicyBadRequest(PolicyError):
    """The request cannot be generated (an empty prompt, a bad option)."""

    kind = "bad_request"


class PolicyGenerationFailed(PolicyError):
    """Local generation failed."""

    kind = "generation_failed"


class PolicyMissingDependency(PolicyError):
    """A package the policy needs (PyTorch) is not installed."""

    kind = "missing_dependency"


class ContextOverflowError(PolicyError):
    """The prompt plus the turn budget would not fit in the model's context window."""

    kind = "context_overflow"


def error_kind(exc: BaseException) -> str:
    """What an episode records as its ``error_kind``: ``FAMILY KIND`` for an error of a family
    with kinds (``policy http_error``, ``cache locked``), the class name for another error of
    ours (``ConfigError``), ``internal TYPE`` for any other exception (``internal KeyError``)."""
    if isinstance(exc, KindedError):
        return f"{exc.family} {exc.kind}"
    if isinstance(exc, DeepResearcherError):
        return type(exc).__name__
    return f"internal {type(exc).__name__}"
