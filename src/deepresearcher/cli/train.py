"""``deepresearcher train``: GRPO training from a recipe."""

from __future__ import annotations

import typer
from rich.console import Console

from deepresearcher.cli import display


def register(app: typer.Typer) -> None:
    app.command("train", context_settings={"allow_extra_args": False})(train)


def train(
    recipe: str = typer.Argument(..., help="A recipe YAML file, or a built-in recipe name "
                                 "(deepresearcher-7b-paper, quickstart-cpu)."),
    overrides: list[str] = typer.Argument(None, help="Settings to override, as key.path=value "
                                          "(e.g. grpo.learning_rate=1e-5 agent.max_turns=4)."),
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="Continue from the newest checkpoint of the output folder."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Validate the recipe and print it, then stop."),
) -> None:
    """Train the agent with GRPO (TRL) in the recipe's environment."""
    from deepresearcher.cli.common import is_main_process
    from deepresearcher.train.recipes import dump_recipe, load_recipe

    config = load_recipe(recipe, list(overrides or []))
    # Several processes: rank 0 speaks for all. Recipe names, models and paths: inert, not markup.
    console = display.console(quiet=not is_main_process(), highlight=False, soft_wrap=True)
    if dry_run:
        console.print(display.text(dump_recipe(config)))
        return
    import warnings

    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.train.grpo import last_checkpoint, process_count, run_grpo

    quiet_hf()
    for module in ("transformers", "trl", "accelerate"):  # their own deprecations, not the user's
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
    checkpoint = last_checkpoint(config.run.output_dir) if resume else None
    processes = process_count()
    console.print(display.text(
        f"GRPO: recipe {config.name}, model {config.model}, output {config.run.output_dir}"
        + (f", {processes} processes" if processes > 1 else "")
        + (f", resuming from {checkpoint}" if checkpoint else "")))
    g = config.grpo
    episodes = g.questions_per_step * g.rollouts_per_question
    share = episodes // processes
    micro = g.per_device_batch or share
    console.print(
        f"a step: {g.questions_per_step} questions × {g.rollouts_per_question} rollouts = "
        f"{episodes} episodes" + (f", {share} a process" if processes > 1 else "")
        + f", trained in micro-batches of {micro}", highlight=False, soft_wrap=True)
    lines = StepLines(console)
    try:
        result = run_grpo(config, resume=resume, on_step=lines)
    except KeyboardInterrupt:
        saved = last_checkpoint(config.run.output_dir)
        console.print(display.text(
            "interrupted; "
            + (f"the last checkpoint is {saved}: run the same command again to resume from it"
               if saved else "no checkpoint was written yet (run.save_every="
               f"{config.run.save_every})")))
        raise typer.Exit(130) from None
    where = f" (resumed from {result.resumed_from})" if result.resumed_from else ""
    console.print(display.text(
        f"trained {result.global_step} steps in {result.seconds:.0f}s{where}; model in "
        f"{result.output_dir / 'final'}, TensorBoard logs in {result.output_dir / 'runs'}"))


class StepLines:
    """One line per GRPO step (and per evaluation) with the numbers that say whether training
    works, the step's time split, and the time left; the same in a terminal and in a log."""

    def __init__(self, console: Console) -> None:
        import time

        self.console = console
        self.clock = time.perf_counter
        self.started = self.clock()
        self.first_step: int | None = None

    def __call__(self, row: dict) -> None:
        step, total = row["step"], row.get("total")
        if row.get("mode") == "eval":
            self.console.print(f"eval at step {step}: {self.metrics(row)}", highlight=False)
            return
        if self.first_step is None:
            self.first_step = step - 1  # a resumed run starts after its checkpoint
        done = step - self.first_step
        elapsed = self.clock() - self.started
        progress = f"step {step:>4}" + (f"/{total}" if total else "")
        timing = ""
        if "step_time" in row:
            timing = f"  {row['step_time']:.1f} s"
            if "time/generation" in row and "time/tools" in row:
                timing += (f" (generation {row['time/generation']:.1f}, "
                           f"tools {row['time/tools']:.1f})")
        eta = ""
        if total and done > 0 and total > step:
            eta = f"  ETA {_duration(elapsed / done * (total - step))}"
        self.console.print(f"{progress}  {self.metrics(row)}{timing}{eta}", highlight=False,
                           soft_wrap=True)

    # (key, label, format) of the numbers a step line shows, when the step logged them.
    SHOWN = (
        ("reward", "reward", "{:+.3f}"),
        ("rollout/f1", "F1", "{:.3f}"),
        ("rollout/format_error_rate", "format errors", "{:.0%}"),
        ("rollout/turns", "turns", "{:.1f}"),
        ("kl", "KL", "{:.4f}"),
        ("tools/search_cache_hit_rate", "cache hits", "{:.0%}"),
    )

    @classmethod
    def metrics(cls, row: dict) -> str:
        return "  ".join(f"{label} {fmt.format(row[key])}" for key, label, fmt in cls.SHOWN
                         if key in row)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
