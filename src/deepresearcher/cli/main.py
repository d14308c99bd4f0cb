"""The ``deepresearcher`` command line: parse, wire, present. No logic of its own."""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from deepresearcher import __version__
from deepresearcher.errors import DeepResearcherError

app = typer.Typer(
    name="deepresearcher",
    help="Run, evaluate and train deep-research agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines ``register(app)`` and adds its commands; imported eagerly (they are light:
# heavy dependencies are imported inside the commands).
COMMAND_MODULES = (
    "deepresearcher.cli.world",
    "deepresearcher.cli.index",
    "deepresearcher.cli.ask",
    "deepresearcher.cli.model",
    "deepresearcher.cli.train",
    "deepresearcher.cli.data",
    "deepresearcher.cli.sft",
    "deepresearcher.cli.quickstart",
    "deepresearcher.cli.cache",
    "deepresearcher.cli.browse",
    "deepresearcher.cli.eval",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"deepresearcher {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Run, evaluate and train deep-research agents."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _is_usage_error(exc: BaseException) -> bool:
    """A click usage error (missing or extra argument, bad option value): click's own class, or
    the copy of click that recent typer versions ship inside typer."""
    return any(
        cls.__name__ == "ClickException" and cls.__module__.split(".")[-1] == "exceptions"
        for cls in type(exc).__mro__
    )


def main() -> None:
    """Entry point: run the app and turn our typed errors into one clear line plus a hint."""
    try:
        # With standalone_mode=False click returns a command's exit code instead of exiting.
        code = app(standalone_mode=False)
    except DeepResearcherError as exc:
        console = Console(stderr=True, soft_wrap=True)  # one line, whatever the width
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        if exc.hint:
            console.print(f"[dim]hint:[/] {exc.hint}", highlight=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        Console(stderr=True).print("aborted")
        sys.exit(130)
    except Exception as exc:
        if _is_usage_error(exc):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
