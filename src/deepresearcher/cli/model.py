"""``deepresearcher model``: build small local models (for offline runs and tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from deepresearcher.cli import display
from deepresearcher.errors import ConfigError

model_app = typer.Typer(help="Build small local models.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")


@model_app.command("tiny")
def tiny(
    out: Path = typer.Option(..., "--out", help="Directory to write the model and tokenizer to."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
    hidden_size: int = typer.Option(64, "--hidden-size", min=8),
    layers: int = typer.Option(2, "--layers", min=1),
    vocab_size: int | None = typer.Option(
        None, "--vocab-size", min=512,
        help="Most tokens in the vocabulary, special tokens included. The tokenizer is trained "
        "on a small built-in text, which has no pair left to merge past about 1,150 tokens: "
        "a larger value builds that many, a smaller one a coarser tokenizer. Default: all of "
        "them."),
    pretrained: bool = typer.Option(
        False, "--pretrained",
        help="Write out the pretrained tiny base that ships with the package (a tiny Qwen2 "
        "pretrained to copy names and write the agent's format; its card is card.json) "
        "instead of random weights; its checksums are checked."),
) -> None:
    """A tiny Qwen2 with a Qwen2.5-style tokenizer: random, or the shipped pretrained base.

    Random: it exercises the pipeline. --pretrained: the base `deepresearcher quickstart`
    starts from (docs/pretraining.md)."""
    from deepresearcher.cli.common import quiet_hf

    console = display.console()
    if pretrained:
        changed = [flag for flag, value, default in (
            ("--seed", seed, 0), ("--hidden-size", hidden_size, 64), ("--layers", layers, 2),
            ("--vocab-size", vocab_size, None)) if value != default]
        if changed:
            raise ConfigError(f"{', '.join(changed)} cannot change the pretrained base",
                              hint="leave them out with --pretrained")
        from deepresearcher.models.shipped import write_pretrained

        card = write_pretrained(out)
        probe = card.get("probe") or {}
        console.print(display.text(
            f"pretrained tiny Qwen2 ({card['parameters']:,} parameters, vocabulary of "
            f"{card['vocab']:,} tokens; {card['steps']:,} steps, {card['tokens']:,} tokens) in "
            f"{out}; checksums verified. Held-out probe: {_probe_line(probe)}"))
        return
    from deepresearcher.models.tiny import TOOL_TOKENS, build_tiny_qwen2, build_tokenizer

    quiet_hf()
    with console.status("training the tokenizer and initialising the model…"):
        # The option counts every token; the BPE's size leaves room for the tool tags.
        sized: dict[str, Any] = {} if vocab_size is None else {"vocab_size": vocab_size - len(TOOL_TOKENS)}
        tokenizer = build_tokenizer(out, **sized)
        model = build_tiny_qwen2(out, tokenizer, hidden_size=hidden_size, layers=layers, seed=seed)
    params = sum(p.numel() for p in model.parameters())
    short = (f"; {vocab_size:,} asked, the training text has no more merges"
             if vocab_size is not None and len(tokenizer) < vocab_size else "")
    console.print(display.text(f"tiny Qwen2 ({params:,} parameters, vocabulary of "
                               f"{len(tokenizer):,} tokens{short}) in {out}"))


@model_app.command("pretrain")
def pretrain(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the run: checkpoints, logs, "
                             "final/ and card.json. Run again on it to resume."),
    max_minutes: float | None = typer.Option(
        None, "--max-minutes", min=0.0,
        help="Time budget over every session of this folder: then a checkpoint, final/ and "
        "card.json are written. A later run with a larger budget continues."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto (CUDA when there "
                               "is one)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights and the data order (the "
                             "worlds have their own seeds, from 1,000,000 up)."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads for torch (default: every core; on a busy "
        "machine, one per free core is faster)."),
    checkpoint_minutes: float = typer.Option(5.0, "--checkpoint-minutes", min=0.0,
                                             help="Minutes between checkpoints."),
    until: str | None = typer.Option(None, "--until", help="Stop after this stage "
                                     "(copy-short, copy-long or mix); the same command without "
                                     "it continues."),
    overrides: list[str] | None = typer.Argument(
        None, help="Settings, key=value (e.g. worlds=16 copy_short.steps_max=1000); see "
        "docs/pretraining.md."),
) -> None:
    """Pretrain a tiny Qwen2 from scratch, offline, to copy names it has never seen.

    A shared tokenizer over many fictional worlds, then three stages: short copies, copies at
    every distance of an episode, and world text with expert episodes (copy rows kept in). A
    probe on a held-out world is logged to probe.jsonl; checkpoints every few minutes;
    Ctrl-C saves one and exits, and the same command resumes."""
    import shlex
    import sys

    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.models.pretrain import (
        Pretraining,
        PretrainInterrupted,
        settings_with,
    )

    quiet_hf()
    settings = settings_with(overrides or [])
    console = display.console(stderr=True)
    view: Any = _LivePretrain(console) if console.is_terminal else _PlainPretrain(console)
    again = shlex.join(["deepresearcher", *sys.argv[1:]])
    try:
        with view:
            result = Pretraining(out, settings, on_event=view.on_event, max_minutes=max_minutes,
                                 device=device, checkpoint_minutes=checkpoint_minutes,
                                 threads=threads, until=until).run()
    except KeyboardInterrupt as exc:
        saved = exc.checkpoint if isinstance(exc, PretrainInterrupted) else None
        where = (f"the checkpoint at step {exc.step} ({saved})"
                 if isinstance(exc, PretrainInterrupted) and saved else "the last checkpoint")
        console.print(display.text(f"interrupted; resume from {where} with: {again}"))
        raise typer.Exit(130) from None
    card = result.card
    printer = display.console()
    stages = ", ".join(f"{name} {info['steps']} steps ({info['ended'] or 'not finished'})"
                       for name, info in card["stages"].items())
    printer.print(display.text(
        f"{result.stopped}: {card['steps']} steps, {card['tokens']:,} tokens, "
        f"{card['seconds'] / 60:.1f} min on {card['device']} ({stages})"))
    if card.get("probe"):
        printer.print(display.text(f"last probe: {_probe_line(card['probe'])}"))
    printer.print(display.text(f"model: {result.final}; card: {out / 'card.json'}"))
    if result.stopped == "time budget":
        printer.print(display.text(f"to continue: {again} with a larger --max-minutes"))
    elif not result.finished:
        printer.print(display.text(f"to continue: {again} without --until"))


def _figure(probe: dict[str, Any], key: str) -> str:
    value = probe.get(key)
    return "–" if value is None else f"{value:.2f}"


def _probe_line(probe: dict[str, Any]) -> str:
    """The probe's figures in one line (``–`` where not measured)."""
    line = (f"copy short {_figure(probe, 'short_copy')} long {_figure(probe, 'long_copy')} "
            f"names {_figure(probe, 'name_copy_greedy')} | episode copies (greedy) query "
            f"{_figure(probe, 'query_greedy')} url {_figure(probe, 'url_greedy')} answer "
            f"{_figure(probe, 'answer_greedy')}")
    if probe.get("format_ok") is not None:
        line += (f" | format {_figure(probe, 'format_ok')} exact "
                 f"{_figure(probe, 'action_exact')}")
    return line + f" | text loss {_figure(probe, 'text_loss')}"


def _prepare_line(data: dict[str, Any]) -> str:
    if data["what"] == "worlds":
        return f"world data {data['completed']}/{data['total']}"
    if data["what"] == "tokenizer":
        return f"training the shared tokenizer on {data['worlds']} worlds"
    return f"held-out probe world (seed {data['seed']})"


class _LivePretrain:
    """On a terminal: a live bar for the stage (step, tokens/s, loss), a line per probe."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self.bar = Progress(TextColumn("{task.description:<12}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[info]}"), console=console)
        self.task: Any = None

    def __enter__(self) -> _LivePretrain:
        self.bar.__enter__()
        self.task = self.bar.add_task("prepare", total=None, info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "prepare":
            self.bar.update(self.task, description="prepare", info=_prepare_line(data),
                            total=data.get("total"), completed=data.get("completed", 0))
        elif kind == "stage_start":
            self.bar.update(self.task, description=data["stage"], total=data["steps_max"],
                            completed=data["stage_step"], info="")
        elif kind == "step":
            self.bar.update(self.task, completed=data["stage_step"], info=(
                f"step {data['step']}  loss {data['loss']:.3f}  "
                f"{data['tokens_per_s']:,.0f} tokens/s"))
        elif kind == "probe":
            self.console.print(display.text(
                f"  probe step {data['step']} ({data['stage']}): {_probe_line(data)}"))
        elif kind in ("stage_end", "resume"):
            what = (f"{data['stage']} ended ({data['reason']})" if kind == "stage_end"
                    else f"resumed from {data['path']} ({data['stage']})")
            self.console.print(display.text(f"  step {data['step']}: {what}"))


class _PlainPretrain:
    """Into a log file or a pipe: timestamped lines (stages, probes, checkpoints), and the
    loss and throughput every 100 steps."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.started = 0.0

    def __enter__(self) -> _PlainPretrain:
        import time

        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def _print(self, line: str) -> None:
        import time

        self.console.print(display.text(f"[{time.perf_counter() - self.started:7.0f} s] {line}"),
                           soft_wrap=True)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "prepare":
            if data["what"] != "worlds" or data["completed"] in (0, data["total"]):
                self._print(_prepare_line(data))
        elif kind == "stage_start":
            self._print(f"{data['stage']}: from step {data['step']}")
        elif kind == "step" and data["step"] % 100 == 0:
            self._print(f"step {data['step']} ({data['stage']} {data['stage_step']}): loss "
                        f"{data['loss']:.3f}, {data['tokens_per_s']:,.0f} tokens/s")
        elif kind == "probe":
            self._print(f"probe step {data['step']} ({data['stage']}): {_probe_line(data)}")
        elif kind == "stage_end":
            self._print(f"{data['stage']} ended at step {data['step']} ({data['reason']})")
        elif kind == "checkpoint":
            self._print(f"checkpoint {data['path']}")
        elif kind == "resume":
            self._print(f"resumed from {data['path']} (step {data['step']}, {data['stage']})")
