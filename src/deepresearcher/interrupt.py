"""Ctrl-C that is never lost.

Python raises ``KeyboardInterrupt`` wherever the main thread is when SIGINT arrives. Inside a
finalizer (``__del__``) or a callback whose exceptions are ignored, the exception is printed as
"Exception ignored in …" and dropped, and the program runs on: a long training run would then
ignore the user's Ctrl-C. :func:`ctrl_c_guard` (installed by the CLI around every command) notes
each Ctrl-C before raising it (and keeps the dropped one's traceback off the terminal), and
:func:`raise_if_interrupted`, called at safe points (every agent turn, every trainer step),
raises it again when it was dropped on the way.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

_pending = threading.Event()


def _handler(signum: int, frame: Any) -> None:
    _pending.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_guard() -> Iterator[None]:
    """While inside, a Ctrl-C is noted before it is raised. Outside the main thread, or where
    SIGINT is ignored (a background job) or handled by someone else, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield
        return
    _pending.clear()
    signal.signal(signal.SIGINT, _handler)
    hook = sys.unraisablehook

    def quiet_when_pending(unraisable: Any) -> None:
        # The Ctrl-C a finalizer dropped is raised again at the next check: no traceback for it.
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and _pending.is_set()):
            hook(unraisable)

    sys.unraisablehook = quiet_when_pending
    try:
        yield
    finally:
        sys.unraisablehook = hook
        signal.signal(signal.SIGINT, previous)
        _pending.clear()


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C arrived and was not acted on yet. Call it where
    stopping is safe; it costs one flag read."""
    if _pending.is_set():
        _pending.clear()
        raise KeyboardInterrupt


def interrupt_noted() -> None:
    """The caller handled the Ctrl-C (it stops, or it asked the user): no later check raises it."""
    _pending.clear()
