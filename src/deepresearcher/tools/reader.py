"""The extractive reader: picks the passages of a page that answer the question, with no LLM.

It stands in for the paper's LLM reader (which summarized each 40,960-character chunk) wherever a
model call per page is too slow or too costly: training in a local world, tests, CPU-only runs.
"""

from __future__ import annotations

import asyncio
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from deepresearcher.types import BrowseMemory, Document, PageExtract

# English function words, question words included: they never tell passages apart.
_STOPWORD_TEXT = """
a about above after again against all also am an and any are aren as at be because been before
being below between both but by can cannot could did didn do does doesn doing don down during each
ever few for from further had has have having he her here hers herself him himself his how i if in
into is isn it its itself just let ll many me more most much my myself no nor not of off on once one
only or other ought our ours ourselves out over own re same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up ve very
was wasn we were what when where which while who whom whose why will with won would you your yours
yourself yourselves s t d m
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"\w+")
_HEADING = re.compile(r"#{1,6} [^\n]*")
# Whitespace after . ! ? (or after one closing quote/bracket that follows them): split() drops it.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))\s+")


def terms(text: str) -> list[str]:
    """The index terms of ``text``: lowercased, accents folded, stopwords dropped, light-stemmed."""
    text = text.lower()
    if not text.isascii():
        text = "".join(
            ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
        )
    return [
        _stem(word)
        for word in _WORD.findall(text)
        if word not in STOPWORDS and (len(word) > 1 or word.isdigit())
    ]


def _stem(word: str) -> str:
    """A light suffix stemmer (plurals, -ed, -ing, final -e/-y): enough to match "died" with
    "die" and "cities" with "city" without a stemming library."""
    if len(word) <= 2 or not word.isalpha():
        return word
    if word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "i"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ied") and len(word) > 4:
        word = word[:-3] + "i"
    elif word.endswith("ed") and not word.endswith("eed") and len(word) > 3:
        word = word[:-2]
    elif word.endswith("ing") and len(word) > 5:
        word = word[:-3]
    if word.endswith("e") and len(word) > 2:
        word = word[:-1]
    elif word.endswith("y") and len(word) > 3 and word[-2] not in "aeiou":
        word = word[:-1] + "i"
    return word


def normalize_extract(text: str) -> str:
    """The form in which extracts are remembered in ``BrowseMemory.seen``."""
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class _Passage:
    chunk: int
    position: int
    text: str
    tf: Counter[str]
    length: int


@dataclass(frozen=True)
class _Scored:
    passage: _Passage
    score: float  # BM25 against the weighted question + sub-question
    relevance: float  # idf-weighted share of the query terms the passage contains, in [0, 1]
    coverage: float  # the same share for the question's terms alone


class ExtractiveReader:
    """A :class:`~deepresearcher.tools.base.Reader` that extracts the passages most relevant to
    the question, chunk by chunk, scored with BM25 against the question and the sub-question.

    Args:
        max_extract_chars: cap on the text of one extract (one chunk's passages).
        max_chunks_per_url: most unread chunks read in one browse of a URL.
        passage_chars: passages are paragraphs, or groups of sentences/lines up to this size.
        max_passages_per_chunk: most passages taken from one chunk.
        min_relevance: a passage must hold this idf-weighted share of the query terms.
        stop_coverage: stop reading once a chunk has a passage holding this share of the
            question's terms (the question looks answered).
        question_weight, sub_question_weight: weights of the two queries' terms.
    """

    def __init__(
        self,
        max_extract_chars: int = 1200,
        max_chunks_per_url: int = 8,
        *,
        passage_chars: int = 400,
        max_passages_per_chunk: int = 3,
        min_relevance: float = 0.3,
        stop_coverage: float = 0.7,
        question_weight: float = 0.5,
        sub_question_weight: float = 1.0,
        k1: float = 1.2,
        b: float = 0.75,
    ) -> None:
        if max_chunks_per_url < 1 or max_extract_chars < 1:
            raise ValueError("max_chunks_per_url and max_extract_chars must be at least 1")
        self.max_extract_chars = max_extract_chars
        self.max_chunks_per_url = max_chunks_per_url
        self.passage_chars = passage_chars
        self.max_passages_per_chunk = max_passages_per_chunk
        self.min_relevance = min_relevance
        self.stop_coverage = stop_coverage
        self.question_weight = question_weight
        self.sub_question_weight = sub_question_weight
        self.k1 = k1
        self.b = b

    async def read(
        self,
        document: Document,
        *,
        question: str,
        sub_question: str,
        memory: BrowseMemory,
        key: str | None = None,
    ) -> list[PageExtract]:
        """Extracts of ``document`` new to this episode, one per chunk that yielded any.

        Reads unread chunks in order and stops at a chunk that answers the question, after
        ``max_chunks_per_url`` chunks, or at the last chunk. Updates ``memory``.
        """
        # ~20 ms of CPU for 8 chunks of 8,000 chars: off the loop, so 16 concurrent rollouts do not
        # stall it. ``memory`` is this episode's alone, and the episode awaits this call.
        return await asyncio.to_thread(
            self.read_sync, document, question=question, sub_question=sub_question, memory=memory,
            key=key,
        )

    def read_sync(
        self, document: Document, *, question: str, sub_question: str, memory: BrowseMemory,
        key: str | None = None,
    ) -> list[PageExtract]:
        """:meth:`read` without the event loop."""
        question_terms = set(terms(question))
        sub_terms = set(terms(sub_question))
        if not question_terms and not sub_terms:
            return []  # nothing to match: leave the chunks unread for a better-posed browse
        read = memory.read_chunks.setdefault(key or document.url, set())
        todo = [i for i in range(len(document.chunks)) if i not in read]
        todo = todo[: self.max_chunks_per_url]
        passages = {i: self._passages(i, document.chunks[i]) for i in todo}
        score = self._scorer(
            [p for chunk in passages.values() for p in chunk], question_terms, sub_terms
        )
        extracts: list[PageExtract] = []
        best: _Scored | None = None
        for index in todo:
            read.add(index)
            scored = [score(p) for p in passages[index]]
            for s in scored:
                if s.score > 0 and (best is None or s.score > best.score):
                    best = s
            relevant = [s for s in scored if s.relevance >= self.min_relevance]
            text = self._select(relevant, memory)
            if text:
                extracts.append(PageExtract(page_number=index, page_summary=text))
            # Already-seen passages count here: an answer known from a mirror page is still known.
            if any(s.coverage >= self.stop_coverage for s in relevant):
                break
        if not extracts and best is not None:
            # Nothing cleared the threshold (the question's words may be phrased differently on
            # the page: "founder" vs "founded"), but the search engine sent the agent here: give
            # the page's single best-matching passage rather than nothing.
            text = self._select([best], memory)
            if text:
                extracts.append(PageExtract(page_number=best.passage.chunk,
                                            page_summary=text))
        return extracts

    def _passages(self, chunk_index: int, chunk: str) -> list[_Passage]:
        """Paragraphs, with long ones cut into runs of sentences (or lines, for tables/lists)."""
        pieces: list[str] = []
        for paragraph in chunk.split("\n\n"):
            paragraph = paragraph.strip()
            if not paragraph or _HEADING.fullmatch(paragraph):
                continue  # a bare heading names a section; it says nothing by itself
            if len(paragraph) <= self.passage_chars:
                pieces.append(paragraph)
                continue
            units = paragraph.split("\n") if "\n" in paragraph else _SENTENCE_END.split(paragraph)
            pieces.extend(_group(units, self.passage_chars, "\n" if "\n" in paragraph else " "))
        passages = []
        for position, text in enumerate(pieces):
            words = terms(text)
            if words:
                passages.append(_Passage(chunk_index, position, text, Counter(words), len(words)))
        return passages

    def _scorer(
        self, passages: list[_Passage], question_terms: set[str], sub_terms: set[str]
    ) -> Callable[[_Passage], _Scored]:
        """BM25 statistics over the passages about to be read, as a scoring function."""
        count = max(len(passages), 1)
        avg_length = sum(p.length for p in passages) / count or 1.0
        df: Counter[str] = Counter()
        for passage in passages:
            df.update(passage.tf.keys())
        query = question_terms | sub_terms
        idf = {t: math.log(1 + (count - df[t] + 0.5) / (df[t] + 0.5)) for t in query}
        weight = {
            t: idf[t]
            * (
                self.question_weight * (t in question_terms)
                + self.sub_question_weight * (t in sub_terms)
            )
            for t in query
        }
        total_weight = sum(weight.values()) or 1.0
        question_idf = sum(idf[t] for t in question_terms) or 1.0
        k1, b = self.k1, self.b

        def score(passage: _Passage) -> _Scored:
            present = [t for t in query if t in passage.tf]
            norm = k1 * (1 - b + b * passage.length / avg_length)
            bm25 = sum(
                weight[t] * passage.tf[t] * (k1 + 1) / (passage.tf[t] + norm) for t in present
            )
            relevance = sum(weight[t] for t in present) / total_weight
            if question_terms:
                coverage = sum(idf[t] for t in present if t in question_terms) / question_idf
            else:
                coverage = relevance
            return _Scored(passage, bm25, relevance, coverage)

        return score

    def _select(self, relevant: list[_Scored], memory: BrowseMemory) -> str:
        """The best new passages of a chunk, in page order, within the length cap."""
        chosen: list[_Scored] = []
        used = 0
        for candidate in sorted(relevant, key=lambda s: -s.score):
            if len(chosen) >= self.max_passages_per_chunk:
                break
            key = normalize_extract(candidate.passage.text)
            if key in memory.seen:
                continue
            size = len(candidate.passage.text) + (1 if chosen else 0)
            if used + size > self.max_extract_chars:
                if chosen:
                    continue  # a shorter, lower-ranked passage may still fit
                # The best passage alone is too long: keep its head rather than nothing.
                chosen.append(candidate)
                used = self.max_extract_chars
                continue
            chosen.append(candidate)
            used += size
        for candidate in chosen:
            memory.seen.add(normalize_extract(candidate.passage.text))
        chosen.sort(key=lambda s: s.passage.position)
        return _truncate("\n".join(s.passage.text for s in chosen), self.max_extract_chars)


def _group(units: Iterable[str], limit: int, joiner: str) -> list[str]:
    """Consecutive units joined into groups of at most ``limit`` characters (a longer unit
    stays whole)."""
    groups: list[str] = []
    current = ""
    for unit in units:
        unit = unit.strip()
        if not unit:
            continue
        if current and len(current) + len(joiner) + len(unit) > limit:
            groups.append(current)
            current = unit
        else:
            current = f"{current}{joiner}{unit}" if current else unit
    if current:
        groups.append(current)
    return groups


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip() + "…"
