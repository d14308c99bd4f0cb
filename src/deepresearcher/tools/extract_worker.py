"""Extraction under a deadline: :func:`extract_bounded` runs
:func:`~deepresearcher.tools.extract.extract` in a small pool of worker processes, and a worker
still busy when the deadline passes is killed and replaced.

A thread cannot be stopped, and the parsers (lxml, trafilatura, resiliparse, pdfium) can spend
minutes on a hostile page (resiliparse's time grows with the square of the nesting depth: 20,000
nested ``<div>`` took 18 s here). A process can be killed whatever code it is in. Every fetcher
extracts untrusted bytes through here; :func:`~deepresearcher.tools.extract.extract` itself stays a
pure function for tests and benchmarks.

Workers are fresh interpreters (``python -c``), not ``multiprocessing`` children: a plain fork is
unsafe in a process holding torch and threads, and spawn and forkserver re-run the caller's
``__main__`` in every worker, which breaks any script without an ``if __name__ == "__main__"``
guard (``asyncio.run(main())`` at the top of a file, as in our docs).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import ctypes
import importlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from deepresearcher.errors import ConfigError, ExtractError, ExtractTimeoutError
from deepresearcher.tools.extract import FAST_PATH_CHARS, ExtractedPage, extract

__all__ = [
    "EXTRACT_TIMEOUT_S",
    "ExtractPool",
    "ExtractTimeoutError",
    "extract_bounded",
    "shared_pool",
]

# Seconds one extraction may run. Normal pages take milliseconds (a 14 MB page 0.1 s on the fast
# path); a page that needs more than this is hostile or not worth it.
EXTRACT_TIMEOUT_S = 20.0
# Extraction is CPU-bound: more workers than cores only slows each one down.
WORKERS = max(2, min(4, os.cpu_count() or 1))
# Address space of one worker: 67 MB at rest, at most ~400 MB for an 8 MB page (VmPeak, measured).
# Past the limit a parser fails or aborts in its own worker (a typed extract_failed) instead of
# waking the OOM killer for the whole machine.
MEMORY_LIMIT_BYTES = 4 << 30
_TIMEOUT_HINT = (
    "the page is hostile or too complex to read in time; to wait longer raise --extract-timeout "
    "(tools.extract_timeout_s in a recipe)"
)
# How often a worker's waiter looks whether its caller has gone.
_POLL_S = 0.1
# A worker loads its parsers in about 0.25 s; one that takes this long is broken.
_START_TIMEOUT_S = 60.0
_READY = "ready"
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
_SRC = str(Path(__file__).resolve().parents[2])  # the folder that holds the package
_WORKER_MAIN = "from deepresearcher.tools.extract_worker import _serve; _serve()"
_START_HINT = f"{sys.executable} -c 'import deepresearcher.tools.extract_worker' shows why"
# The parsers extract() imports lazily.
_WARM_IMPORTS = ("pypdfium2", "resiliparse.extract.html2text", "resiliparse.parse.encoding",
                 "resiliparse.parse.html")

_Request = tuple[bytes, "str | None", str, int]  # content, content type, url, fast_path_chars


class ExtractPool:
    """Worker processes that run :func:`~deepresearcher.tools.extract.extract` with a deadline.

    The workers start on first use, serve every event loop and thread of this process (a forked
    child starts its own), and are stopped at interpreter exit. A worker past its deadline is
    killed, as is one whose caller was cancelled; a killed or crashed worker is replaced.
    """

    def __init__(self, workers: int = WORKERS, *,
                 memory_limit_bytes: int | None = MEMORY_LIMIT_BYTES) -> None:
        if workers < 1:
            raise ConfigError(f"an extraction pool needs at least one worker, got {workers}")
        self.workers = workers
        self.memory_limit_bytes = memory_limit_bytes
        self._lock = threading.Lock()
        self._crew: _Crew | None = None
        self._exit_hook = False

    async def extract(
        self,
        content: bytes,
        *,
        content_type: str | None,
        url: str,
        fast_path_chars: int = FAST_PATH_CHARS,
        timeout_s: float = EXTRACT_TIMEOUT_S,
    ) -> ExtractedPage:
        """:func:`~deepresearcher.tools.extract.extract` in a worker, which runs at most
        ``timeout_s`` seconds. Waiting for a free worker counts too: the caller waits at most twice
        ``timeout_s`` in all. Raises :class:`ExtractTimeoutError` past either limit, and
        :class:`ExtractError` for an unreadable page or a worker that crashed."""
        if timeout_s <= 0:
            raise ConfigError(f"the extraction deadline must be positive, got {timeout_s:g} s")
        job = _Job((content, content_type, url, fast_path_chars), timeout_s)
        self._running().jobs.put(job)
        waiting = asyncio.wrap_future(job.future)
        try:
            await asyncio.wait({waiting}, timeout=2 * timeout_s)
        except BaseException:  # the caller was cancelled: its worker must not stay busy
            job.abandon()
            waiting.cancel()  # nobody will read what the job ends with
            raise
        if not waiting.done():
            started = job.future.running()
            job.abandon()
            waiting.cancel()
            raise ExtractTimeoutError(
                f"{url}: extraction waited for a free worker "
                f"{'and then ran out of time' if started else 'and none became free'} within "
                f"{2 * timeout_s:g} s ({self.workers} workers, all busy with other pages)",
                hint=_TIMEOUT_HINT,
            )
        return waiting.result()

    def worker_pids(self) -> list[int]:
        """The process ids of the workers running now."""
        crew = self._crew
        if crew is None or crew.owner != os.getpid():
            return []
        return [w.process.pid for w in list(crew.slots) if w is not None and w.alive()]

    def close(self) -> None:
        """Stop the workers; a page being extracted fails, and the next call starts new ones."""
        with self._lock:
            crew, self._crew = self._crew, None
        if crew is not None and crew.owner == os.getpid():
            crew.close()

    def _running(self) -> _Crew:
        with self._lock:
            if self._crew is None or self._crew.owner != os.getpid():
                self._crew = _Crew(self.workers, self.memory_limit_bytes)
                if not self._exit_hook:
                    atexit.register(self.close)
                    self._exit_hook = True
            return self._crew


_SHARED = ExtractPool()


def shared_pool() -> ExtractPool:
    """The process's extraction pool, used by every fetcher."""
    return _SHARED


async def extract_bounded(
    content: bytes,
    *,
    content_type: str | None,
    url: str,
    fast_path_chars: int = FAST_PATH_CHARS,
    timeout_s: float = EXTRACT_TIMEOUT_S,
) -> ExtractedPage:
    """Extract ``content`` in the shared pool under a deadline (see :meth:`ExtractPool.extract`)."""
    return await _SHARED.extract(content, content_type=content_type, url=url,
                                 fast_path_chars=fast_path_chars, timeout_s=timeout_s)


# --- the parent's side ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    request: _Request
    timeout_s: float
    future: concurrent.futures.Future[ExtractedPage] = field(
        default_factory=concurrent.futures.Future)
    abandoned: threading.Event = field(default_factory=threading.Event)

    def abandon(self) -> None:
        self.future.cancel()  # still queued: it never runs
        self.abandoned.set()  # running: its worker is killed


class _Crew:
    """The workers of one pool in one process: a job queue and, per worker, a thread that feeds
    it jobs and waits for each reply until the job's deadline."""

    def __init__(self, size: int, memory_limit_bytes: int | None) -> None:
        self.owner = os.getpid()
        self.memory_limit_bytes = memory_limit_bytes
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.slots: list[_Worker | None] = [None] * size
        self.closed = threading.Event()
        for slot in range(size):
            threading.Thread(target=self._serve_jobs, args=(slot,), daemon=True,
                             name=f"extract-worker-{slot}").start()

    def close(self) -> None:
        self.closed.set()
        for _ in self.slots:
            self.jobs.put(None)
        for worker in list(self.slots):
            if worker is not None:
                worker.kill()

    def _serve_jobs(self, slot: int) -> None:
        while True:
            # A worker is made ready before it is needed: at the start and after a kill or crash,
            # so that a job never waits for a replacement to load its parsers.
            if not self.closed.is_set():
                with contextlib.suppress(Exception):  # told to the job that needs the worker
                    self._ready_worker(slot)
            job = self.jobs.get()
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():
                continue  # abandoned while queued
            if self.closed.is_set():
                job.future.set_exception(ExtractError("the extraction pool was closed"))
                continue
            try:
                self._run(slot, job)
            except BaseException as exc:  # never lose a job: its caller would wait to the limit
                if not job.future.done():
                    job.future.set_exception(exc)

    def _ready_worker(self, slot: int) -> _Worker:
        """The slot's worker, started and waited for if it is missing or dead."""
        worker = self.slots[slot]
        if worker is not None and worker.alive():
            return worker
        self.slots[slot] = None
        try:
            worker = _Worker(self.memory_limit_bytes)
        except OSError as exc:
            raise ExtractError(f"cannot start an extraction worker ({exc})",
                               hint=f"check that {sys.executable} runs") from exc
        try:
            ready = worker.replies.poll(_START_TIMEOUT_S) and worker.replies.recv() == _READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            worker.kill()
            raise ExtractError(f"the extraction worker did not start ({worker.exit_reason()})",
                               hint=_START_HINT)
        self.slots[slot] = worker
        return worker

    def _run(self, slot: int, job: _Job) -> None:
        url = job.request[2]
        # A worker that died while idle is replaced, and the job sent again (it never ran).
        for attempt in range(2):
            try:
                worker = self._ready_worker(slot)
            except ExtractError as exc:
                job.future.set_exception(ExtractError(f"{url}: {exc}", hint=exc.hint))
                return
            try:
                worker.requests.send(job.request)
                break
            except OSError:
                worker.kill()
                self.slots[slot] = None
                if attempt == 1:
                    job.future.set_exception(ExtractError(
                        f"{url}: the extraction worker dies before reading the page",
                        hint=_START_HINT))
                    return
        deadline = time.monotonic() + job.timeout_s
        while not worker.replies.poll(min(max(deadline - time.monotonic(), 0), _POLL_S)):
            if job.abandoned.is_set() or time.monotonic() >= deadline:
                worker.kill()
                self.slots[slot] = None
                job.future.set_exception(ExtractTimeoutError(
                    f"{url}: extraction took over {job.timeout_s:g} s and was stopped",
                    hint=_TIMEOUT_HINT))
                return
        try:
            page, error = worker.replies.recv()
        except (EOFError, OSError):
            self.slots[slot] = None
            job.future.set_exception(ExtractError(
                f"{url}: the extraction worker died ({worker.exit_reason()})",
                hint="the page crashed a parser or used too much memory"))
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(page)


class _Worker:
    """One worker process and the two pipes to it."""

    def __init__(self, memory_limit_bytes: int | None) -> None:
        child_read, parent_write = os.pipe()
        parent_read, child_write = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SRC, env.get("PYTHONPATH")]))
        try:
            # stdout and stderr go nowhere: a parser's print or warning must not land in the
            # caller's output (``browse --json``); a crash is reported by its exit status.
            self.process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_MAIN, str(child_read), str(child_write),
                 str(memory_limit_bytes or 0), str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(child_read, child_write), env=env,
            )
        except BaseException:
            for fd in (parent_read, parent_write):
                os.close(fd)
            raise
        finally:
            os.close(child_read)
            os.close(child_write)
        self.requests = Connection(parent_write, readable=False)
        self.replies = Connection(parent_read, writable=False)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.requests.close()
        self.replies.close()

    def exit_reason(self) -> str:
        try:
            code = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:  # its pipe closed but it lives on: end it
            self.kill()
            code = self.process.returncode
        self.requests.close()
        self.replies.close()
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


# --- the worker's side ---------------------------------------------------------------------------


def _serve() -> None:
    """A worker's main loop: read a request, extract, reply; exit when the parent goes away."""
    read_fd, write_fd, memory_limit_bytes, parent = (int(arg) for arg in sys.argv[1:5])
    # Ctrl-C in a terminal reaches the whole process group; stopping workers is the parent's job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(parent)
    if memory_limit_bytes > 0:
        _limit_memory(memory_limit_bytes)
    # Loaded now, so that the first page of each kind does not pay for it inside its deadline.
    for module in _WARM_IMPORTS:
        importlib.import_module(module)

    requests = Connection(read_fd, writable=False)
    replies = Connection(write_fd, readable=False)
    replies.send(_READY)
    while True:
        try:
            content, content_type, url, fast_path_chars = requests.recv()
        except EOFError:
            return  # the pool closed, or its process is gone
        try:
            page = extract(content, content_type=content_type, url=url,
                           fast_path_chars=fast_path_chars)
            replies.send((page, None))
        except ExtractError as exc:
            replies.send((None, exc))


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when its parent dies (Linux): an orphan would otherwise
    run a hostile page to its end, and a parser in C code never reads the closed pipe. (Strictly,
    when the thread that started it ends: a pool's threads live as long as the pool.)"""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request reached the kernel
        os._exit(0)


def _limit_memory(limit: int) -> None:
    try:
        import resource
    except ImportError:  # not on this platform
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or limit < hard:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
