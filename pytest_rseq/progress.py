"""A live progress line for long stress runs.

The run itself happens in a child process, so all the parent knows is the
elapsed time against the run's deadline: that is what the line shows. On a
terminal the line is rewritten in place; elsewhere (CI logs) a plain line is
printed now and then.
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
        if self.tty:
            self.emit("", False)
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
        self.emit(f"rseq: {self.label} finished after {elapsed:.1f} s", self.tty)
