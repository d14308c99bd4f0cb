"""``deepresearcher cache``: inspect and maintain a tool cache file."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from deepresearcher.cli import display

cache_app = typer.Typer(help="Inspect and maintain a tool cache (SQLite).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")


def _open(path: Path, *, must_exist: bool = True, mode: str = "read-write"):
    """The cache at ``path``, checked (a CacheError says what is wrong with the file)."""
    from deepresearcher.errors import ConfigError
    from deepresearcher.tools.cache import ToolCache

    if must_exist and not path.exists():
        raise ConfigError(f"no cache file at {path}",
                          hint="a run creates it; or `deepresearcher cache import` one")
    return ToolCache(path, mode=mode)


@cache_app.command("stats")
def stats(
    path: Path = typer.Argument(..., help="The cache file."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
) -> None:
    """Rows and recorded hits per namespace, expired rows, file size."""
    s = _open(path, mode="replay").stats()  # replay: reads only
    if as_json:
        typer.echo(json.dumps({"rows": s.rows, "stored_hits": s.stored_hits,
                               "expired": s.expired, "file_bytes": s.file_bytes}))
        return
    table = Table(title=display.text(str(path)))
    table.add_column("namespace")
    table.add_column("rows", justify="right")
    table.add_column("hits served", justify="right")
    for namespace in sorted(s.rows):
        table.add_row(display.text(namespace), f"{s.rows[namespace]:,}",
                      f"{s.stored_hits.get(namespace, 0):,}")
    console = display.console()
    console.print(table)
    console.print(f"expired rows: {s.expired:,} · file: {s.file_bytes / 1e6:.1f} MB")


@cache_app.command("prune")
def prune(
    path: Path = typer.Argument(..., help="The cache file."),
    older_than_days: float | None = typer.Option(
        None, "--older-than-days", min=0,
        help="Also delete rows older than this, whatever their TTL."),
) -> None:
    """Delete expired rows (and, with --older-than-days, old ones)."""
    seconds = None if older_than_days is None else older_than_days * 86400
    removed = _open(path).prune(older_than_s=seconds)
    typer.echo(f"removed {removed:,} rows")


@cache_app.command("export")
def export(
    path: Path = typer.Argument(..., help="The cache file."),
    out: Path = typer.Option(..., "--out", help="JSONL file to write."),
) -> None:
    """Write every row as JSONL (to ship a recorded run, or to merge caches)."""
    rows = _open(path, mode="replay").export_jsonl(out)  # replay: reads only
    typer.echo(display.inert(f"exported {rows:,} rows to {out}"))


@cache_app.command("import")
def import_(
    path: Path = typer.Argument(..., help="The cache file (created if missing)."),
    source: Path = typer.Option(..., "--from", help="JSONL written by `cache export`."),
) -> None:
    """Add the rows of an export; keys already present are kept.

    All or nothing: a malformed line stops the import (naming the line) before any row is written.
    """
    from deepresearcher.errors import DataError

    if not source.is_file():
        raise DataError(f"no export at {source}")
    new = not path.exists()
    try:
        added = _open(path, must_exist=False).import_jsonl(source)
    except BaseException:
        if new:  # the file this command created holds nothing: leave no empty cache behind
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
        raise
    typer.echo(f"imported {added:,} rows")


@cache_app.command("check")
def check(path: Path = typer.Argument(..., help="The cache file.")) -> None:
    """Check that a file is an undamaged tool cache of this version.

    Runs SQLite's integrity check, which reads the whole file.
    """
    from deepresearcher.errors import CacheCorrupt
    from deepresearcher.tools.cache import DAMAGED_HINT

    result = _open(path, mode="replay").integrity_check()
    if result != "ok":
        raise CacheCorrupt(f"the tool cache {path} is damaged: {result}", hint=DAMAGED_HINT)
    typer.echo(display.inert(f"{path}: ok"))
