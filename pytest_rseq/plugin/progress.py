"""Progress of long stress runs: a live line in the process that runs them, a heartbeat under xdist.

The run itself happens in a child process, so all the parent knows is the
elapsed time against the run's deadline: that is what the line shows. On a
terminal the line is rewritten in place; elsewhere (CI logs) a plain line is
printed now and then. Under xdist a worker's output is not shown, so the
controller keeps a :class:`Heartbeat`: a line every ``LOG_INTERVAL_S`` for
each rseq test that has been running at least that long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

LIVE_AFTER_S = 3.0
"""Runs with a deadline at least this long show a live line."""
TTY_INTERVAL_S = 0.5
LOG_INTERVAL_S = 10.0


class LiveLine:
    """Shows ``label`` with the elapsed time from a daemon thread while a run is in progress.

    Args:
        emit: called with ``(text, rewrite)``; ``rewrite`` is True when the text
            should replace the current line.
        label: what runs, e.g. ``"counter rseq/auto"``.
        deadline_s: the run's duration, shown as the expected total.
        tty: rewrite one line (True) or print a line every ``LOG_INTERVAL_S``.
        clock: a monotonic clock (for tests).
    """

    def __init__(
        self,
        emit: Callable[[str, bool], None],
        label: str,
        deadline_s: float,
        *,
        tty: bool,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float | None = None,
    ) -> None:
        self.emit = emit
        self.label = label
        self.deadline_s = deadline_s
        self.tty = tty
        self.clock = clock
        self.interval_s = interval_s or (TTY_INTERVAL_S if tty else LOG_INTERVAL_S)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0

    def text(self, elapsed: float) -> str:
        """The progress text after ``elapsed`` seconds."""
        share = min(1.0, elapsed / self.deadline_s) if self.deadline_s > 0 else 1.0
        return (
            f"rseq: {self.label} running {elapsed:5.1f} s of {self.deadline_s:.1f} s "
            f"({100 * share:3.0f}%)"
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.emit(self.text(self.clock() - self._start), self.tty)

    def __enter__(self) -> LiveLine:
        self._start = self.clock()
        # On a terminal an empty line to rewrite; in a log, what started and for how long.
        start = "" if self.tty else f"rseq: {self.label} started, deadline {self.deadline_s:.1f} s"
        self.emit(start, False)
        self._thread = threading.Thread(target=self._loop, name="pytest-rseq-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        elapsed = self.clock() - self._start
        self.emit(f"rseq: {self.label} {ending(exc_type)} after {elapsed:.1f} s", self.tty)


def ending(exc_type: type[BaseException] | None) -> str:
    """How a run ended: ``finished``, ``interrupted`` (Ctrl-C) or ``stopped by <error>``."""
    if exc_type is None:
        return "finished"
    if issubclass(exc_type, KeyboardInterrupt):
        return "interrupted"
    return f"stopped by {exc_type.__name__}"


class Heartbeat:
    """Every ``interval_s``, a line for each test running at least ``after_s`` (xdist controller).

    Args:
        emit: called with one line of text, from the heartbeat's thread.
        after_s: how long a test runs before it gets a line.
        interval_s: time between two rounds of lines.
        clock: a monotonic clock (for tests).
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        *,
        after_s: float = LOG_INTERVAL_S,
        interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit = emit
        self.after_s = after_s
        self.interval_s = interval_s
        self.clock = clock
        self._running: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def started(self, test: str, worker: str) -> None:
        """``test`` started on ``worker``; starts the thread on first use."""
        with self._lock:
            self._running[(test, worker)] = self.clock()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="pytest-rseq-heartbeat", daemon=True
                )
                self._thread.start()

    def finished(self, test: str, worker: str | None = None) -> None:
        """``test`` on ``worker`` (None: on any worker) is done, or its worker died."""
        with self._lock:
            for key in [k for k in self._running if k[0] == test and worker in (None, k[1])]:
                del self._running[key]

    def lines(self) -> list[str]:
        """The lines of one round: the tests running at least ``after_s``, longest first."""
        now = self.clock()
        with self._lock:
            running = sorted(self._running.items(), key=lambda kv: kv[1])
        return [
            f"rseq: [{worker}] {test} still running after {now - since:.0f} s"
            for (test, worker), since in running
            if now - since >= self.after_s
        ]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            for line in self.lines():
                self.emit(line)

    def close(self) -> None:
        """Stop the thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
