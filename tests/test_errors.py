"""The error tree: one class per kind, drawn in the module docstring, built by ``kind=`` too, and
sent whole between processes."""

from __future__ import annotations

import pickle
import re
from multiprocessing import Pipe
from typing import get_args

import pytest

from deepresearcher import errors
from deepresearcher.errors import (
    CacheError,
    CacheErrorKind,
    CacheLocked,
    ConfigError,
    ContextOverflowError,
    DeepResearcherError,
    ExtractError,
    ExtractTimeoutError,
    FetchError,
    FetchErrorKind,
    FetchTimeout,
    KindedError,
    PolicyError,
    PolicyErrorKind,
    ReaderError,
    ReaderErrorKind,
    ReaderRateLimited,
    SearchError,
    SearchErrorKind,
    SearchQuotaExhausted,
    error_kind,
)
from deepresearcher.tools.cache import CacheMissError

FAMILIES = [(CacheError, CacheErrorKind), (SearchError, SearchErrorKind),
            (FetchError, FetchErrorKind), (ReaderError, ReaderErrorKind),
            (PolicyError, PolicyErrorKind)]
# Subclasses defined beside what raises them, with constructors of their own.
ELSEWHERE = {"cache_miss": CacheMissError}


def _subclasses(family: type[KindedError]) -> list[type[KindedError]]:
    found = []
    for cls in family.__subclasses__():
        found += [cls, *_subclasses(cls)]
    return found


@pytest.mark.parametrize(("family", "kinds"), FAMILIES, ids=lambda f: getattr(f, "__name__", ""))
def test_each_kind_of_a_family_has_exactly_one_class(family, kinds):
    by_kind = {cls.kind: cls for cls in _subclasses(family)}
    assert len(by_kind) == len(_subclasses(family))  # no two classes share a kind
    assert family.kind == "error" and set(by_kind) == set(get_args(kinds)) - {"error"}
    for kind, cls in by_kind.items():
        assert issubclass(cls, family) and issubclass(cls, DeepResearcherError)
        if kind in ELSEWHERE:
            continue
        built = family("m", kind=kind, hint="h")  # the factory form gives the subclass
        assert type(built) is cls and built.kind == kind and built.hint == "h"
        assert cls("m").kind == kind


def test_the_tree_in_the_docstring_names_every_class_with_its_kind():
    drawn = (re.search(r"[├└]── (\w+)", line) for line in (errors.__doc__ or "").splitlines())
    lines = {m.group(1): m.string for m in drawn if m}
    classes = [getattr(errors, name) for name in errors.__all__]
    assert "\n    DeepResearcherError\n" in (errors.__doc__ or "")  # the root
    for cls in [*(c for c in classes if isinstance(c, type) and c is not DeepResearcherError),
                CacheMissError]:
        assert cls.__name__ in lines, cls.__name__
        if issubclass(cls, KindedError) and cls is not KindedError:
            assert f'"{cls.kind}"' in lines[cls.__name__], lines[cls.__name__]


def test_callers_catch_classes():
    with pytest.raises(FetchTimeout):
        raise FetchError("slow", kind="timeout", url="http://a/")
    with pytest.raises(ContextOverflowError):
        raise PolicyError("too long", kind="context_overflow")
    # A subclass's kind is fixed: asking for another is a mistake, not a quiet relabel.
    with pytest.raises(TypeError, match="FetchTimeout is of kind 'timeout', not 'blocked'"):
        FetchTimeout("x", kind="blocked")


@pytest.mark.parametrize("error", [
    FetchTimeout("'http://a/' timed out", url="http://a/", hint="raise --fetch-timeout"),
    SearchQuotaExhausted("serper answered 402", provider="serper", status=402, retry_after=3.0),
    ReaderRateLimited("slow down", retry_after=2.0),
    CacheLocked("locked", hint="wait"),
    ContextOverflowError("too long"),
    ExtractTimeoutError("local://wiki/x: extraction took over 20 s", hint="raise it"),
    ExtractError("no text"),
    ConfigError("bad", hint="fix it"),
    CacheMissError("search", "0123456789abcdef0123", {"query": "q"}),
], ids=lambda e: type(e).__name__)
def test_errors_cross_processes_whole(error):
    """An extraction worker sends its ExtractError back through a pipe: class, message and every
    attribute arrive, whatever the class's constructor takes."""
    sent, received = Pipe()
    sent.send(error)
    back = received.recv()
    assert type(back) is type(error) and str(back) == str(error) and back.args == error.args
    assert vars(back) == vars(error)
    assert getattr(back, "kind", None) == getattr(error, "kind", None)
    assert pickle.loads(pickle.dumps(error)).hint == error.hint


def test_error_kind_names_the_class():
    assert error_kind(PolicyError("x", kind="http_error")) == "policy http_error"
    assert error_kind(CacheLocked("x")) == "cache locked"
    assert error_kind(FetchError("x")) == "fetch error"
    assert error_kind(CacheMissError("search", "k" * 16, {"query": "q"})) == "search cache_miss"
    assert error_kind(ConfigError("x")) == "ConfigError"
    assert error_kind(KeyError("x")) == "internal KeyError"
