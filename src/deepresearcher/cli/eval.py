"""``deepresearcher eval``: evaluate a model on a question set (resumable), re-score rollouts,
compare two runs."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from deepresearcher.agent.build import DEFAULT_MODEL, ToolSettings
from deepresearcher.cli import display
from deepresearcher.cli.common import (
    ExtractTimeout,
    FetchTimeout,
    MaxPageBytes,
    ReaderBaseUrl,
    ReaderKeyEnv,
    ReaderKind,
    ReaderModel,
)

# Exit codes of ``eval`` (and ``eval score``): 0 done; 2 (from main) a usage, configuration or data
# error; 3 no episode could be run (every one failed); 4 more episodes failed than
# --max-failed-share allows; 130 interrupted. Results already saved stay; the same command resumes.
EXIT_ALL_FAILED = 3
EXIT_TOO_MANY_FAILED = 4

eval_app = typer.Typer(
    help="Evaluate an agent: the paper's protocol (F1, EM, MBE judge) and more, resumable.",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).stem if "/" in text else text).strip("-")


def _judge(model: str | None, base_url: str | None, temperature: float, key_env: str,
           cache: Any, concurrency: int) -> Any:
    if model is None:
        return None
    from deepresearcher.errors import ConfigError
    from deepresearcher.eval.judge import Judge

    if base_url is None:
        raise ConfigError("--judge-model needs --judge-base-url",
                          hint="e.g. --judge-base-url https://api.openai.com/v1 "
                          "(the key comes from $OPENAI_API_KEY, see --judge-api-key-env)")
    return Judge(model, base_url, temperature=temperature, api_key_env=key_env, cache=cache,
                 concurrency=concurrency)


@eval_app.callback()
def run(
    ctx: typer.Context,
    data: str | None = typer.Option(None, "--data", "-d",
                                    help="paper-test, paper-dev, a file (.parquet, .jsonl, .json, "
                                    ".csv) or hf:REPO[:CONFIG]:SPLIT."),
    data_source: str | None = typer.Option(None, "--data-source",
                                           help="data_source for files that do not name one."),
    sources: str | None = typer.Option(None, "--sources",
                                       help="Only these data sources, e.g. nq,hotpotqa."),
    limit: int | None = typer.Option(None, "--limit", min=1,
                                     help="At most this many questions (round-robin over sources)."),
    paper_sample: bool = typer.Option(False, "--paper-sample",
                                      help="Sample 512 questions per source (all of Bamboogle), "
                                      "seeded, as the paper built its test set."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="Model name or local path, or the served name."),
    base_url: str | None = typer.Option(None, "--base-url",
                                        help="OpenAI-compatible server (…/v1); without it the "
                                        "model runs locally with transformers."),
    api: str = typer.Option("auto", "--api", help="auto, completions or chat."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env",
                                    help="Environment variable holding the policy server's key."),
    profile: str = typer.Option("deepresearcher-7b", "--profile",
                                help="Prompt profile: deepresearcher-7b or native-tools."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="Tokenizer name or path."),
    search: str = typer.Option("local", "--search", help="Search backend."),
    index: Path | None = typer.Option(None, "--index", help="Local search index directory."),
    world: Path | None = typer.Option(None, "--world", help="A world directory."),
    cache: Path | None = typer.Option(None, "--cache",
                                      help="SQLite cache for search results and judge verdicts "
                                      "(default: OUT/cache.sqlite)."),
    cache_mode: str = typer.Option("read-write", "--cache-mode", help="read-write, replay or off."),
    reader: ReaderKind = "extractive",
    reader_model: ReaderModel = None,
    reader_base_url: ReaderBaseUrl = None,
    reader_key_env: ReaderKeyEnv = "OPENAI_API_KEY",
    max_page_bytes: MaxPageBytes = ToolSettings.max_page_bytes,
    fetch_timeout: FetchTimeout = ToolSettings.fetch_timeout_s,
    extract_timeout: ExtractTimeout = ToolSettings.extract_timeout_s,
    max_turns: int = typer.Option(10, "--max-turns", min=1),
    max_tokens: int = typer.Option(2000, "--max-tokens", min=1, help="Tokens per turn."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, max=2.0,
                                      help="Sampling temperature (0 = greedy; the original "
                                      "sampled at 1.0)."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed", help="Seed of sampling, subsampling and bootstrap."),
    samples: int = typer.Option(1, "--samples", "-k", min=1,
                                help="Episodes per question (avg@k and pass@k)."),
    date: str | None = typer.Option(None, "--date",
                                    help="Date in the system prompt (default: today, kept on "
                                    "resume)."),
    context_window: int | None = typer.Option(None, "--context-window", min=1),
    timeout: float | None = typer.Option(None, "--timeout", min=0.001,
                                         help="Seconds the policy server (--base-url) has for "
                                         "each generation request [default: 300]."),
    device: str = typer.Option("cpu", "--device", help="Device for a local model: cpu, cuda, cuda:1, ... or auto."),
    concurrency: int = typer.Option(32, "--concurrency", "-c", min=1,
                                    help="Episodes in flight at once."),
    judge_model: str | None = typer.Option(None, "--judge-model",
                                           help="LLM judge for MBE (e.g. gpt-4o-mini)."),
    judge_base_url: str | None = typer.Option(None, "--judge-base-url"),
    judge_temperature: float = typer.Option(0.0, "--judge-temperature", min=0.0,
                                            help="Judge temperature (the paper used 0.7)."),
    judge_api_key_env: str = typer.Option("OPENAI_API_KEY", "--judge-api-key-env"),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="Run directory (default runs/eval/MODEL-DATA); the same "
                                    "command resumes it."),
    retry_errors: bool = typer.Option(True, "--retry-errors/--keep-errors",
                                      help="On resume, run again the episodes that failed "
                                      "(status error), or keep them as they are."),
    max_failed_share: float = typer.Option(0.1, "--max-failed-share", min=0.0, max=1.0,
                                           help="Exit 4 when a larger share of the episodes "
                                           "failed (status error); exit 3 when all did."),
    record_tokens: bool = typer.Option(False, "--record-tokens",
                                       help="Keep token ids and log-probs in trajectories."),
) -> None:
    """Evaluate a model: one research episode per question, every metric, a report. Resumable."""
    if ctx.invoked_subcommand is not None:
        return
    if data is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    from deepresearcher.agent.build import build_policy, build_toolbox
    from deepresearcher.agent.config import AgentConfig
    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.errors import ConfigError
    from deepresearcher.eval import session
    from deepresearcher.eval.runner import EvalRunner, still_done
    from deepresearcher.tools.cache import ToolCache

    selection = session.Selection(
        data=data, data_source=data_source,
        sources=tuple(s.strip() for s in (sources or "").split(",") if s.strip()),
        limit=limit, paper_sample=paper_sample, seed=seed,
    )
    dataset, records = session.select_questions(selection)
    out = out or Path("runs/eval") / f"{_slug(model)}-{_slug(data)}"
    # The window a server is used with (32k unless told), recorded on the protocol card; a
    # local model's own window is its config's.
    window = context_window or (32768 if base_url is not None else None)
    config = AgentConfig(profile=profile, max_turns=max_turns, max_tokens_per_turn=max_tokens,
                         temperature=temperature, top_p=top_p, seed=seed,
                         date=date or session.saved_date(out), context_window=window,
                         record_tokens=record_tokens)
    cache_path = cache or out / session.CACHE_FILE
    tool_cache = ToolCache(cache_path, mode=cache_mode)  # judge verdicts; the tools open their own
    toolbox = build_toolbox(ToolSettings(search=search, index=index, world=world,
                                         cache=cache_path if cache_mode != "off" else None,
                                         cache_mode=cache_mode, reader=reader,
                                         reader_model=reader_model,
                                         reader_base_url=reader_base_url,
                                         reader_api_key_env=reader_key_env,
                                         max_page_bytes=max_page_bytes,
                                         fetch_timeout_s=fetch_timeout,
                                         extract_timeout_s=extract_timeout))
    judge = _judge(judge_model, judge_base_url, judge_temperature, judge_api_key_env, tool_cache,
                   concurrency)
    tools = session.ToolsInfo(
        search=search, reader=type(toolbox.reader).__name__ + (
            f" ({reader_model})" if reader == "llm" else ""), cache_mode=cache_mode,
        index=str(index.resolve()) if index else None,
        world=str(world.resolve()) if world else None,
    )
    model_info = {"name": model, "base_url": base_url, "api": api, "profile": profile,
                  "tokenizer": tokenizer}
    card = session.build_card(selection=selection, data=dataset, records=records, model=model_info,
                              config=config, samples=samples, tools=tools, judge=judge)
    console = display.console(stderr=True, highlight=False)
    store = session.open_run(out, card, records)
    ids = {r.id for r in records}
    saved = [r for r in store.load(repair=True).values() if r.get("id") in ids]
    kept = list(still_done({r["key"]: r for r in saved}, retry_errors=retry_errors).values())
    quiet_hf()
    with console.status("loading the model…"):
        policy = build_policy(model, base_url=base_url, api=api,  # type: ignore[arg-type]
                              profile=profile, tokenizer=tokenizer, context_window=context_window,
                              device=device, api_key_env=api_key_env, timeout=timeout)
    runner = EvalRunner(policy, toolbox, config, judge=judge, samples=samples,
                        concurrency=concurrency)
    total = len(records) * samples
    again = f", {len(saved) - len(kept)} failed ones to run again" if len(saved) > len(kept) else ""
    console.print(display.text(("eval", "bold"), f" {len(records)} questions × {samples} → "
                               f"{out} ({len(kept)} episodes already done{again})"))

    async def go() -> Any:
        try:
            if base_url is not None:
                # Fail fast (with a hint) if the server is down or serves another name: every
                # episode would otherwise end in an error, saved as done.
                served = await policy.list_models()
                if model not in served:
                    raise ConfigError(
                        f"the server at {base_url} serves {', '.join(served) or 'no model'}, "
                        f"not {model!r}",
                        hint="pass --model with the served name (vLLM's --served-model-name)")
            with _Progress(console, total, kept) as progress:
                return await session.run_session(out, card, records, runner,
                                                 retry_errors=retry_errors,
                                                 on_result=progress.update)
        finally:
            for closer in (getattr(policy, "aclose", None), getattr(judge, "aclose", None)):
                if closer is not None:
                    await closer()

    try:
        summary = asyncio.run(go())
    except KeyboardInterrupt:
        stored = len(store.load(repair=True))
        console.print(display.text(f"interrupted: {stored} of {total} episodes are saved in {out}; "
                                   "run the same command again to finish the rest"))
        raise typer.Exit(130) from None
    scores = session.finish(out, card, records, samples, paper=session.is_paper_test(dataset),
                            seed=seed)
    console.print(f"ran {summary.ran} episodes in {summary.seconds:.1f} s")
    failed = (scores.get("overall") or {}).get("tool_errors") or {}
    if failed.get("failed_searches"):
        console.print(display.text(("warning:", "yellow"),
                                   f" {failed['failed_searches']} searches failed (the model saw "
                                   "no results there: a key, a quota, a replay miss?); see the "
                                   "trajectories' tool errors"))
    _print_scores(display.console(highlight=False), scores)
    console.print(display.text(f"report: {out / 'report.md'}"))
    code = _failure_verdict(scores, max_failed_share, console)
    if code:
        raise typer.Exit(code)


_RETRY_HINT = ("fix the cause (each error is in results.jsonl) and run the same command again: "
               "it runs the failed episodes again and keeps the others")


def _failure_verdict(scores: dict[str, Any], max_share: float, console: Console,
                     retry: str = _RETRY_HINT) -> int:
    """Say how many episodes failed, and why, after the scores; the exit code it calls for."""
    from deepresearcher.eval.report import failure_summary

    summary = failure_summary(scores)
    if summary is None:
        return 0
    failed, done = scores["failed_episodes"], scores["episodes_done"]
    if failed == done:
        display.print_error(summary, retry, to=console)
        return EXIT_ALL_FAILED
    if failed / done > max_share:
        display.print_error(f"{summary}: more than --max-failed-share {max_share:g}", retry,
                            to=console)
        return EXIT_TOO_MANY_FAILED
    console.print(display.text(("warning:", "bold yellow"), f" {summary}"))
    return 0


class _Progress:
    """A rich progress bar with ETA and the running means of F1, EM (and MBE when judged)."""

    def __init__(self, console: Console, total: int, done: list[dict[str, Any]]) -> None:
        """``done``: the results of earlier invocations that stay; the means include them."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[scores]}"),
            console=console, transient=False,
        )
        self.task = self.progress.add_task("eval", total=total, completed=len(done), scores="")
        self.sums: dict[str, float] = {}
        self.n = 0
        for result in done:
            self._add(result)
        self.progress.update(self.task, scores=self._shown())

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, result: dict[str, Any]) -> None:
        self._add(result)
        self.progress.update(self.task, advance=1, scores=self._shown())

    def _add(self, result: dict[str, Any]) -> None:
        self.n += 1
        for name in ("f1", "em", "mbe"):
            if name in (result.get("scores") or {}):
                self.sums[name] = self.sums.get(name, 0.0) + float(result["scores"][name])

    def _shown(self) -> str:
        """The means over every episode done so far, this invocation's and earlier ones'."""
        if not self.n:
            return ""
        return " ".join(f"{k.upper()} {100 * v / self.n:.1f}" for k, v in self.sums.items())


def _print_scores(console: Console, scores: dict[str, Any]) -> None:
    table = Table(title="scores (%)")
    for col in ("source", "n", "F1", "EM", "MBE", "cover-EM"):
        table.add_column(col, justify="left" if col == "source" else "right")
    rows = [*scores["by_source"].items()]
    if scores.get("overall"):
        rows.append(("all", scores["overall"]))
    for source, block in rows:
        m = block["metrics"]
        table.add_row(display.text(source), str(block["questions"]),
                      *(f"{100 * m[k]['mean']:.1f}" if k in m else "–"
                        for k in ("f1", "em", "mbe", "cover_em")))
    console.print(table)


@eval_app.command("score")
def score(
    rollouts: Path = typer.Argument(..., help="Trajectory JSONL, results JSONL, or the original's "
                                    "rollout_step_N.json."),
    data: str | None = typer.Option(None, "--data", "-d",
                                    help="The question set the rollouts came from (needed for the "
                                    "original's format; else optional)."),
    data_source: str | None = typer.Option(None, "--data-source"),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for scores.json and report.md."),
    judge_model: str | None = typer.Option(None, "--judge-model"),
    judge_base_url: str | None = typer.Option(None, "--judge-base-url"),
    judge_temperature: float = typer.Option(0.0, "--judge-temperature", min=0.0),
    judge_api_key_env: str = typer.Option("OPENAI_API_KEY", "--judge-api-key-env"),
    cache: Path | None = typer.Option(None, "--cache", help="Judge verdict cache "
                                      "(default: OUT/cache.sqlite)."),
    cache_mode: str = typer.Option("read-write", "--cache-mode"),
    concurrency: int = typer.Option(16, "--concurrency", "-c", min=1),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
) -> None:
    """Score existing rollouts on every metric (the judge is optional)."""
    from deepresearcher.eval import rescore
    from deepresearcher.tools.cache import ToolCache

    out.mkdir(parents=True, exist_ok=True)
    tool_cache = ToolCache(cache or out / "cache.sqlite", mode=cache_mode)
    judge = _judge(judge_model, judge_base_url, judge_temperature, judge_api_key_env, tool_cache,
                   concurrency)
    scores = rescore.rescore(rollouts, out, data=data, data_source=data_source, judge=judge,
                             seed=seed)
    _print_scores(display.console(highlight=False), scores)
    console = display.console(stderr=True, highlight=False)
    console.print(display.text(f"report: {out / 'report.md'}"))
    # Re-scoring runs nothing: failed episodes only stop it when there is nothing else.
    code = _failure_verdict(scores, 1.0, console, "score the rollouts of a run whose episodes ran")
    if code:
        raise typer.Exit(code)


@eval_app.command("compare")
def compare(
    run_a: Path = typer.Argument(..., help="A run directory."),
    run_b: Path = typer.Argument(..., help="Another run directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Two runs side by side (metrics per source) with every protocol difference flagged."""
    from deepresearcher.eval.compare import compare_runs

    result = compare_runs(run_a, run_b)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = display.console(highlight=False)
    table = Table(title=display.text(f"A = {run_a}   B = {run_b}   (%)"))
    table.add_column("source")
    for col in ("n A", "n B", "F1 A", "F1 B", "ΔF1", "EM A", "EM B", "MBE A", "MBE B"):
        table.add_column(col, justify="right")
    for row in result["sources"]:
        delta = row.get("f1_delta")
        table.add_row(display.text(row["source"]),
                      *(_fmt(row.get(k)) for k in ("n_a", "n_b", "f1_a", "f1_b")),
                      "–" if delta is None else f"{100 * delta:+.1f}",
                      *(_fmt(row.get(k)) for k in ("em_a", "em_b", "mbe_a", "mbe_b")))
    console.print(table)
    diffs = result["protocol_differences"]
    if not diffs:
        console.print("protocols: identical")
    for d in diffs:
        console.print(display.text(("protocol differs", "bold yellow"),
                                   f" {d['field']}: A={json.dumps(d['a'])} B={json.dumps(d['b'])}"))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{100 * value:.1f}"
    return str(value)
