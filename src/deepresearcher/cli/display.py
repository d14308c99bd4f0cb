"""What the CLI shows on a terminal: text it did not write itself, made inert first.

Model output, page titles and text, search results, file contents and exception messages (which
quote URLs, paths and server replies) may hold terminal control sequences (``ESC[2J`` clears the
screen, ``ESC]0;…BEL`` retitles the window, a C1 ``CSI`` does what ``ESC[`` does), bidi overrides
that reorder what is shown ("Trojan Source"), invisible format characters, and rich markup
(``[/x]`` raises a MarkupError, ``[bold]`` is silently eaten). Every such string goes through
:func:`inert`, then into a rich ``Text`` (:func:`text`), never into a markup string.

:func:`inert` shows each unsafe character as its Python escape (``\\x1b``, ``\\x9b``, ``\\u202e``,
``\\U000e0041``), so the user sees that something was there. Unsafe: the C0 controls but newline
and tab, DEL, the C1 controls, surrogates, and the format characters (Unicode ``Cf``: bidi marks,
embeddings, overrides and isolates, zero-width spaces, soft hyphen, BOM, tag characters) and line
and paragraph separators, except the zero-width joiner and non-joiner, which emoji and several
scripts need. Machine output (``--json``) keeps the exact data: :func:`inert_json` only writes
those characters as JSON ``\\u`` escapes; files on disk are never touched.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment
from rich.text import Text

__all__ = [
    "InertConsole", "InertFormatter", "console", "inert", "inert_json", "inert_logging",
    "plain_flags", "print_error", "show_warning", "text",
]

# The characters made inert (see the module docstring). The format characters are Unicode 15.1's
# category Cf, a superset of what Python 3.11 (Unicode 14) knows; tests/cli/test_display.py
# checks the class against the running Python's own tables.
_UNSAFE = re.compile(
    "["
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 but tab and newline, DEL, C1
    "\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    "\u200b\u200e-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"  # not U+200C/D (ZWNJ, ZWJ)
    "\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
    "]"
)


def _python_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells characters beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def inert(value: object) -> str:
    """``str(value)`` safe to show on a terminal: each unsafe character written as its escape."""
    shown = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_python_escape, shown)


def inert_json(document: str) -> str:
    """A JSON document with the unsafe characters of its strings written as ``\\u`` escapes: it
    decodes to exactly the same data, and is safe to print to a terminal."""
    return _UNSAFE.sub(_json_escape, document)


def text(*parts: str | tuple[str, str], style: str = "") -> Text:
    """A rich ``Text`` of ``parts`` (strings, or ``(string, style)`` pairs), each made inert and
    never parsed as markup: the way any text the program did not write reaches a console."""
    return Text.assemble(
        *((inert(part[0]), part[1]) if isinstance(part, tuple) else inert(part) for part in parts),
        style=style,
    )


class InertConsole(Console):
    """A rich ``Console`` that makes inert any unsafe character still in the text it renders (the
    last line of defence, for a string that reached it without :func:`inert`). Its own cursor and
    colour codes are control segments or styles, and pass untouched."""

    def render_str(self, text: str, **options: Any) -> Text:
        # Before rich parses it (markup, emoji) and strips BEL, BS, CR... silently.
        return super().render_str(inert(text), **options)

    def render(self, renderable: RenderableType,
               options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or _UNSAFE.search(segment.text) is None:
                yield segment
            else:
                yield Segment(inert(segment.text), segment.style)


def console(*, stderr: bool = False, **options: Any) -> Console:
    """The console every command prints through (rich's options: ``highlight``, ``quiet``, ...)."""
    return InertConsole(stderr=stderr, **options)


def print_error(message: object, hint: str | None = None, *, to: Console | None = None) -> None:
    """``error: MESSAGE`` and ``hint: HINT`` on stderr (or ``to``), one line each, inert."""
    # soft_wrap: one line, whatever the width
    out = to or console(stderr=True, soft_wrap=True, highlight=False)
    out.print(text(("error:", "bold red"), " ", str(message)))
    if hint:
        out.print(text(("hint:", "dim"), " ", hint))


def plain_flags() -> None:
    """Show on/off flags bare in ``--help``, as click does. typer 0.2x's rich help prints a type
    after them (``--json <bool>``) as if they took a value, which click rejects (``--json true``).
    """
    try:
        from typer.core import TyperOption
    except ImportError:  # an older typer: no such column
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "plain_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if self.is_flag and not self.count and self.metavar is None:
            return None
        return shown(self, ctx)

    display_type_rich.plain_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
    """Python's warning printer (``warnings.showwarning``), inert: a library's warning may quote
    our data (matplotlib names a chart label's glyph it cannot draw, control characters too)."""
    import contextlib
    import warnings

    shown = inert(warnings.formatwarning(message, category, filename, lineno, line))
    with contextlib.suppress(OSError):  # as Python's own: a broken stderr loses the warning
        (file or sys.stderr).write(shown)


class InertFormatter(logging.Formatter):
    """A log formatter whose lines are inert: log messages quote URLs, queries and exceptions."""

    def format(self, record: logging.LogRecord) -> str:
        return inert(super().format(record))


def inert_logging() -> None:
    """Log records that reach the terminal through the root logger (warnings and errors, as
    Python's last-resort handler shows them) go out inert; a root logger already set up by the
    user is left alone."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(InertFormatter("%(message)s"))
    handler.setLevel(logging.WARNING)
    root.addHandler(handler)
