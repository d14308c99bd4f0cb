"""Child processes that Ctrl-C (SIGINT) reaches even when the test run itself ignores it (a test
run started in the background inherits SIGINT ignored, and Python keeps an ignored SIGINT)."""

from __future__ import annotations

import signal


def interruptible() -> None:
    """``preexec_fn`` of a child process: SIGINT back to its default disposition."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
