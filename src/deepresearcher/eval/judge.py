"""The LLM judge behind MBE (model-based evaluation): is a prediction the same answer as a gold one?

An exact match (the paper's EM) is correct without a call. Otherwise one chat model on any
OpenAI-compatible endpoint reads the question, the gold aliases and the prediction and replies with
JSON ``{"rationale": ..., "verdict": "correct" | "incorrect"}``. HTTP failures are retried by the
chat policy's client (bounded, jittered backoff, ``Retry-After``); a reply that is not that JSON is
asked again a bounded number of times and then counted as ``unparseable``. Parsed verdicts are
cached in the SQLite tool cache (namespace ``judge``), keyed by everything that decides them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from deepresearcher.errors import DeepResearcherError
from deepresearcher.protocol.metrics import exact_match

Outcome = Literal["exact", "correct", "incorrect", "unparseable", "error", "no_answer"]
OUTCOMES: tuple[str, ...] = ("exact", "correct", "incorrect", "unparseable", "error", "no_answer")
NAMESPACE = "judge"

SYSTEM_PROMPT = (
    "You grade answers to factual questions. You are given a question, the list of accepted "
    "reference answers (aliases of one answer) and a candidate answer. Decide whether the "
    "candidate gives the same answer as at least one reference: it may be worded differently, "
    "abbreviated, more or less specific in harmless ways (a full name for a surname, a date with "
    "or without the weekday), or add correct detail. It is incorrect if it names a different "
    "entity, number or date, gives several answers without committing to one, hedges, or refuses. "
    "Judge only the candidate against the references; do not use your own knowledge of the "
    "question to overrule the references.\n"
    'Reply with one JSON object and nothing else: {"rationale": "<one or two sentences>", '
    '"verdict": "correct"} or the same with "verdict": "incorrect".'
)
USER_TEMPLATE = "Question: {question}\nReference answers: {golds}\nCandidate answer: {prediction}"
PROMPT_HASH = hashlib.sha256((SYSTEM_PROMPT + "\x00" + USER_TEMPLATE).encode()).hexdigest()[:16]

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


@dataclass(frozen=True)
class Verdict:
    """What the judge decided. ``outcome`` ``exact`` and ``correct`` count as correct for MBE;
    ``unparseable`` (no valid JSON after the re-asks) and ``error`` (the endpoint failed) count as
    incorrect and are reported separately."""

    outcome: Outcome
    rationale: str = ""
    calls: int = 0
    cached: bool = False

    @property
    def correct(self) -> bool:
        return self.outcome in ("exact", "correct")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_reply(text: str) -> tuple[Literal["correct", "incorrect"], str] | None:
    """``(verdict, rationale)`` from a judge reply, or None if it is not the JSON asked for.

    Tolerates a code fence or prose around the object; the verdict must be exactly one of the two
    words (case-insensitive), so "partially correct" is not silently read as correct.
    """
    match = _JSON_OBJECT.search(text or "")
    if match is None:
        return None
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    verdict = data.get("verdict")
    if not isinstance(verdict, str) or verdict.strip().lower() not in ("correct", "incorrect"):
        return None
    rationale = data.get("rationale")
    return verdict.strip().lower(), rationale if isinstance(rationale, str) else ""  # type: ignore[return-value]


class Judge:
    """An LLM judge on an OpenAI-compatible chat endpoint.

    ``api_key_env`` names the environment variable holding the key (keys are never arguments).
    ``temperature`` is recorded in the protocol card (0 by default; the paper used 0.7).
    ``reasks``: further tries after a reply that does not parse. ``cache``: a ``ToolCache``.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        temperature: float = 0.0,
        api_key_env: str = "OPENAI_API_KEY",
        max_tokens: int = 400,
        reasks: int = 2,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        timeout: float = 120.0,
        concurrency: int = 16,
        cache: Any = None,
    ) -> None:
        from deepresearcher.agent.policy_openai import OpenAIChatPolicy

        self.model = model
        self.base_url = base_url
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.reasks = reasks
        self.cache = cache
        self.concurrency = concurrency
        self._client = OpenAIChatPolicy(
            base_url, model, api_key_env=api_key_env, max_retries=max_retries,
            backoff_s=backoff_s, timeout=timeout, max_connections=max(8, concurrency),
        )
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None

    def settings(self) -> dict[str, Any]:
        """What decides the verdicts, for the protocol card (no key, no secrets)."""
        return {
            "model": self.model,
            "base_url": _public_url(self.base_url),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "prompt_hash": PROMPT_HASH,
            "reasks": self.reasks,
        }

    async def aclose(self) -> None:
        await self._client.aclose()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots, self._slots_loop = asyncio.Semaphore(self.concurrency), loop
        return self._slots

    async def judge(self, question: str, prediction: str | None, golds: Sequence[str]) -> Verdict:
        """The verdict on one prediction (never raises for endpoint or reply problems)."""
        if prediction is None or not prediction.strip():
            return Verdict("no_answer", "no answer to judge")
        golds = list(golds)
        if exact_match(prediction, golds):
            return Verdict("exact", "exact match after normalization")
        key = {"prompt_hash": PROMPT_HASH, "model": self.model, "temperature": self.temperature,
               "max_tokens": self.max_tokens, "question": question,
               "prediction": prediction.strip(), "golds": golds}
        if self.cache is not None and self.cache.mode != "off":
            try:
                hit = await asyncio.to_thread(self.cache.get, NAMESPACE, key)
            except DeepResearcherError as exc:  # replay mode fails closed on a miss
                return Verdict("error", str(exc))
            if isinstance(hit, dict) and hit.get("outcome") in ("correct", "incorrect"):
                return Verdict(hit["outcome"], str(hit.get("rationale", "")), 0, cached=True)
        async with self._semaphore():
            verdict = await self._ask(question, prediction.strip(), golds)
        if self.cache is not None and verdict.outcome in ("correct", "incorrect"):
            await asyncio.to_thread(self.cache.put, NAMESPACE, key,
                                    {"outcome": verdict.outcome, "rationale": verdict.rationale})
        return verdict

    async def _ask(self, question: str, prediction: str, golds: list[str]) -> Verdict:
        from deepresearcher.agent.policy import SamplingParams
        from deepresearcher.protocol.base import RenderedPrompt

        user = USER_TEMPLATE.format(question=question, prediction=prediction,
                                    golds=json.dumps(golds, ensure_ascii=False))
        prompt = RenderedPrompt(text=None, messages=[{"role": "system", "content": SYSTEM_PROMPT},
                                                     {"role": "user", "content": user}])
        sampling = SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature,
                                  logprobs=False)
        last = ""
        for call in range(1, self.reasks + 2):
            try:
                generation = await self._client.generate(prompt, sampling)
            except DeepResearcherError as exc:
                return Verdict("error", f"{type(exc).__name__}: {exc}", call)
            parsed = parse_reply(generation.text)
            if parsed is not None:
                return Verdict(parsed[0], parsed[1], call)
            last = generation.text
        return Verdict("unparseable", f"no JSON verdict in the reply: {last[:200]!r}",
                       self.reasks + 1)


def _public_url(url: str) -> str:
    """``url`` without credentials or query string (either could hold a secret)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
