"""Runs an evaluation: one agent episode per (question, sample), scored, judged, written durably.

Episodes run concurrently on one event loop (a fixed pool of ``concurrency`` workers). Each finished
episode is scored on every metric, judged when a judge is set, and appended to the results file
before it counts as done; a resumed run skips the keys already there, except episodes that failed
(status ``error``: a server down, a timeout), which it runs again unless told to keep them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deepresearcher.agent.config import AgentConfig
from deepresearcher.agent.loop import Agent, Task
from deepresearcher.agent.trajectory import Trajectory
from deepresearcher.data.paper_format import QARecord
from deepresearcher.eval.judge import Judge
from deepresearcher.eval.results import ResultStore, result_key, result_record
from deepresearcher.eval.scoring import score_prediction

OnResult = Callable[[dict[str, Any]], Awaitable[None] | None]


@dataclass(frozen=True)
class RunSummary:
    """How a run went: units (question × sample) in all, already done before, run now."""

    total: int
    done_before: int
    ran: int
    seconds: float


def still_done(existing: dict[str, dict[str, Any]], *,
               retry_errors: bool) -> dict[str, dict[str, Any]]:
    """The results a resumed run keeps: all of them, less the failed ones (status ``error``)
    when those are run again."""
    return {k: r for k, r in existing.items()
            if not (retry_errors and r.get("status") == "error")}


def sample_seed(seed: int | None, sample: int) -> int | None:
    """The sampling seed of sample ``sample``: distinct per sample, reproducible per run."""
    return None if seed is None else seed + sample


class EvalRunner:
    """Evaluates one policy with one toolbox under one agent configuration.

    ``samples`` > 1 runs each question that many times (for avg@k and pass@k), sample ``s`` with
    seed ``config.seed + s``.
    """

    def __init__(
        self,
        policy: Any,
        toolbox: Any,
        config: AgentConfig,
        *,
        judge: Judge | None = None,
        samples: int = 1,
        concurrency: int = 32,
    ) -> None:
        self.judge = judge
        self.samples = samples
        self.concurrency = max(1, concurrency)
        self.agents = [
            Agent(policy, toolbox, config.model_copy(update={"seed": sample_seed(config.seed, s)}))
            for s in range(samples)
        ]

    def units(self, records: Sequence[QARecord], done: set[str]) -> list[tuple[QARecord, int]]:
        """The (question, sample) pairs still to run, question-major."""
        return [(r, s) for r in records for s in range(self.samples)
                if result_key(r.id, s) not in done]

    async def run(
        self,
        records: Sequence[QARecord],
        store: ResultStore,
        *,
        retry_errors: bool = True,
        on_result: OnResult | None = None,
    ) -> RunSummary:
        """Run every unit not yet in ``store`` (and, with ``retry_errors``, every one that ended in
        ``error``: its new line supersedes the old one)."""
        started = time.perf_counter()
        existing = store.load(repair=True)
        done = set(still_done(existing, retry_errors=retry_errors))
        await self.rejudge(existing, done, {r.id for r in records}, store)
        todo = deque(self.units(records, done))
        total = len(records) * self.samples
        planned = len(todo)

        async def worker() -> None:
            while todo:
                record, sample = todo.popleft()
                result = await self.run_one(record, sample)
                await asyncio.to_thread(store.append, result)
                if on_result is not None:
                    maybe = on_result(result)
                    if asyncio.iscoroutine(maybe):
                        await maybe

        workers = [asyncio.ensure_future(worker()) for _ in range(min(self.concurrency, planned))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            # A bug (episodes themselves never raise): stop the others rather than run on blind.
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return RunSummary(total, total - planned, planned, time.perf_counter() - started)

    async def rejudge(self, existing: dict[str, dict[str, Any]], done: set[str],
                      ids: set[str], store: ResultStore) -> int:
        """Judge again the finished episodes whose verdict was an error (the judge endpoint was
        down, a bad key, rate limits): their MBE counted 0 though nothing was decided. The
        episode is kept; a new line with the new verdict supersedes the old one."""
        if self.judge is None:
            return 0
        judge = self.judge
        rows = [row for key, row in existing.items()
                if key in done and row.get("id") in ids
                and (row.get("judge") or {}).get("outcome") == "error"]
        slots = asyncio.Semaphore(self.concurrency)

        async def again(row: dict[str, Any]) -> None:
            async with slots:
                verdict = await judge.judge(row["question"], row.get("answer"),
                                            list(row.get("golds") or []))
            scores = {**(row.get("scores") or {}), "mbe": float(verdict.correct)}
            await asyncio.to_thread(store.append, {**row, "scores": scores,
                                                   "judge": verdict.to_json()})

        await asyncio.gather(*(again(row) for row in rows))
        return len(rows)

    async def run_one(self, record: QARecord, sample: int) -> dict[str, Any]:
        """One episode, scored and judged, as a result record."""
        task_id = record.id if self.samples == 1 else result_key(record.id, sample)
        task = Task(question=record.question, golds=record.golds, id=task_id,
                    data_source=record.data_source)
        trajectory = await self.agents[sample].run(task)
        return await score_trajectory(trajectory, record, sample, self.judge)


async def score_trajectory(trajectory: Trajectory, record: QARecord, sample: int,
                           judge: Judge | None) -> dict[str, Any]:
    """The result record of a finished episode: only an ``answered`` episode has a prediction."""
    prediction = trajectory.answer if trajectory.status == "answered" else None
    return await score_result(
        question_id=record.id, sample=sample, data_source=record.data_source,
        question=record.question, golds=list(record.golds), status=trajectory.status,
        prediction=prediction, judge=judge, usage=trajectory.usage.model_dump(),
        turns=len(trajectory.turns), seconds=trajectory.seconds, error=trajectory.error,
        trajectory=trajectory.model_dump(mode="json"),
    )


async def score_result(*, question_id: str, sample: int, data_source: str, question: str,
                       golds: list[str], status: str, prediction: str | None,
                       judge: Judge | None, **rest: Any) -> dict[str, Any]:
    """Score one prediction on every metric (and MBE when ``judge`` is set) into a record."""
    scores = score_prediction(prediction, golds)
    verdict = None
    if judge is not None:
        v = await judge.judge(question, prediction, golds)
        scores["mbe"] = float(v.correct)
        verdict = v.to_json()
    return result_record(question_id=question_id, sample=sample, data_source=data_source,
                         question=question, golds=golds, status=status, answer=prediction,
                         scores=scores, verdict=verdict, **rest)
