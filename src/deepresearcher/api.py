"""The Python API: a research agent built from the CLI's settings, run sync or async, streamed,
evaluated on questions; trajectories loaded back. ``deepresearcher ask`` is a thin layer over it.

    from deepresearcher import Researcher

    with Researcher.from_settings("tiny-base", world="world", max_turns=4) as researcher:
        trajectory = researcher.run("Where was the founder of the Brackenhold Institute born?")

docs/api.md is the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from deepresearcher.agent.build import DEFAULT_MODEL, ToolSettings, build_policy, build_toolbox
from deepresearcher.agent.config import AgentConfig
from deepresearcher.agent.loop import Agent, Event, EventSink, Task
from deepresearcher.agent.trajectory import Trajectory, read_jsonl
from deepresearcher.errors import ConfigError, DataError

if TYPE_CHECKING:
    from deepresearcher.agent.policy import Policy
    from deepresearcher.agent.toolbox import Toolbox
    from deepresearcher.data.paper_format import QARecord
    from deepresearcher.eval.judge import Judge

__all__ = ["Evaluation", "Researcher", "load_trajectories"]

T = TypeVar("T")

# The settings of ``deepresearcher ask`` and ``eval`` where they differ from AgentConfig's (the
# paper's training defaults): greedy decoding.
CLI_CONFIG: dict[str, Any] = {"temperature": 0.0}
_PATH_SETTINGS = ("index", "pages", "world", "cache")
# Where an evaluation takes a question's gold answers from (the eval's CSV columns).
_GOLD_KEYS = ("golds", "golden_answers", "answers", "answer")


class Researcher:
    """A research agent: a policy, its toolbox and the loop's settings, ready to run episodes.

    Build it with :meth:`from_settings` (the CLI's settings) or from parts. Use it either
    synchronously (:meth:`run`, :meth:`evaluate`, :meth:`close`, ``with``) or from async code
    (:meth:`arun`, :meth:`stream`, :meth:`aevaluate`, :meth:`aclose`, ``async with``); the sync
    calls run on an event loop of the researcher's own, so they cannot be made inside a running
    one (a notebook, an async app): there, await the async calls.
    """

    def __init__(self, policy: Policy, toolbox: Toolbox, config: AgentConfig | None = None, *,
                 tools: ToolSettings | None = None) -> None:
        """``tools``: the settings the toolbox was built from, when known (an evaluation's
        protocol card records them)."""
        self.policy = policy
        self.toolbox = toolbox
        self.config = config or AgentConfig.model_validate(CLI_CONFIG)
        self.tools = tools
        self.agent = Agent(policy, toolbox, self.config)
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_settings(
        cls,
        model: str = DEFAULT_MODEL,
        *,
        base_url: str | None = None,
        api: Literal["auto", "completions", "chat"] = "auto",
        api_key_env: str = "OPENAI_API_KEY",
        tokenizer: str | None = None,
        device: str = "cpu",
        timeout: float | None = None,
        tools: ToolSettings | None = None,
        config: AgentConfig | None = None,
        **settings: Any,
    ) -> Researcher:
        """A researcher built as ``deepresearcher ask`` builds its agent.

        ``model``: a Hugging Face name or local directory run with transformers on ``device``, or
        the served name at ``base_url`` (an OpenAI-compatible server; its key from the
        environment variable ``api_key_env``). ``settings``: any field of :class:`ToolSettings`
        (``world``, ``index``, ``search``, ``cache``, ``reader``, …) or of :class:`AgentConfig`
        (``max_turns``, ``max_tokens_per_turn``, ``temperature``, ``date``, ``profile``, …),
        applied over ``tools`` and ``config`` (default: the CLI's, greedy decoding).
        """
        tool_fields = {f.name for f in dataclasses.fields(ToolSettings)}
        config_fields = set(AgentConfig.model_fields)
        unknown = sorted(set(settings) - tool_fields - config_fields)
        if unknown:
            choices = sorted(tool_fields | config_fields)
            near = difflib.get_close_matches(unknown[0], choices, n=1)
            raise ConfigError(
                f"unknown setting {unknown[0]!r}"
                + (f" (did you mean {near[0]!r}?)" if near else ""),
                hint=f"settings are the fields of ToolSettings or AgentConfig: {', '.join(choices)}",
            )
        tool_values = {k: Path(v) if k in _PATH_SETTINGS and v is not None else v
                       for k, v in settings.items() if k in tool_fields}
        tool_settings = ToolSettings.from_config(tools or ToolSettings(), **tool_values)
        base = config.model_dump() if config is not None else CLI_CONFIG
        agent_config = AgentConfig.model_validate(
            {**base, **{k: v for k, v in settings.items() if k in config_fields}})
        # The toolbox first: a wrong world or index fails before a slow model load.
        toolbox = build_toolbox(tool_settings)
        policy = build_policy(model, base_url=base_url, api=api, profile=agent_config.profile,
                              tokenizer=tokenizer, context_window=agent_config.context_window,
                              device=device, api_key_env=api_key_env, timeout=timeout)
        return cls(policy, toolbox, agent_config, tools=tool_settings)

    # -- one episode ---------------------------------------------------------------------------

    async def arun(self, question: str | Task, *, on_event: EventSink | None = None) -> Trajectory:
        """Research ``question`` to the end of one episode. ``on_event`` sees each
        :class:`Event` as it happens. Model and tool failures do not raise: they end the episode
        with a status (``error``, ``format_error``, …) recorded in the trajectory."""
        return await self.agent.run(question, events=on_event)

    def run(self, question: str | Task, *, on_event: EventSink | None = None) -> Trajectory:
        """:meth:`arun`, synchronously."""
        return self._sync(self.arun(question, on_event=on_event))

    async def stream(self, question: str | Task) -> AsyncIterator[Event]:
        """The episode's events as they happen: ``start``, then per turn ``generate``, ``turn``
        (the parsed action: a search, a browse, an answer or a format error) and, after a tool
        call, ``observation``; last ``end``, whose data holds the finished ``trajectory``."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        async def episode() -> Trajectory:
            try:
                return await self.agent.run(question, events=queue.put_nowait)
            finally:
                queue.put_nowait(None)

        running = asyncio.ensure_future(episode())
        try:
            while (event := await queue.get()) is not None:
                yield event
            await running  # an unexpected bug in the loop surfaces here
        finally:
            if not running.done():  # the caller stopped iterating: stop the episode too
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running

    # -- evaluation ----------------------------------------------------------------------------

    async def aevaluate(
        self,
        questions: str | Path | Iterable[Mapping[str, Any] | Task | QARecord],
        *,
        samples: int = 1,
        concurrency: int = 32,
        judge: Judge | None = None,
        out: Path | str | None = None,
    ) -> Evaluation:
        """Evaluate as ``deepresearcher eval`` does: one episode per question and sample, each
        scored on every metric (F1, EM, …; MBE with a ``judge``), then the scores.

        ``questions``: a question set as ``eval --data`` names it (a file, ``paper-test``,
        ``hf:REPO:SPLIT``), or questions with their gold answers: mappings
        (``{"question", "golds", "id"?, "data_source"?}``), :class:`Task` or ``QARecord``.
        ``out``: a run directory as ``eval --out`` writes it (resumable: what is done there is
        kept; ``trajectories.jsonl``, ``scores.json``, ``report.md`` at the end); without it
        nothing is written.
        """
        from deepresearcher.eval.data import EvalData, load_eval_data
        from deepresearcher.eval.report import compute_scores
        from deepresearcher.eval.runner import EvalRunner

        if isinstance(questions, str | Path):
            data = load_eval_data(str(questions))
        else:
            data = EvalData("python", _records(questions))
        records = data.records
        seed = self.config.seed or 0
        if out is not None:
            return await self._evaluate_into(Path(out), data, samples=samples,
                                             concurrency=concurrency, judge=judge, seed=seed)
        runner = EvalRunner(self.policy, self.toolbox, self.config, judge=judge, samples=samples,
                            concurrency=concurrency)
        slots = asyncio.Semaphore(max(1, concurrency))

        async def one(record: QARecord, sample: int) -> dict[str, Any]:
            async with slots:
                return await runner.run_one(record, sample)

        rows = list(await asyncio.gather(*(one(r, s) for r, s in runner.units(records, set()))))
        return Evaluation(rows, compute_scores(rows, seed=seed, expected=len(rows)))

    def evaluate(
        self,
        questions: str | Path | Iterable[Mapping[str, Any] | Task | QARecord],
        *,
        samples: int = 1,
        concurrency: int = 32,
        judge: Judge | None = None,
        out: Path | str | None = None,
    ) -> Evaluation:
        """:meth:`aevaluate`, synchronously."""
        return self._sync(self.aevaluate(questions, samples=samples, concurrency=concurrency,
                                         judge=judge, out=out))

    async def _evaluate_into(self, out: Path, data: Any, *, samples: int, concurrency: int,
                             judge: Judge | None, seed: int) -> Evaluation:
        """An evaluation in a run directory, through the eval's own session (card, resume)."""
        from deepresearcher.eval import session
        from deepresearcher.eval.results import ResultStore
        from deepresearcher.eval.runner import EvalRunner

        config = self.config
        if config.date is None:  # resuming on another day keeps the run's prompt date
            config = config.model_copy(update={"date": session.saved_date(out)})
        tools = self.tools
        card = session.build_card(
            selection=session.Selection(data=data.spec, seed=seed), data=data,
            records=data.records, config=config, samples=samples, judge=judge,
            model={"name": getattr(self.policy, "name", type(self.policy).__name__),
                   "base_url": getattr(self.policy, "base_url", None), "profile": config.profile},
            tools=session.ToolsInfo(
                search=tools.search if tools else str(self.agent.settings().get("search")),
                reader=type(self.toolbox.reader).__name__,
                cache_mode=tools.cache_mode if tools and tools.cache else "off",
                index=str(Path(tools.index).resolve()) if tools and tools.index else None,
                world=str(Path(tools.world).resolve()) if tools and tools.world else None),
        )
        session.open_run(out, card, data.records)
        runner = EvalRunner(self.policy, self.toolbox, config, judge=judge, samples=samples,
                            concurrency=concurrency)
        await session.run_session(out, card, data.records, runner)
        scores = session.finish(out, card, data.records, samples,
                                paper=session.is_paper_test(data), seed=seed)
        order = {r.id: i for i, r in enumerate(data.records)}
        stored = ResultStore(out / session.RESULTS_FILE).load(repair=False).values()
        rows = sorted((r for r in stored if r["id"] in order),
                      key=lambda r: (order[r["id"]], int(r.get("sample", 0))))
        return Evaluation(rows, scores)

    # -- lifetime ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the policy's and the tools' connections."""
        closer = getattr(self.policy, "aclose", None)
        if closer is not None:
            await closer()
        await self.toolbox.aclose()

    def close(self) -> None:
        """:meth:`aclose`, synchronously, and the researcher's own event loop with it."""
        self._sync(self.aclose())
        if self._loop is not None:
            loop, self._loop = self._loop, None
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def __enter__(self) -> Researcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Researcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _sync(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` to its end on the researcher's event loop (one loop for all sync calls,
        so connection pools live from one call to the next)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            work.close()
            raise RuntimeError("a Researcher's sync calls cannot run inside a running event loop; "
                               "await arun(), aevaluate() or aclose() there instead")
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        task = self._loop.create_task(work)
        try:
            return self._loop.run_until_complete(task)
        except BaseException:  # Ctrl-C: the episode is cancelled, not left pending
            task.cancel()
            with contextlib.suppress(BaseException):
                self._loop.run_until_complete(task)
            raise


@dataclass(frozen=True)
class Evaluation:
    """What an evaluation gives: one result per (question, sample) and the eval's scores.

    ``results`` are the lines of the eval's ``results.jsonl`` (question, golds, status, answer,
    ``scores`` per metric, the ``trajectory``); ``scores`` is its ``scores.json`` (per data
    source and ``overall``: mean and bootstrap 95% CI per metric, statuses, tool use).
    """

    results: list[dict[str, Any]]
    scores: dict[str, Any]

    @property
    def metrics(self) -> dict[str, float]:
        """The mean of each metric over all questions: ``{"f1": …, "em": …, …}``."""
        overall = self.scores.get("overall") or {}
        return {name: block["mean"] for name, block in (overall.get("metrics") or {}).items()}

    @property
    def trajectories(self) -> list[Trajectory]:
        """The episodes, in question order."""
        return [Trajectory.model_validate(r["trajectory"]) for r in self.results
                if r.get("trajectory")]


def load_trajectories(path: Path | str) -> list[Trajectory]:
    """The trajectories of a JSONL file (``ask --json`` lines, ``expert``, a training run's
    rollouts) or of an evaluation run directory (its ``trajectories.jsonl``)."""
    path = Path(path)
    if path.is_dir():
        from deepresearcher.eval.session import TRAJECTORIES_FILE

        path = path / TRAJECTORIES_FILE
    if not path.is_file():
        raise DataError(f"no trajectory file at {path}",
                        hint="pass a trajectory JSONL file or an eval run directory")
    return list(read_jsonl(path))


def _records(questions: Iterable[Mapping[str, Any] | Task | QARecord]) -> list[QARecord]:
    """Questions given in Python as the eval's records; each needs its gold answers."""
    from deepresearcher.data.paper_format import QARecord

    records: list[QARecord] = []
    for i, item in enumerate(questions):
        question: Any
        golds: Any
        if isinstance(item, QARecord):
            records.append(item)
            continue
        if isinstance(item, Task):
            question, golds = item.question, item.golds
            rid, source = item.id, item.data_source
        elif isinstance(item, Mapping):
            question = item.get("question")
            golds = next((item[k] for k in _GOLD_KEYS if item.get(k) is not None), None)
            rid, source = item.get("id"), item.get("data_source")
        else:
            raise ConfigError(
                f"question {i} is a {type(item).__name__}: an evaluation needs gold answers",
                hint='pass {"question": "...", "golds": ["..."]} (or a Task with golds); '
                "to research a question without golds, use run() or arun()")
        if isinstance(golds, str):
            golds = [golds]
        if not golds:
            raise ConfigError(f"question {i} has no gold answers",
                              hint='give each one "golds": ["..."]')
        records.append(QARecord(id=str(rid) if rid is not None else f"q{i}",
                                question=str(question or ""), golds=list(golds),
                                data_source=source or "questions", split="test"))
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise ConfigError("two questions share an id", hint="give each question its own id")
    return records
