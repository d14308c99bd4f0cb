"""``deepresearcher world build``: generate a fictional world (corpus, pages, questions, index)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

world_app = typer.Typer(help="Generate fictional worlds to search, evaluate and train in offline.",
                        no_args_is_help=True)

STAGES = ("entities", "pages", "corpus", "questions", "index")


def register(app: typer.Typer) -> None:
    """Add the ``world`` command group to ``app``."""
    app.add_typer(world_app, name="world")


@world_app.command("build")
def build(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the world (new or "
                                      "empty, or an earlier world to replace).")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed and size, same "
                                      "files.")] = 0,
    entities: Annotated[int, typer.Option("--entities", "-n", min=30,
                                          help="How many entities (people, places, "
                                               "organisations, works, events); each gets a "
                                               "page.")] = 300,
    no_index: Annotated[bool, typer.Option("--no-index",
                                           help="Skip the BM25 search index.")] = False,
) -> None:
    """Generate a fictional encyclopedia with a search corpus and benchmark-shaped questions."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from deepresearcher.cli import display
    from deepresearcher.world import build_world

    console = display.console(stderr=True)
    stages = [s for s in STAGES if s != "index" or not no_index]
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    start = time.perf_counter()
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {s: bar.add_task(s, total=None) for s in stages}

        def progress(stage: str, done: int, total: int) -> None:
            if stage in tasks:
                bar.update(tasks[stage], completed=done, total=total)

        manifest = build_world(out, seed=seed, entities=entities, progress=progress,
                               index=not no_index)
    elapsed = time.perf_counter() - start

    table = Table(title=f"world built in {elapsed:.1f} s", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("seed", str(manifest.seed))
    table.add_row("entities", f"{manifest.entities:,}")
    table.add_row("passages", f"{manifest.passages:,}")
    table.add_row("pages", f"{manifest.pages:,} ({manifest.pdfs:,} PDF, "
                           f"{manifest.long_pages:,} long)")
    # Paths under --out, which the user named: shown inert, never read as markup.
    for split, n in manifest.questions.items():
        table.add_row(display.text(f"questions: {split}"),
                      display.text(f"{n:,}  {manifest.questions_path(split)}"))
    table.add_row("corpus", display.text(str(manifest.corpus_path)))
    table.add_row("pages dir", display.text(str(manifest.pages_path)))
    table.add_row("index", display.text(str(manifest.index_path or "(skipped)")))
    table.add_row("manifest", display.text(str(manifest.root / "world.json")))
    display.console().print(table)


@world_app.command("question")
def question(
    world: Path = typer.Argument(..., help="A world directory."),
    split: str = typer.Option("test", "--split", help="train, dev or test."),
    number: int = typer.Option(0, "--number", "-n", min=0, help="Which question of the split."),
    source: str | None = typer.Option(None, "--source",
                                      help="Only questions of this data_source (e.g. world_2wiki)."),
    as_json: bool = typer.Option(False, "--json", help="The whole record: answers, hops, pages."),
) -> None:
    """Print a question of a world (for `deepresearcher ask "$(…)"`)."""
    import json

    from deepresearcher.cli.display import inert, inert_json
    from deepresearcher.errors import ConfigError
    from deepresearcher.world import SPLITS, load_manifest

    manifest = load_manifest(world)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}", hint=f"choose one of: {', '.join(SPLITS)}")
    path = manifest.questions_path(split, fmt="jsonl")
    records = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if source is None or record.get("data_source") == source:
                records.append(record)
    if number >= len(records):
        raise ConfigError(f"the {split} split has {len(records)} matching questions, "
                          f"so there is no question {number}")
    record = records[number]
    # The file's words: inert (--json keeps them exact, as JSON escapes).
    typer.echo(inert_json(json.dumps(record, ensure_ascii=False)) if as_json
               else inert(record["question"]))
