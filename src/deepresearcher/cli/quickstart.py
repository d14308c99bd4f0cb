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
            "instead of the pretrained tiny base; SFT then uses lr 1e-5 and GRPO lr 1e-6 unless "
            "set.",
        ),
    ] = None,
    from_scratch: Annotated[
        bool,
        typer.Option(
            "--from-scratch",
            help="Start from a tiny random Qwen2 with a tokenizer of the world instead of the "
            "pretrained tiny base that ships with the package (it learns the format, not to "
            "copy names: F1 stays near 0).",
        ),
    ] = False,
    device: Annotated[
        str, typer.Option("--device", help="Where SFT, evaluation and GRPO run: cpu, cuda or auto.")
    ] = "cpu",
    sft_steps: Annotated[
        int | None,
        typer.Option("--sft-steps", min=1, help="SFT warm-start steps (default 100 from the "
                     "pretrained base, 300 from scratch or a --base-model; --fast halves them)."),
    ] = None,
    sft_lr: Annotated[
        float | None,
        typer.Option("--sft-lr", min=0.0, help="SFT learning rate (default 1e-3 from the "
                     "pretrained base, 3e-3 from scratch, 1e-5 with --base-model)."),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="GRPO recipe overrides, key.path=value (e.g. grpo.max_steps=10)."),
    ] = None,
) -> None:
    """World, tiny model, SFT warm start, GRPO and a before/after report, offline on a CPU.

    Builds a fictional world and a tiny model, warm-starts it with SFT, trains it with GRPO, and
    reports held-out answer F1 before and after RL (report.md, report.json, a reward-curve PNG
    and the evaluation trajectories in --out)."""
    from rich.table import Table

    from deepresearcher.cli import display
    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.train.quickstart import STAGE_TITLES, STAGES, Quickstart

    quiet_hf()
    console = display.console(stderr=True)
    settings = quickstart_settings(
        seed=seed,
        fast=fast,
        base_model=base_model,
        from_scratch=from_scratch,
        device=device,
        sft_steps=sft_steps,
        sft_lr=sft_lr,
        overrides=overrides or [],
    )
    stages: Any = LiveStages(console) if console.is_terminal else PlainStages(console)
    try:
        with stages:
            result = Quickstart(out, settings, on_event=stages.on_event, resume=resume).run()
    except KeyboardInterrupt:
        done = [STAGE_TITLES[name] for name in STAGES if (out / "stages" / f"{name}.json").is_file()]
        console.print(
            "interrupted; "
            + (f"finished stages ({', '.join(done)}) are reused when the same command runs again"
               if done else "no stage had finished"),
            highlight=False,
        )
        raise typer.Exit(130) from None

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
    printer = display.console()
    printer.print(table)
    printer.print(times)
    printer.print(display.text(
        f"report: {out / 'report.md'} (and report.json, reward_curve.png, "
        f"trajectories/); TensorBoard: tensorboard --logdir {out / 'grpo' / 'runs'}"))


def quickstart_settings(
    *,
    seed: int,
    fast: bool,
    base_model: str | None,
    device: str,
    from_scratch: bool = False,
    sft_steps: int | None,
    sft_lr: float | None,
    overrides: list[str],
) -> Any:
    """The run's settings from the command line (what is not given keeps its default: a base
    model's learning rates are the library's, see ``QuickstartSettings``)."""
    from deepresearcher.train.quickstart import QuickstartSettings, fast_settings

    if from_scratch and base_model:
        from deepresearcher.errors import ConfigError

        raise ConfigError("--from-scratch and --base-model exclude each other",
                          hint="--from-scratch starts from a tiny random model, --base-model "
                          "from the given one")
    changes: dict[str, Any] = {
        "seed": seed, "device": device, "base_model": base_model, "sft_lr": sft_lr,
        "tiny": "random" if from_scratch else "pretrained",
    }
    if sft_steps is not None:
        changes["sft_steps"] = sft_steps
    if fast:
        return fast_settings(**changes, overrides=tuple(overrides))
    return QuickstartSettings(**changes, overrides=tuple(overrides))


def _grpo_line(data: dict[str, Any]) -> str:
    return (
        f"step {data['step']:>3}  reward {data.get('reward', float('nan')):+.3f}  "
        f"F1 {data.get('rollout/f1', float('nan')):.3f}  format errors "
        f"{data.get('rollout/format_error_rate', float('nan')):.0%}"
    )


class LiveStages:
    """Progress on a terminal: one live bar per stage, a printed line per GRPO step."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.bar = Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> LiveStages:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def _task(self, stage: str) -> Any:
        from deepresearcher.train.quickstart import STAGE_TITLES

        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(STAGE_TITLES[stage], total=None, info="")
        return self.tasks[stage]

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        stage = data.get("stage", "grpo")
        bar = self.bar
        if kind == "stage_start":
            self._task(stage)
        elif kind == "stage_skip":
            bar.update(self._task(stage), total=1, completed=1, info="done before (reused)")
        elif kind == "stage_end":
            total = bar.tasks[self._task(stage)].total or 1
            bar.update(self._task(stage), total=total, completed=total,
                       info=_summary(stage, data.get("data", {}), data["seconds"]))
        elif kind == "progress":
            info = f"loss {data['loss']:.3f}" if data.get("loss") is not None else None
            fields: dict[str, Any] = {"info": info} if info else {}
            bar.update(self._task(stage), total=data.get("total") or None,
                       completed=data.get("completed", 0), **fields)
        elif kind == "grpo_step":
            line = _grpo_line(data)
            bar.update(self._task("grpo"), total=data.get("total") or None,
                       completed=data["step"], info=line)
            self.console.print(f"  grpo {line}", highlight=False)


class PlainStages:
    """Progress into a log file or a pipe (no live bars there): a line when a stage starts, a
    line with its result when it ends, one per GRPO step, and the SFT loss every quarter."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.started = 0.0
        self.quarter: dict[str, int] = {}

    def __enter__(self) -> PlainStages:
        import time

        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def _print(self, text: str) -> None:
        import time

        clock = time.perf_counter() - self.started
        self.console.print(f"[{clock:6.0f} s] {text}", highlight=False, soft_wrap=True)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        from deepresearcher.train.quickstart import STAGE_TITLES

        stage = data.get("stage", "grpo")
        title = STAGE_TITLES.get(stage, stage)
        if kind == "stage_start":
            self._print(f"{title}: started")
        elif kind == "stage_skip":
            self._print(f"{title}: done before (reused)")
        elif kind == "stage_end":
            self._print(f"{title}: done, {_summary(stage, data.get('data', {}), data['seconds'])}")
        elif kind == "grpo_step":
            total = data.get("total")
            self._print(f"grpo {_grpo_line(data)}" + (f"  ({data['step']}/{total})" if total else ""))
        elif kind == "progress" and data.get("total") and data.get("loss") is not None:
            quarter = 4 * int(data.get("completed", 0)) // int(data["total"])
            if quarter > self.quarter.get(stage, 0) and quarter < 4:
                self.quarter[stage] = quarter
                self._print(f"{title}: {data['completed']}/{data['total']}  "
                            f"loss {data['loss']:.3f}")


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
