"""``deepresearcher expert`` and ``deepresearcher sft``: demonstrations and the SFT warm start."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deepresearcher.cli import display

TINY = "tiny"


def register(app: typer.Typer) -> None:
    """Add the ``expert`` and ``sft`` commands to ``app``."""
    app.command("expert")(expert)
    app.command("sft")(sft)


def _tokenizer(name: str) -> Any:
    """The tokenizer to record token ids with: the built-in tiny one, or a model's."""
    if name == TINY:
        import tempfile

        from deepresearcher.models.tiny import build_tokenizer

        # Deterministic: the same vocabulary as `deepresearcher model tiny` (default size).
        with tempfile.TemporaryDirectory() as tmp:
            return build_tokenizer(Path(tmp))
    from deepresearcher.agent.policy import load_tokenizer

    return load_tokenizer(name)


def expert(
    world: Annotated[Path, typer.Argument(help="A world directory (deepresearcher world build).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Trajectory JSONL to write (overwritten).")
    ],
    split: Annotated[str, typer.Option("--split", help="train, dev or test.")] = "train",
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Only the first N questions.")
    ] = None,
    tokenizer: Annotated[
        str,
        typer.Option(
            "--tokenizer",
            help="Tokenizer of the model you will train (a directory or Hub id); "
            "'tiny' is the built-in one of `deepresearcher model tiny`.",
        ),
    ] = TINY,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the expert's wording.")] = 0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Episodes at once.")
    ] = 16,
    date: Annotated[
        str | None, typer.Option("--date", help="YYYY-MM-DD in the system prompt (default: today).")
    ] = None,
) -> None:
    """Write expert demonstrations for a world split (the input of `deepresearcher sft`).

    Real searches and browses through the agent loop, in the exact format, with token ids and
    loss masks recorded."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from deepresearcher.agent.config import AgentConfig
    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.train.expert import generate_expert_trajectories, load_cases
    from deepresearcher.world import load_manifest

    quiet_hf()
    console = display.console(stderr=True)
    manifest = load_manifest(world)  # a clear error for a folder that is not a world
    total = len(load_cases(manifest.questions_path(split, fmt="jsonl"), limit=limit))
    with console.status("loading the tokenizer…"):
        tok = _tokenizer(tokenizer)
    config = AgentConfig(temperature=0.0, seed=seed, date=date)
    columns = (
        TextColumn("expert"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[exact]} exact"),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("episodes", total=total, exact=0)
        exact = 0

        def done(trajectory: Any) -> None:
            nonlocal exact
            exact += trajectory.status == "answered" and trajectory.metrics.get("f1") == 1.0
            bar.update(task, advance=1, exact=exact)

        stats = asyncio.run(
            generate_expert_trajectories(
                world,
                split,
                tokenizer=tok,
                out=out,
                limit=limit,
                seed=seed,
                concurrency=concurrency,
                config=config,
                on_done=done,
            )
        )

    table = Table(
        title=display.text(f"expert on {split}: {stats.episodes} episodes in "
                           f"{stats.seconds:.1f} s"),
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column()
    table.add_row("answered, F1 = 1", f"{stats.exact} ({stats.success_rate:.1%})")
    table.add_row("statuses", display.text(", ".join(f"{k} {v}"
                                                     for k, v in sorted(stats.statuses.items()))))
    for source, (n, ok) in sorted(stats.by_source.items()):  # the world's data sources
        table.add_row(display.text(f"  {source}"), f"{ok}/{n}")
    table.add_row("mean turns", f"{stats.mean_turns:.2f}")
    table.add_row("with tokens", str(stats.with_tokens))
    table.add_row("trajectories", display.text(str(out)))
    display.console().print(table)


def sft(
    trajectories: Annotated[
        Path, typer.Argument(help="Trajectory JSONL with token ids (deepresearcher expert).")
    ],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Model to fine-tune: a directory "
            "or Hub id, with the tokenizer the trajectories used.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for the fine-tuned model and tokenizer.")
    ],
    epochs: Annotated[float, typer.Option("--epochs", min=0.0)] = 1.0,
    max_steps: Annotated[
        int,
        typer.Option(
            "--max-steps",
            help="Stop after this many optimizer steps (overrides --epochs when > 0).",
        ),
    ] = -1,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine decay).")] = 1e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1)] = 1,
    max_length: Annotated[
        int,
        typer.Option(
            "--max-length",
            min=16,
            help="Tokens per trajectory; longer ones are cut (or dropped with --drop-long).",
        ),
    ] = 2048,
    drop_long: Annotated[
        bool,
        typer.Option(
            "--drop-long",
            help="Leave out trajectories longer than --max-length instead of cutting them.",
        ),
    ] = False,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="Episode statuses to train on (repeatable; default: answered). "
            "'all' keeps every status.",
        ),
    ] = None,
    min_f1: Annotated[
        float | None,
        typer.Option("--min-f1", min=0.0, max=1.0, help="Only episodes with at least this F1."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    gradient_checkpointing: Annotated[
        bool,
        typer.Option("--gradient-checkpointing",
                     help="Recompute activations in the backward pass: less GPU memory, slower."),
    ] = False,
) -> None:
    """Supervised warm start on trajectories with TRL's SFTTrainer; loss only on assistant tokens."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from deepresearcher.cli.common import is_main_process, quiet_hf
    from deepresearcher.errors import ConfigError, DataError
    from deepresearcher.train.sft import run_sft

    if not trajectories.is_file():
        raise DataError(
            f"no trajectory file at {trajectories}",
            hint="write one with: deepresearcher expert WORLD --out TRAJ.jsonl",
        )
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}", hint="choose auto, cpu or cuda")
    statuses = None if status and "all" in status else tuple(status or ("answered",))
    quiet_hf()
    console = display.console(stderr=True, quiet=not is_main_process())  # rank 0 speaks for all
    columns = (
        TextColumn("sft"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("loss {task.fields[loss]}"),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("steps", total=None, loss="–")

        def on_log(step: int, total: int, logs: dict[str, float]) -> None:
            loss = f"{logs['loss']:.3f}" if "loss" in logs else bar.tasks[0].fields["loss"]
            bar.update(task, completed=step, total=total or None, loss=loss)

        result = run_sft(
            trajectories,
            model,
            out,
            epochs=epochs,
            max_steps=max_steps,
            lr=lr,
            batch_size=batch_size,
            grad_accum=grad_accum,
            max_length=max_length,
            seed=seed,
            statuses=statuses,
            min_f1=min_f1,
            too_long="drop" if drop_long else "truncate",
            device=device,
            gradient_checkpointing=gradient_checkpointing,
            logging_steps=5,
            on_log=on_log,
        )  # type: ignore[arg-type]
    out_console = display.console(quiet=not is_main_process(), highlight=False)
    out_console.print(display.text(f"data: {result.data.summary()}"))
    warning = result.data.warning()
    if warning:
        console.print(display.text(("warning:", "yellow"), f" {warning}"))
    first = f"{result.first_loss:.3f}" if result.first_loss is not None else "–"
    last = f"{result.last_loss:.3f}" if result.last_loss is not None else "–"
    out_console.print(display.text(
        f"trained {result.steps} steps in {result.seconds:.1f} s on {result.device}: "
        f"loss {first} → {last}"))
    out_console.print(display.text(f"model and tokenizer saved to {result.out}"))
