"""An expert policy for fictional-world questions: good demonstrations, written by the real agent.

The expert plays the model's part in the real episode loop (it implements ``Policy``), while the
real toolbox runs every search and browse. Each turn it re-reads the conversation it is given and
acts like a careful researcher who knows which pages hold the answer (the question record's
``supporting_urls``) but not what they say:

- search with queries built from the question (or, on a later hop, from the bridge entity the
  previous page named);
- browse the page it needs once the latest results list it, and search again with the page's
  title when they do not;
- move to the next hop only once the page it read states the evidence (``evidence[i].text``);
- answer with the first gold alias once every page has stated its evidence.

Its turns are in the exact deepresearcher-7b format (PROTOCOL.md §4), so the episodes it writes
(with token ids and loss masks) are SFT data that teach a model the format and the research habit.
"""

from __future__ import annotations

import ast
import asyncio
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearcher.agent.policy import Generation, SamplingParams
from deepresearcher.errors import DataError, PolicyBadRequest
from deepresearcher.protocol.base import Message, RenderedPrompt
from deepresearcher.protocol.deepresearcher7b import BROWSE_WEBPAGE, WEB_SEARCH

# What a page must be read for, by the relation/attribute names of the world's question templates
# (``org.founder.birthplace`` ...): the phrase for the think text, and the word a researcher adds
# to the query (the word the page itself uses, so the reader picks the right passage).
KEYWORDS: dict[str, tuple[str, str]] = {
    "founder": ("founder", "founder"),
    "author": ("author", "author"),
    "spouse": ("spouse", "spouse"),
    "birthplace": ("birthplace", "born"),
    "deathplace": ("place of death", "died"),
    "member_of": ("organisation", "member"),
    "hq": ("headquarters", "headquarters"),
    "organiser": ("organiser", "organised"),
    "location": ("location", "held"),
    "country": ("country", "country"),
    "capital": ("capital", "capital"),
    "born": ("year of birth", "born"),
    "died": ("year of death", "died"),
    "founded": ("founding year", "founded"),
    "year": ("year", "year"),
    "occupation": ("occupation", "occupation"),
    "genre": ("genre", "genre"),
    "river": ("river", "river"),
    "population": ("population", "population"),
    "currency": ("currency", "currency"),
    "language": ("official language", "language"),
    "same_country": ("country", "country"),
    "same_birthplace": ("birthplace", "born"),
    "same_occupation": ("occupation", "occupation"),
}

MAX_BROWSES_PER_PAGE = 3  # re-reading a page returns only new extracts; give up on it after this

# How the expert words its turns: ``varied`` reads like a careful human researcher (several phrasings,
# focused queries); ``terse`` is written for tiny models trained from scratch: one short fixed
# sentence a turn, the question itself as the first query, and results named by their rank, so a
# small transformer only has to copy spans (the question, a URL, a value) to imitate it.
EXPERT_STYLES = ("varied", "terse")
_RANKS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
          "tenth")


@dataclass(frozen=True)
class ExpertCase:
    """A world question with the pages that answer it (a record of ``questions/<split>.jsonl``)."""

    id: str
    question: str
    answers: tuple[str, ...]
    supporting_urls: tuple[str, ...]
    evidence: tuple[str, ...]  # what page i states: the next hop's entity, or the final value
    question_type: str = "single_hop"
    template: str | None = None
    data_source: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, index: int = 0) -> ExpertCase:
        """Read a question record; a ``DataError`` names what is missing."""
        try:
            urls = tuple(str(u) for u in record["supporting_urls"])
            by_url = [(str(e["url"]), str(e["text"])) for e in record["evidence"]]
            answers = tuple(str(a) for a in record["answers"])
            question = str(record["question"])
        except (KeyError, TypeError) as exc:
            raise DataError(
                f"question record {index} lacks {exc} (needs question, answers, supporting_urls, "
                "evidence)",
                hint="use the questions/<split>.jsonl of a world built by deepresearcher world "
                "build",
            ) from None
        if not urls or [u for u, _ in by_url] != list(urls) or not answers:
            raise DataError(
                f"question record {index}: evidence must name the supporting_urls "
                "in order, and answers must not be empty"
            )
        return cls(
            id=str(record.get("index", index)),
            question=question,
            answers=answers,
            supporting_urls=urls,
            evidence=tuple(t for _, t in by_url),
            question_type=str(record.get("question_type", "single_hop")),
            template=record.get("template"),
            data_source=record.get("data_source"),
        )

    @property
    def parallel(self) -> bool:
        """Comparison questions name every page up front; chains reveal them one hop at a time."""
        return self.question_type == "comparison"

    def keyword(self, page: int) -> tuple[str, str] | None:
        """What page ``page`` must be read for, when the template says: (phrase, query word)."""
        if not self.template:
            return None
        steps = self.template.split(".")[1:]
        if self.parallel:
            return KEYWORDS.get(steps[-1]) if steps else None
        return KEYWORDS.get(steps[page]) if page < len(steps) else None


def load_cases(path: Path, *, limit: int | None = None, spread: bool = False) -> list[ExpertCase]:
    """Question records of a world split (JSONL) as cases, in file order: the first ``limit``,
    or with ``spread`` ``limit`` evenly spaced ones (splits are grouped by source, so a spread
    sample covers every source)."""
    cases: list[ExpertCase] = []
    with Path(path).open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if limit is not None and not spread and len(cases) >= limit:
                break
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{i + 1}: not valid JSON ({exc.msg})") from None
                cases.append(ExpertCase.from_record(record, index=i))
    if spread and limit is not None and len(cases) > limit:
        cases = [cases[i * len(cases) // limit] for i in range(limit)]
    return cases


# Reading the conversation ------------------------------------------------------------------------


@dataclass
class _State:
    """What the expert knows, rebuilt from the conversation at every turn."""

    confirmed: set[int] = field(default_factory=set)  # pages that stated their evidence
    read: dict[str, str] = field(default_factory=dict)  # url -> text browsed from it
    seen: dict[str, str] = field(default_factory=dict)  # url -> its snippets in search results
    titles: dict[str, str] = field(default_factory=dict)  # url -> title seen in results
    latest: list[str] = field(default_factory=list)  # urls of the latest search, in rank order
    aimed: set[int] = field(default_factory=set)  # pages the latest search looked for
    browsed: dict[str, int] = field(default_factory=dict)  # url -> browses since latest search
    ever_browsed: set[str] = field(default_factory=set)
    last_new: dict[str, bool] = field(default_factory=dict)  # url -> last browse gave new text
    searches: dict[int, int] = field(default_factory=dict)  # page -> searches aimed at it
    turns: int = 0


def _tool_turns(messages: Sequence[Message]) -> Iterable[tuple[str, dict[str, Any], str]]:
    """(tool name, arguments, observation) of each finished tool turn of the conversation."""
    for i in range(2, len(messages) - 1):
        message, reply = messages[i], messages[i + 1]
        if message.get("role") != "assistant" or reply.get("role") != "tool":
            continue
        calls = message.get("tool_calls") or []
        if not calls:
            continue
        function = calls[0].get("function", {})
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):  # the OpenAI wire format carries arguments as JSON text
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                arguments = {}
        yield str(function.get("name")), dict(arguments), str(reply.get("content") or "")


def _payload(observation: str) -> list[dict[str, Any]]:
    """A tool observation (the repr of a list of dicts, PROTOCOL.md §5) back as data."""
    try:
        value = ast.literal_eval(observation)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return []
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _contains(text: str, needle: str) -> bool:
    return needle.casefold() in text.casefold()


class _Reader:
    """Replays a conversation into a :class:`_State` for one case."""

    def __init__(self, case: ExpertCase) -> None:
        self.case = case

    def targets(self, state: _State) -> list[int]:
        """The pages to read now: every unconfirmed one for a comparison, else the next hop."""
        pending = [i for i in range(len(self.case.supporting_urls)) if i not in state.confirmed]
        return pending if self.case.parallel else pending[:1]

    def replay(self, messages: Sequence[Message]) -> _State:
        state = _State(turns=sum(1 for m in messages[2:] if m.get("role") == "assistant"))
        for name, arguments, observation in _tool_turns(messages):
            payload = _payload(observation)
            if name == WEB_SEARCH:
                state.aimed = set(self.targets(state))
                for page in state.aimed:
                    state.searches[page] = state.searches.get(page, 0) + 1
                state.latest, state.browsed, state.last_new = [], {}, {}
                for result in payload:
                    for hit in result.get("web_page_info_list") or []:
                        url = str(hit.get("url", ""))
                        state.titles.setdefault(url, str(hit.get("title", "")))
                        state.seen[url] = (
                            state.seen.get(url, "") + "\n" + str(hit.get("quick_summary", ""))
                        )
                        if url not in state.latest:
                            state.latest.append(url)
            elif name == BROWSE_WEBPAGE:
                got: dict[str, str] = {}
                for result in payload:
                    texts = [
                        str(x.get("page_summary", "")) for x in result.get("information") or []
                    ]
                    # A URL may have several entries (one per search-result occurrence).
                    url = str(result.get("url", ""))
                    got[url] = "\n".join(filter(None, [got.get(url, ""), *texts]))
                for url in map(str, arguments.get("url_list") or []):
                    state.browsed[url] = state.browsed.get(url, 0) + 1
                    state.ever_browsed.add(url)
                    state.last_new[url] = bool(got.get(url, "").strip())
                    state.read[url] = state.read.get(url, "") + "\n" + got.get(url, "")
                self._confirm(state)
        return state

    def _confirm(self, state: _State) -> None:
        """Mark the pages (in hop order for a chain) whose text, browsed or in their own search
        snippets, states their evidence; a page counts only once it has been browsed."""
        while True:
            progressed = False
            for page in self.targets(state):
                url = self.case.supporting_urls[page]
                known = state.read.get(url, "") + state.seen.get(url, "")
                if url in state.ever_browsed and _contains(known, self.case.evidence[page]):
                    state.confirmed.add(page)
                    progressed = True
            if not progressed or self.case.parallel:
                return


# Think text --------------------------------------------------------------------------------------

_SEARCH_FIRST = (
    "The question is about {name}. I should look it up first.",
    "I need to find out about {name}. Let me search for it.",
    "To answer this I first need information on {name}. I'll search.",
    "Let me start by searching for {name}.",
    "First, I should find the page about {name}.",
)
_SEARCH_FIRST_KW = (
    "The question asks for the {kw} of {name}. Let me search for it.",
    "I need the {kw} of {name}. I'll start with a search.",
    "To answer this I need to know the {kw} of {name}. Let me search.",
    "Let me search for {name} and its {kw}.",
)
_SEARCH_HOP = (
    "The page on {prev} names {name}. Now I need the {kw} of {name}.",
    "So {prev} leads to {name}. Next I should find the {kw} of {name}.",
    "I found that {prev} is linked to {name}. Let me search for {name} to get the {kw}.",
    "{prev} points to {name}. The next step is the {kw} of {name}.",
)
_SEARCH_HOP_PLAIN = (
    "The page on {prev} names {name}. Now I need to research {name}.",
    "So {prev} leads to {name}. Let me look up {name} next.",
)
_SEARCH_COMPARE = (
    "I need to compare {names}. Let me search for each of them.",
    "To compare {names}, I should look up both.",
    "This is a comparison of {names}. I'll search for both pages.",
)
_SEARCH_RETRY = (
    "The results do not include the page on {name}. Let me search again with its title.",
    "None of these results is the page about {name}. I'll try a more specific search.",
    "I could not find the page on {name} yet. Let me search for its exact title.",
)
_BROWSE = (
    'The result "{title}" looks like the page on {name}. Let me read it.',
    'The page "{title}" should have what I need. I\'ll browse it.',
    "I found the page about {name}. Let me open it to check the details.",
    '"{title}" is the right page. Let me read it.',
)
_BROWSE_MANY = (
    "The results include the pages on {names}. Let me read them.",
    "I found the pages for {names}. I'll browse them to compare.",
)
_BROWSE_MORE = (
    "The page has not mentioned the {kw} yet. Let me read more of it.",
    "I have not found the {kw} of {name} so far. I'll read the rest of the page.",
)
_ANSWER_ONE = (
    "The page on {name} states {value}. So the answer is {answer}.",
    "According to the page about {name}, it is {value}. The answer is {answer}.",
    "I found it: the page on {name} says {value}.",
)
_ANSWER_CHAIN = (
    "Putting it together: {chain}. So the answer is {answer}.",
    "The chain is {chain}. The answer is {answer}.",
    "I have all the steps: {chain}. So the answer is {answer}.",
)
_ANSWER_COMPARE = (
    "The pages say: {facts}. So the answer is {answer}.",
    "From the pages: {facts}. The answer is {answer}.",
    "Comparing them: {facts}. So the answer is {answer}.",
)


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class ExpertPolicy:
    """A scripted researcher for world questions, as a :class:`~deepresearcher.agent.policy.Policy`.

    ``cases`` are the questions it may be asked (matched by the question text of the conversation).
    ``tokenizer`` renders prompts (the loop uses the policy's tokenizer) and gives the token ids of
    each turn. The same ``seed`` gives the same words; the conversation decides the actions.
    """

    name = "expert"

    def __init__(
        self,
        cases: Iterable[ExpertCase],
        tokenizer: Any,
        *,
        seed: int = 0,
        max_turns: int = 10,
        context_window: int = 32768,
        style: str = "varied",
    ) -> None:
        if style not in EXPERT_STYLES:
            raise ValueError(f"unknown expert style {style!r}; choose one of {EXPERT_STYLES}")
        self.style = style
        self.cases: dict[str, ExpertCase] = {}
        for case in cases:
            self.cases.setdefault(case.question, case)
        self.tokenizer = tokenizer
        self.seed = seed
        self.max_turns = max_turns
        self.context_window = context_window
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        # A real model samples its end-of-turn token; so the recorded ids include it.
        self._eos: list[int] = [end] if isinstance(end, int) and end >= 0 else []

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    async def generate(self, prompt: RenderedPrompt, sampling: SamplingParams) -> Generation:
        started = time.perf_counter()
        messages = prompt.messages
        question = str(messages[1].get("content", "")) if len(messages) > 1 else ""
        case = self.cases.get(question)
        if case is None:
            raise PolicyBadRequest(
                f"the expert has no record for the question {question!r:.80}")
        text = self.turn(case, messages)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + self._eos
        return Generation(
            text=text,
            token_ids=ids,
            logprobs=None,
            finish_reason="stop",
            prompt_tokens=self.count_tokens(prompt.text) if prompt.text else None,
            completion_tokens=len(ids),
            latency_s=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        return None

    # The decision ------------------------------------------------------------------------------

    def turn(self, case: ExpertCase, messages: Sequence[Message]) -> str:
        """The next assistant turn for ``case`` (without the forced ``<think>``)."""
        reader = _Reader(case)
        state = reader.replay(messages)
        rng = random.Random(f"{self.seed}/{case.question}/{state.turns}")
        urls = case.supporting_urls
        targets = reader.targets(state)
        if not targets:
            return self._answer(case, state, rng)
        # Browse a page only from a search that looked for it: the reader extracts what is
        # relevant to the query that found the page, and reads each part of a page only once.
        ready = [
            i
            for i in targets
            if i in state.aimed and urls[i] in state.latest and urls[i] not in state.browsed
        ]
        if ready:
            return self._browse(case, state, ready, rng)
        more = [
            i
            for i in targets
            if state.browsed.get(urls[i], 0)
            and state.last_new.get(urls[i])
            and state.browsed[urls[i]] < MAX_BROWSES_PER_PAGE
        ]
        if more:
            return self._browse(case, state, more, rng, again=True)
        return self._search(case, state, targets, rng)

    def _name(self, case: ExpertCase, page: int) -> str:
        """How the researcher refers to page ``page``: its mention in the question for the
        first page (every page of a comparison), else the entity the previous page named."""
        if page == 0 or case.parallel:
            return mention(case.question, case.supporting_urls[page])
        return case.evidence[page - 1]

    def _search(
        self, case: ExpertCase, state: _State, targets: list[int], rng: random.Random
    ) -> str:
        names = [self._name(case, i) for i in targets]
        attempt = max(state.searches.get(i, 0) for i in targets)
        if case.parallel:
            queries = []
            for i, name in zip(targets, names, strict=True):
                kw = case.keyword(i)
                queries.append(f"{name} {kw[1]}" if kw and rng.random() < 0.5 else name)
            think = (
                rng.choice(_SEARCH_RETRY).format(name=_join(names))
                if attempt
                else rng.choice(_SEARCH_COMPARE).format(names=_join(names))
            )
            return _tool_turn(think, WEB_SEARCH, {"query": list(dict.fromkeys(queries))})
        page, name = targets[0], names[0]
        kw = case.keyword(page)
        # The first query that lists a page is the one the reader reads it for: put the query
        # naming what we want first.
        focused = f"{name} {kw[1]}" if kw else name
        if attempt:
            title = state.titles.get(case.supporting_urls[page]) or name
            queries = [title] if attempt == 1 else [focused, case.question]
            think = rng.choice(_SEARCH_RETRY).format(name=name)
        elif page == 0 and self.style == "terse":
            queries, think = [case.question], "Let me search."
        elif page == 0:
            queries = rng.choice(
                [[case.question], [focused], [focused, name], [case.question, focused]]
            )
            think = (
                rng.choice(_SEARCH_FIRST_KW).format(name=name, kw=kw[0])
                if kw
                else rng.choice(_SEARCH_FIRST).format(name=name)
            )
        else:
            prev = self._name(case, page - 1)
            queries = rng.choice([[focused], [focused, name]])
            think = (
                rng.choice(_SEARCH_HOP).format(prev=prev, name=name, kw=kw[0])
                if kw
                else rng.choice(_SEARCH_HOP_PLAIN).format(prev=prev, name=name)
            )
        return _tool_turn(think, WEB_SEARCH, {"query": list(dict.fromkeys(queries))})

    def _browse(
        self,
        case: ExpertCase,
        state: _State,
        pages: list[int],
        rng: random.Random,
        *,
        again: bool = False,
    ) -> str:
        urls = [case.supporting_urls[i] for i in pages]
        names = [self._name(case, i) for i in pages]
        if self.style == "terse" and not again and len(pages) == 1 and urls[0] in state.latest:
            rank = state.latest.index(urls[0])
            think = f"Let me read the {_RANKS[rank] if rank < len(_RANKS) else 'matching'} result."
        elif again:
            kw = case.keyword(pages[0])
            think = rng.choice(_BROWSE_MORE).format(kw=kw[0] if kw else "answer", name=names[0])
        elif len(pages) > 1:
            think = rng.choice(_BROWSE_MANY).format(names=_join(names))
        else:
            title = state.titles.get(urls[0]) or names[0]
            think = rng.choice(_BROWSE).format(title=title, name=names[0])
        return _tool_turn(think, BROWSE_WEBPAGE, {"url_list": urls})

    def _answer(self, case: ExpertCase, state: _State, rng: random.Random) -> str:
        answer = case.answers[0]
        n = len(case.supporting_urls)
        names = [self._name(case, i) for i in range(n)]
        if self.style == "terse":
            think = "The page gives the answer."
        elif case.parallel:
            facts = "; ".join(
                f"{name}: {value}" for name, value in zip(names, case.evidence, strict=True)
            )
            think = rng.choice(_ANSWER_COMPARE).format(facts=facts, answer=answer)
        elif n == 1:
            think = rng.choice(_ANSWER_ONE).format(
                name=names[0], value=case.evidence[0], answer=answer
            )
        else:
            chain = " -> ".join([names[0], *case.evidence])
            think = rng.choice(_ANSWER_CHAIN).format(chain=chain, answer=answer)
        return f"\n{think}\n</think>\n<answer>{answer}</answer>"


def _tool_turn(think: str, name: str, arguments: dict[str, Any]) -> str:
    """A tool-call turn exactly as the chat template re-serializes it (PROTOCOL.md §5), so the
    tokens trained on are the ones the model would generate."""
    call = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"\n{think}\n</think>\n<tool_call>\n{call}\n</tool_call>"


def mention(question: str, url: str) -> str:
    """How ``question`` names the entity of page ``url`` (``local://wiki/<slug>``), e.g.
    ``Tasgraeth: A Lantern`` for ``tasgraeth-a-lantern``; the slug's words when it does not."""
    words = [w for w in re.split(r"[^0-9A-Za-z]+", url.rsplit("/", 1)[-1]) if w]
    if not words:
        return url
    pattern = r"\b" + r"[\W_]+".join(re.escape(w) for w in words) + r"\b"
    found = re.search(pattern, question, flags=re.IGNORECASE)
    if found:
        return found.group(0)
    return " ".join(w.capitalize() for w in words)


# Writing demonstrations ----------------------------------------------------------------------------


@dataclass
class ExpertStats:
    """How the expert did on a split: the share of episodes answered exactly is its quality."""

    episodes: int = 0
    answered: int = 0
    exact: int = 0  # answered with F1 = 1
    with_tokens: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, list[int]] = field(default_factory=dict)  # source -> [episodes, exact]
    turns: int = 0
    seconds: float = 0.0
    out: Path | None = None

    @property
    def success_rate(self) -> float:
        """Share of episodes that ended ``answered`` with F1 = 1."""
        return self.exact / self.episodes if self.episodes else 0.0

    @property
    def mean_turns(self) -> float:
        return self.turns / self.episodes if self.episodes else 0.0

    def add(self, trajectory: Any) -> None:
        self.episodes += 1
        self.turns += len(trajectory.turns)
        self.statuses[trajectory.status] = self.statuses.get(trajectory.status, 0) + 1
        exact = trajectory.status == "answered" and trajectory.metrics.get("f1") == 1.0
        self.answered += trajectory.status == "answered"
        self.exact += exact
        self.with_tokens += trajectory.tokens is not None
        counts = self.by_source.setdefault(trajectory.data_source or "?", [0, 0])
        counts[0] += 1
        counts[1] += exact

    def to_json(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes,
            "answered": self.answered,
            "exact": self.exact,
            "success_rate": round(self.success_rate, 4),
            "with_tokens": self.with_tokens,
            "statuses": self.statuses,
            "by_source": self.by_source,
            "mean_turns": round(self.mean_turns, 2),
            "seconds": round(self.seconds, 2),
            "out": str(self.out) if self.out else None,
        }


async def generate_expert_trajectories(
    world_dir: Path | str,
    split: str = "train",
    *,
    tokenizer: Any,
    out: Path,
    limit: int | None = None,
    spread: bool = False,
    seed: int = 0,
    concurrency: int = 16,
    config: Any | None = None,
    toolbox: Any | None = None,
    on_done: Callable[[Any], None] | None = None,
    style: str = "varied",
) -> ExpertStats:
    """Run the expert on a world split through the real agent loop; write trajectories to ``out``.

    ``limit`` takes the first questions, or evenly spaced ones with ``spread``.
    ``tokenizer`` is a tokenizer or a path/Hub id to load one from: the token ids and loss masks of
    the trajectories are in its vocabulary (train on them with the same tokenizer). ``config`` is
    an ``AgentConfig`` (default: the paper's 10 turns, tokens recorded). ``toolbox`` defaults to
    the world's own (local search, extractive reader): the environment the agent is trained and
    evaluated in. ``out`` is overwritten; trajectories are appended as they finish, in completion
    order; ``on_done`` is called with each. ``style`` words the turns (``EXPERT_STYLES``).
    """
    from deepresearcher.agent.build import ToolSettings, build_toolbox
    from deepresearcher.agent.config import AgentConfig
    from deepresearcher.agent.loop import Agent, Task
    from deepresearcher.agent.policy import load_tokenizer
    from deepresearcher.agent.trajectory import write_jsonl
    from deepresearcher.world import load_manifest

    started = time.perf_counter()
    if isinstance(tokenizer, str | Path):
        tokenizer = load_tokenizer(tokenizer)
    manifest = load_manifest(world_dir)
    path = manifest.questions_path(split, fmt="jsonl")
    if not path.is_file():
        raise DataError(
            f"{path} does not exist", hint="rebuild the world: deepresearcher world build --out DIR"
        )
    cases = load_cases(path, limit=limit, spread=spread)
    agent_config = config or AgentConfig(temperature=0.0, seed=seed)
    agent_config = agent_config.model_copy(update={"record_tokens": True})
    policy = ExpertPolicy(cases, tokenizer, seed=seed, max_turns=agent_config.max_turns,
                          style=style)
    if toolbox is None:
        toolbox = build_toolbox(ToolSettings(world=Path(world_dir)))
    agent = Agent(policy, toolbox, agent_config)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("", encoding="utf-8")
    stats = ExpertStats(out=out)

    def done(trajectory: Any) -> None:
        write_jsonl(out, [trajectory])
        stats.add(trajectory)
        if on_done is not None:
            on_done(trajectory)

    tasks = [
        Task(question=c.question, golds=list(c.answers), id=c.id, data_source=c.data_source)
        for c in cases
    ]
    await agent.run_many(tasks, concurrency=concurrency, on_done=done)
    stats.seconds = time.perf_counter() - started
    return stats


def run_expert(world_dir: Path | str, split: str = "train", **kwargs: Any) -> ExpertStats:
    """Synchronous :func:`generate_expert_trajectories` (for scripts and the CLI)."""
    return asyncio.run(generate_expert_trajectories(world_dir, split, **kwargs))
