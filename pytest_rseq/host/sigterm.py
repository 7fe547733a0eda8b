"""pytest handles SIGTERM like Ctrl-C while the plugin is configured.

A CI runner cancelling a job, ``timeout(1)`` or a container stop sends
SIGTERM; its default action would kill pytest on the spot and leave the
stress child to clean up after itself. With this handler SIGTERM raises
``KeyboardInterrupt``: the running stress child is stopped, cpuset groups and
CPUs are restored on the way out, and pytest reports the session as
interrupted (exit code 2). Installed only from the main thread and only over
the default disposition (a handler someone else set, or an ignored SIGTERM,
is left alone); the previous disposition is put back at ``pytest_unconfigure``.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")


def install() -> Any:
    """Make SIGTERM raise KeyboardInterrupt; return what it replaced (None: left untouched)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def uninstall(previous: Any) -> None:
    """Put back the disposition :func:`install` replaced, if ours is still in place."""
    if previous is None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _interrupt:
        signal.signal(signal.SIGTERM, previous)
