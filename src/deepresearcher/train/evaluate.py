"""A small held-out evaluation for training jobs: real greedy episodes on world questions.

Each question is one full research episode through the real agent loop and the real tools (search
the world's index, browse its pages); only the final answer is scored (F1 and EM against the gold
aliases, a format failure scores 0, PROTOCOL.md §8). This is the quick before/after check the
quickstart prints; the full evaluation harness (benchmarks, judge, resumable reports) is ``eval/``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepresearcher.agent.config import AgentConfig
from deepresearcher.agent.loop import Agent, Task
from deepresearcher.agent.trajectory import STATUSES, Trajectory, write_jsonl


@dataclass
class EvalMetrics:
    """Means over the episodes of one evaluation."""

    episodes: int = 0
    f1: float = 0.0
    em: float = 0.0
    answered_rate: float = 0.0
    format_error_rate: float = 0.0
    mean_turns: float = 0.0
    searches: float = 0.0  # search calls per episode
    browses: float = 0.0  # browse calls per episode
    statuses: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, dict[str, float]] = field(default_factory=dict)  # source -> {n, f1, em}
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in (
            "f1",
            "em",
            "answered_rate",
            "format_error_rate",
            "mean_turns",
            "searches",
            "browses",
            "seconds",
        ):
            data[key] = round(float(data[key]), 4)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalMetrics:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def summarize(trajectories: Sequence[Trajectory], seconds: float = 0.0) -> EvalMetrics:
    """Mean F1/EM (0 for anything not answered), status shares, turns and tool calls."""
    n = len(trajectories)
    m = EvalMetrics(episodes=n, seconds=seconds)
    if not n:
        return m
    statuses = {s: 0 for s in STATUSES}
    by_source: dict[str, list[float]] = {}
    for t in trajectories:
        statuses[t.status] = statuses.get(t.status, 0) + 1
        f1 = float(t.metrics.get("f1", 0.0))
        em = float(t.metrics.get("em", 0.0))
        m.f1 += f1
        m.em += em
        m.mean_turns += len(t.turns)
        m.searches += t.usage.search_calls
        m.browses += t.usage.browse_calls
        row = by_source.setdefault(t.data_source or "?", [0.0, 0.0, 0.0])
        row[0] += 1
        row[1] += f1
        row[2] += em
    for name in ("f1", "em", "mean_turns", "searches", "browses"):
        setattr(m, name, getattr(m, name) / n)
    m.statuses = {k: v for k, v in statuses.items() if v}
    m.answered_rate = statuses["answered"] / n
    m.format_error_rate = statuses["format_error"] / n
    m.by_source = {
        s: {"n": int(c), "f1": round(f / c, 4), "em": round(e / c, 4)}
        for s, (c, f, e) in sorted(by_source.items())
    }
    return m


async def evaluate_policy(
    policy: Any,
    toolbox: Any,
    tasks: Sequence[Task],
    config: AgentConfig,
    *,
    out: Path | None = None,
    concurrency: int = 64,
    on_done: Callable[[Trajectory], None] | None = None,
) -> tuple[EvalMetrics, list[Trajectory]]:
    """Run one episode per task (batched generation across episodes) and summarize them.

    ``config`` is used as given (pass ``temperature=0`` for greedy decoding). ``out`` receives the
    trajectories as JSONL, in task order (the file is replaced).
    """
    started = time.perf_counter()
    agent = Agent(policy, toolbox, config)
    try:
        trajectories = await agent.run_many(list(tasks), concurrency=concurrency, on_done=on_done)
    finally:
        closer = getattr(policy, "aclose", None)
        if closer is not None:
            await closer()
    metrics = summarize(trajectories, time.perf_counter() - started)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(out, trajectories, append=False)
    return metrics, trajectories


def evaluate_model(
    model: str | Path,
    toolbox: Any,
    tasks: Sequence[Task],
    config: AgentConfig,
    *,
    out: Path | None = None,
    max_batch_size: int = 64,
    on_done: Callable[[Trajectory], None] | None = None,
    device: str = "cpu",
) -> tuple[EvalMetrics, list[Trajectory]]:
    """:func:`evaluate_policy` for a saved model directory, loaded with transformers on ``device``
    ("cpu", "cuda", or "auto": CUDA when available)."""
    from deepresearcher.agent.policy_hf import HFPolicy

    policy = HFPolicy.from_pretrained(
        model,
        context_window=config.context_window,
        max_batch_size=max_batch_size,
        max_wait_ms=20,
        device=device,
    )
    return asyncio.run(
        evaluate_policy(
            policy, toolbox, tasks, config, out=out, concurrency=max(len(tasks), 1), on_done=on_done
        )
    )
