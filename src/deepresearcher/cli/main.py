"""The ``deepresearcher`` command line: parse, wire, present. No logic of its own."""

from __future__ import annotations

import importlib
import sys
import traceback
import warnings
from typing import Any

import typer

from deepresearcher import __version__
from deepresearcher.cli.display import (
    inert,
    inert_logging,
    plain_flags,
    print_error,
    show_warning,
)
from deepresearcher.errors import DeepResearcherError
from deepresearcher.interrupt import ctrl_c_guard

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
plain_flags()


def _is_usage_error(exc: BaseException) -> bool:
    """A click usage error (missing or extra argument, bad option value): click's own class, or
    the copy of click that recent typer versions ship inside typer."""
    return any(
        cls.__name__ == "ClickException" and cls.__module__.split(".")[-1] == "exceptions"
        for cls in type(exc).__mro__
    )


def _show_usage_error(exc: Any) -> None:
    """Click's usage error text (usage line, help hint, ``Error: …``), inert: it quotes what was
    typed, and click's own printer would strip some escape sequences silently and pass others."""
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        hint = ""
        if ctx.command.get_help_option(ctx) is not None:
            hint = f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.\n"
        sys.stderr.write(inert(f"{ctx.get_usage()}\n{hint}\n"))
    sys.stderr.write(inert(f"Error: {exc.format_message()}") + "\n")


def main() -> None:
    """Entry point: run the app and turn our typed errors into one clear line plus a hint."""
    warnings.showwarning = show_warning
    inert_logging()
    try:
        # With standalone_mode=False click returns a command's exit code instead of exiting.
        with ctrl_c_guard():
            code = app(standalone_mode=False)
    except DeepResearcherError as exc:
        print_error(exc, exc.hint)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except Exception as exc:
        if _is_usage_error(exc):
            _show_usage_error(exc)
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        # A bug: the traceback as Python prints it, but inert (messages quote paths, URLs, replies).
        sys.stderr.write(inert("".join(traceback.format_exception(exc))))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
