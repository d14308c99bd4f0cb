"""``deepresearcher data …``: convert QA datasets, build the paper's training mix, run its filters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deepresearcher.cli import display

data_app = typer.Typer(
    help="Training and evaluation question sets: convert, build, filter.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    app.add_typer(data_app, name="data")


def _console(stderr: bool = False) -> Any:
    return display.console(stderr=stderr)


# convert ------------------------------------------------------------------------------------------


@data_app.command("convert")
def convert(
    source: Annotated[
        str | None,
        typer.Argument(
            help="A local QA file (.parquet, .jsonl, .json; format auto-detected). Omit with --hub."
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output .parquet (paper layout) or .jsonl (records)."),
    ] = Path("questions.parquet"),
    data_source: Annotated[
        str | None,
        typer.Option(
            "--data-source", help="nq, tq (triviaqa), hotpotqa, 2wiki, ... (default: from the file)"
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="Split name stored on each row (default: the Hub split "
                     "with --hub, else train)."),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto, paper, records, search-r1, flashrag, hotpotqa, triviaqa, nq-open.",
        ),
    ] = "auto",
    hub: Annotated[
        str | None,
        typer.Option(
            "--hub",
            help="Load from the Hugging Face Hub instead, e.g. RUC-NLPIR/FlashRAG_datasets.",
        ),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", help="Hub config, e.g. hotpotqa.")
    ] = None,
    hub_split: Annotated[str, typer.Option("--hub-split", help="Hub split to load.")] = "train",
) -> None:
    """Convert a QA dataset to the paper's parquet layout.

    Formats: NQ, TriviaQA, HotpotQA, 2Wiki, FlashRAG, Search-R1, the paper's own (see docs/data.md)."""
    from deepresearcher.data.paper_format import write_records
    from deepresearcher.data.sources import load_hub, load_qa_file
    from deepresearcher.errors import ConfigError

    if (source is None) == (hub is None):
        raise ConfigError(
            "give either a file or --hub REPO",
            hint="e.g. `deepresearcher data "
            "convert --hub RUC-NLPIR/FlashRAG_datasets --config nq --out nq.parquet`",
        )
    if hub is not None:
        records = load_hub(
            hub, hub_split, config=config, data_source=data_source, record_split=split, fmt=fmt
        )
    else:
        records = load_qa_file(Path(str(source)), data_source=data_source, split=split or "train",
                               fmt=fmt)
    write_records(records, out)
    _console().print(display.text(f"wrote {len(records):,} questions to {out}"))


# build-train --------------------------------------------------------------------------------------


@data_app.command("build-train")
def build_train(
    nq: Annotated[Path, typer.Option("--nq", help="NQ questions (any supported format).")],
    triviaqa: Annotated[Path, typer.Option("--triviaqa", help="TriviaQA questions.")],
    hotpotqa: Annotated[Path, typer.Option("--hotpotqa", help="HotpotQA questions.")],
    two_wiki: Annotated[Path, typer.Option("--2wiki", help="2WikiMultihopQA questions.")],
    size: Annotated[
        int,
        typer.Option(
            "--size",
            "-n",
            min=1,
            help="Training questions in all (split 1:1:3:3 by largest remainder).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output train .parquet.")],
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    dev_out: Annotated[
        Path | None,
        typer.Option("--dev-out", help="Also write a dev set here, disjoint from train."),
    ] = None,
    dev_size: Annotated[int, typer.Option("--dev-size", min=0, help="Dev questions in all.")] = 0,
    exclude: Annotated[
        list[Path] | None,
        typer.Option(
            "--exclude",
            help="Evaluation files whose questions must not be trained on "
            "(repeatable), e.g. the paper's test.parquet.",
        ),
    ] = None,
    allow_short: Annotated[
        bool,
        typer.Option(
            "--allow-short", help="If a source is too small, shrink the sizes keeping the mix."
        ),
    ] = False,
) -> None:
    """Sample the paper's training mix NQ : TriviaQA : HotpotQA : 2Wiki = 1:1:3:3."""
    from rich.table import Table

    from deepresearcher.data.build import build_training_set, question_keys
    from deepresearcher.data.paper_format import write_parquet
    from deepresearcher.data.sources import load_qa_file
    from deepresearcher.errors import ConfigError

    if dev_size and dev_out is None:
        raise ConfigError("--dev-size needs --dev-out", hint="say where to write the dev set")
    if dev_out is not None and not dev_size:
        raise ConfigError("--dev-out needs --dev-size N (N > 0)")
    files = {"nq": nq, "tq": triviaqa, "hotpotqa": hotpotqa, "2wiki": two_wiki}
    pools = {s: load_qa_file(p, data_source=s) for s, p in files.items()}
    excluded: set[str] = set()
    for path in exclude or []:
        excluded |= question_keys(load_qa_file(path, data_source="eval"))
    result = build_training_set(
        pools, size=size, seed=seed, dev_size=dev_size, exclude=excluded, allow_short=allow_short
    )
    write_parquet(result.train, out)
    if dev_out is not None:
        write_parquet(result.dev, dev_out)

    table = Table(title=f"training mix (seed {seed})")
    for col in (
        "data_source",
        "file",
        "loaded",
        "duplicates",
        "excluded",
        "usable",
        "train",
        "dev",
    ):
        table.add_column(col, justify="left" if col in ("data_source", "file") else "right")
    for source, report in result.sources.items():
        table.add_row(
            display.text(source),
            display.text(files[source].name),
            f"{report.loaded:,}",
            f"{report.duplicates:,}",
            f"{report.excluded:,}",
            f"{report.usable:,}",
            f"{report.train:,}",
            f"{report.dev:,}",
        )
    table.add_row(
        "total",
        "",
        *(
            f"{sum(getattr(r, k) for r in result.sources.values()):,}"
            for k in ("loaded", "duplicates", "excluded", "usable", "train", "dev")
        ),
        style="bold",
    )
    console = _console()
    console.print(table)
    for note in result.notes:
        console.print(display.text(("note:", "yellow"), f" {note}"))
    console.print(display.text(f"train: {len(result.train):,} questions -> {out}"))
    if dev_out is not None:
        console.print(display.text(f"dev: {len(result.dev):,} questions -> {dev_out}"))


# filters ------------------------------------------------------------------------------------------


def _run_filter(title: str, run: Any, out: Path) -> Any:
    """Run a filter coroutine factory ``run(progress)`` under a progress bar with ETA."""
    import asyncio

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = _console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(title, total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return asyncio.run(run(progress))
    except KeyboardInterrupt:
        console.print(display.text(
            f"interrupted: decisions so far are in {out / 'decisions.jsonl'}; "
            "rerun the same command to resume"
        ))
        raise typer.Exit(130) from None


def _print_summary(summary: Any) -> None:
    from rich.table import Table

    table = Table(title=display.text(f"{summary.filter} filter"), show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "questions",
        f"{summary.total:,} ({summary.resumed:,} decided earlier, {summary.decided_now:,} now)",
    )
    table.add_row("kept", f"{summary.kept:,}")
    table.add_row("dropped", f"{summary.dropped:,}")
    table.add_row("unparseable", f"{summary.unparseable:,}")
    for reason, n in summary.by_reason.items():
        table.add_row(display.text(f"reason: {reason}"), f"{n:,}")
    for source, counts in summary.by_data_source.items():
        table.add_row(display.text(source),
                      f"kept {counts['kept']:,}, dropped {counts['dropped']:,}")
    table.add_row(
        "outputs", display.text(f"{summary.out_dir}/{{kept,dropped}}.parquet, "
                                "decisions.jsonl, summary.json")
    )
    _console().print(table)


@data_app.command("filter-quality")
def filter_quality_cmd(
    source: Annotated[
        Path, typer.Argument(help="Questions (.parquet in the paper's layout, or .jsonl records).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (resumable).")],
    base_url: Annotated[
        str, typer.Option("--base-url", help="OpenAI-compatible API root, with /v1.")
    ],
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Judge model id ('auto': the one the server serves)."),
    ],
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 16,
    on_unparseable: Annotated[
        str,
        typer.Option(
            "--on-unparseable", help="keep or drop questions whose verdict cannot be parsed."
        ),
    ] = "keep",
    temperature: Annotated[float, typer.Option("--temperature")] = 0.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
    max_retries: Annotated[
        int, typer.Option("--max-retries", min=0, help="Retries of 429/5xx per request.")
    ] = 3,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 120.0,
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", help="Environment variable holding the API key.")
    ] = "OPENAI_API_KEY",
) -> None:
    """Drop time-sensitive, subjective and harmful questions with an LLM judge (resumable)."""
    from deepresearcher.agent.policy_openai import OpenAIChatPolicy
    from deepresearcher.data.filters import filter_quality
    from deepresearcher.data.paper_format import read_records
    from deepresearcher.errors import ConfigError

    if on_unparseable not in ("keep", "drop"):
        raise ConfigError(f"--on-unparseable must be keep or drop, got {on_unparseable!r}")
    records = read_records(source)
    policy = OpenAIChatPolicy(
        base_url,
        model,
        max_retries=max_retries,
        timeout=timeout,
        api_key_env=api_key_env,
        max_connections=max(8, concurrency),
    )

    async def run(progress: Any) -> Any:
        try:
            return await filter_quality(
                records,
                policy,
                out,
                concurrency=concurrency,
                on_unparseable=on_unparseable,  # type: ignore[arg-type]
                temperature=temperature,
                max_tokens=max_tokens,
                progress=progress,
            )
        finally:
            await policy.aclose()

    _print_summary(_run_filter("judging", run, out))


@data_app.command("filter-contamination")
def filter_contamination_cmd(
    source: Annotated[
        Path, typer.Argument(help="Questions (.parquet in the paper's layout, or .jsonl records).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (resumable).")],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="The base model: a local directory "
            "or Hub id (in-process), or the served id with "
            "--base-url.",
        ),
    ],
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="OpenAI-compatible API root with /v1; without it the model runs "
            "in-process with transformers.",
        ),
    ] = None,
    api: Annotated[
        str,
        typer.Option(
            "--api",
            help="With --base-url: chat (the server applies "
            "the chat template) or completions (rendered here).",
        ),
    ] = "chat",
    tokenizer: Annotated[
        str | None,
        typer.Option("--tokenizer", help="Tokenizer for --api completions (default: --model)."),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Samples per question (pass@k).")] = 4,
    temperature: Annotated[float, typer.Option("--temperature")] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
    f1_threshold: Annotated[
        float,
        typer.Option(
            "--f1-threshold",
            help="A sample is correct on exact match or F1 >= this (1.0: EM-like).",
        ),
    ] = 1.0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Questions in flight.")
    ] = 16,
    device: Annotated[
        str, typer.Option("--device", help="In-process: cpu, cuda, cuda:1, ...")
    ] = "cpu",
    dtype: Annotated[
        str, typer.Option("--dtype", help="In-process: auto, bfloat16, float32.")
    ] = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="In-process: max sequences per generate.")
    ] = 64,
    max_retries: Annotated[int, typer.Option("--max-retries", min=0)] = 3,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 300.0,
) -> None:
    """Drop questions the base model answers correctly without search (pass@k; resumable)."""
    from functools import partial

    from deepresearcher.data.filters import contamination_prompt, filter_contamination
    from deepresearcher.data.paper_format import read_records
    from deepresearcher.errors import ConfigError

    records = read_records(source)
    render = contamination_prompt
    policy: Any
    if base_url is not None:
        from deepresearcher.agent.policy_openai import OpenAIChatPolicy, OpenAICompletionsPolicy

        common = {
            "max_retries": max_retries,
            "timeout": timeout,
            "max_connections": max(8, concurrency * k),
        }
        if api == "chat":
            policy = OpenAIChatPolicy(base_url, model, **common)
        elif api == "completions":
            from deepresearcher.agent.policy import load_tokenizer

            tok = load_tokenizer(tokenizer or model)
            policy = OpenAICompletionsPolicy(base_url, model, tokenizer=tok, **common)
            render = partial(contamination_prompt, tokenizer=tok)
        else:
            raise ConfigError(f"--api must be chat or completions, got {api!r}")
    else:
        from deepresearcher.agent.policy_hf import HFPolicy
        from deepresearcher.cli.common import quiet_hf

        quiet_hf()
        policy = HFPolicy.from_pretrained(
            model, device=device, dtype=dtype, max_batch_size=batch_size
        )

    async def run(progress: Any) -> Any:
        try:
            return await filter_contamination(
                records,
                policy,
                out,
                k=k,
                temperature=temperature,
                max_tokens=max_tokens,
                f1_threshold=f1_threshold,
                concurrency=concurrency,
                render=render,
                progress=progress,
            )
        finally:
            await policy.aclose()

    _print_summary(_run_filter("closed-book", run, out))
