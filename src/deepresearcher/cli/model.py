"""``deepresearcher model``: build small local models (for offline runs and tests)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

model_app = typer.Typer(help="Build small local models.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")


@model_app.command("tiny")
def tiny(
    out: Path = typer.Option(..., "--out", help="Directory to write the model and tokenizer to."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
    hidden_size: int = typer.Option(64, "--hidden-size", min=8),
    layers: int = typer.Option(2, "--layers", min=1),
    vocab_size: int = typer.Option(2048, "--vocab-size", min=512),
) -> None:
    """A tiny random Qwen2 with a locally trained Qwen2.5-style tokenizer.

    Untrained: it exercises the pipeline; `deepresearcher quickstart` trains one."""
    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.models.tiny import build_tiny_qwen2, build_tokenizer

    quiet_hf()
    console = Console()
    with console.status("training the tokenizer and initialising the model…"):
        tokenizer = build_tokenizer(out, vocab_size=vocab_size)
        model = build_tiny_qwen2(out, tokenizer, hidden_size=hidden_size, layers=layers, seed=seed)
    params = sum(p.numel() for p in model.parameters())
    console.print(f"tiny Qwen2 ({params:,} parameters, vocabulary {len(tokenizer):,}) in {out}")
