"""``deepresearcher quickstart``: world, tiny model, SFT, GRPO and a before/after report, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add the ``quickstart`` command to ``app``."""
    app.command("quickstart")(quickstart)


def quickstart(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for everything the run makes.")
    ] = Path("quickstart"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the world, model and training.")] = 0,
    fast: Annotated[
        bool, typer.Option("--fast", help="A reduced run (~1.5 min): smaller world, fewer steps.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Reuse finished stages found in --out."),
    ] = True,
    base_model: Annotated[
        str | None,
        typer.Option(
            "--base-model",
            help="Start from this causal LM (a local folder or a Hub id, with a chat template) "
            "instead of the tiny random Qwen2; SFT then uses lr 1e-5 and GRPO lr 1e-6 unless set.",
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="Where SFT, evaluation and GRPO run: cpu, cuda or auto.")
    ] = "cpu",
    sft_steps: Annotated[
        int | None, typer.Option("--sft-steps", min=1, help="SFT warm-start steps (default 300).")
    ] = None,
    sft_lr: Annotated[
        float | None, typer.Option("--sft-lr", min=0.0, help="SFT learning rate (default 3e-3).")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="GRPO recipe overrides, key.path=value (e.g. grpo.max_steps=10)."),
    ] = None,
) -> None:
    """Build a fictional world and a tiny model, warm-start it with SFT, train it with GRPO on a
    CPU, and report held-out answer F1 before and after RL (report.md, report.json, a reward-curve
    PNG and the evaluation trajectories in --out)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.train.quickstart import STAGE_TITLES, STAGES, Quickstart

    quiet_hf()
    console = Console(stderr=True)
    settings = quickstart_settings(
        seed=seed,
        fast=fast,
        base_model=base_model,
        device=device,
        sft_steps=sft_steps,
        sft_lr=sft_lr,
        overrides=overrides or [],
    )
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, Any] = {}

        def task(stage: str) -> Any:
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGE_TITLES[stage], total=None, info="")
            return tasks[stage]

        def on_event(kind: str, data: dict[str, Any]) -> None:
            stage = data.get("stage", "grpo")
            if kind == "stage_start":
                task(stage)
            elif kind == "stage_skip":
                bar.update(task(stage), total=1, completed=1, info="done before (reused)")
            elif kind == "stage_end":
                current = bar.tasks[task(stage)]
                total = current.total or 1
                bar.update(
                    task(stage),
                    total=total,
                    completed=total,
                    info=_summary(stage, data.get("data", {}), data["seconds"]),
                )
            elif kind == "progress":
                info = f"loss {data['loss']:.3f}" if data.get("loss") is not None else None
                bar.update(
                    task(stage),
                    total=data.get("total") or None,
                    completed=data.get("completed", 0),
                    **({"info": info} if info else {}),
                )
            elif kind == "grpo_step":
                line = (
                    f"step {data['step']:>3}  reward {data.get('reward', float('nan')):+.3f}  "
                    f"F1 {data.get('rollout/f1', float('nan')):.3f}  format errors "
                    f"{data.get('rollout/format_error_rate', float('nan')):.0%}"
                )
                bar.update(
                    task("grpo"), total=data.get("total") or None, completed=data["step"], info=line
                )
                console.print(f"  grpo {line}", highlight=False)

        result = Quickstart(out, settings, on_event=on_event, resume=resume).run()

    before, after = result.before, result.after
    table = Table(
        title=f"quickstart (seed {seed}{', fast' if fast else ''}): "
        f"{before['episodes']} held-out questions, greedy"
    )
    table.add_column("metric")
    table.add_column("SFT (before)", justify="right")
    table.add_column("GRPO (after)", justify="right")
    table.add_column("change", justify="right")
    from deepresearcher.train.quickstart import METRIC_ROWS

    for label, key, fmt in METRIC_ROWS:
        table.add_row(
            label,
            fmt.format(before[key]),
            fmt.format(after[key]),
            f"{after[key] - before[key]:+.3f}",
        )
    times = Table(title="time per stage")
    times.add_column("stage")
    times.add_column("seconds", justify="right")
    for name in STAGES:
        stage = result.stages[name]
        times.add_row(
            STAGE_TITLES[name] + (" (reused)" if stage.skipped else ""), f"{stage.seconds:.1f}"
        )
    times.add_row("total", f"{result.seconds:.1f}")
    printer = Console()
    printer.print(table)
    printer.print(times)
    printer.print(
        f"report: {out / 'report.md'} (and report.json, reward_curve.png, "
        f"trajectories/); TensorBoard: tensorboard --logdir {out / 'grpo' / 'runs'}",
        highlight=False,
    )


def quickstart_settings(
    *,
    seed: int,
    fast: bool,
    base_model: str | None,
    device: str,
    sft_steps: int | None,
    sft_lr: float | None,
    overrides: list[str],
) -> Any:
    """The run's settings from the command line (what is not given keeps its default: a base
    model's learning rates are the library's, see ``QuickstartSettings``)."""
    from deepresearcher.train.quickstart import QuickstartSettings, fast_settings

    changes: dict[str, Any] = {
        "seed": seed, "device": device, "base_model": base_model, "sft_lr": sft_lr
    }
    if sft_steps is not None:
        changes["sft_steps"] = sft_steps
    if fast:
        return fast_settings(**changes, overrides=tuple(overrides))
    return QuickstartSettings(**changes, overrides=tuple(overrides))


def _summary(stage: str, data: dict[str, Any], seconds: float) -> str:
    if stage in ("eval_before", "eval_after") and "metrics" in data:
        m = data["metrics"]
        return (
            f"F1 {m['f1']:.3f}  answered {m['answered_rate']:.0%}  "
            f"format errors {m['format_error_rate']:.0%}  ({seconds:.0f} s)"
        )
    if stage == "expert":
        return f"{data.get('exact')}/{data.get('episodes')} exact  ({seconds:.0f} s)"
    if stage == "sft":
        return f"loss {data.get('first_loss') or 0:.3f} → {data.get('last_loss') or 0:.3f}  ({seconds:.0f} s)"
    return f"{seconds:.1f} s"
