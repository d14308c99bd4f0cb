"""``deepresearcher model``: build small local models (for offline runs and tests)."""

from __future__ import annotations

from pathlib import Path

import typer

from deepresearcher.cli import display

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
) -> None:
    """A tiny random Qwen2 with a locally trained Qwen2.5-style tokenizer.

    Untrained: it exercises the pipeline; `deepresearcher quickstart` trains one."""
    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.models.tiny import TOOL_TOKENS, build_tiny_qwen2, build_tokenizer

    quiet_hf()
    console = display.console()
    with console.status("training the tokenizer and initialising the model…"):
        # The option counts every token; the BPE's size leaves room for the tool tags.
        sized = {} if vocab_size is None else {"vocab_size": vocab_size - len(TOOL_TOKENS)}
        tokenizer = build_tokenizer(out, **sized)
        model = build_tiny_qwen2(out, tokenizer, hidden_size=hidden_size, layers=layers, seed=seed)
    params = sum(p.numel() for p in model.parameters())
    short = (f"; {vocab_size:,} asked, the training text has no more merges"
             if vocab_size is not None and len(tokenizer) < vocab_size else "")
    console.print(display.text(f"tiny Qwen2 ({params:,} parameters, vocabulary of "
                               f"{len(tokenizer):,} tokens{short}) in {out}"))
