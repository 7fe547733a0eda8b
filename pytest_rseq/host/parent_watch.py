"""Child side: die with the owner, undoing this run's changes on the way out.

The stress child runs in its own session, so nothing tells it when the
process that started it (its owner, named by ``PYTEST_RSEQ_OWNER``) dies. A
thread of the child waits on a pidfd of the owner (or, where pidfds are
missing, looks every 0.1 s). When the owner is gone it asks the run to stop,
gives it ``STOP_WAIT_S`` to wind down (the native injectors put back what
they changed: the offline CPU comes back online), then:

* moves the child's threads out of its cpuset group and removes the group
  (the owner would have removed it by name);
* puts CPUs back as the owner's hotplug state file recorded them and
  deletes the file (the owner would have done it in ``hotplug.guard``);
* kills its own process group (fork-churn children, a workload's children)
  and with it itself.

Affinity and signal dispositions of the child die with it. The owner's
death is checked once right after the watch starts (the owner may have
died between starting the child and this check: then the child exits at
once, having changed nothing) and once more when the run returns.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from pathlib import Path

from . import stale
from .prep import HostPrep

STOP_WAIT_S = 2.0
POLL_S = 0.1
EXIT_OWNER_GONE = 75


class ParentWatch:
    """Watches the owner of this stress child; see the module docstring."""

    def __init__(self, tag: str, host: HostPrep) -> None:
        self.tag = tag
        self.host = host
        self._returned = threading.Event()
        self._exit_lock = threading.Lock()
        parsed = stale.parse_tag(tag)
        self._pidfd: int | None = None
        if parsed is not None:
            with contextlib.suppress(OSError, AttributeError):
                self._pidfd = os.pidfd_open(parsed[0])

    def owner_alive(self) -> bool:
        """True while the owner runs (pid and start time both match)."""
        return stale.owner_alive(self.tag)

    def start(self) -> None:
        """Exit now if the owner is already gone, else watch it from a daemon thread."""
        # The pidfd was opened first: if the owner is alive now, the pidfd is
        # the owner's (a reused pid would have another start time).
        if not self.owner_alive():
            os._exit(EXIT_OWNER_GONE)
        threading.Thread(target=self._watch, name="pytest-rseq-owner-watch", daemon=True).start()

    def _wait_for_owner_death(self) -> None:
        if self._pidfd is not None:
            while not select.select([self._pidfd], [], [])[0]:
                pass
            return
        while self.owner_alive():
            threading.Event().wait(POLL_S)

    def _watch(self) -> None:
        self._wait_for_owner_death()
        from .._native import load

        with contextlib.suppress(Exception):
            load()[1].prseq_request_stop()
        self._returned.wait(STOP_WAIT_S)
        self._exit_lock.acquire()  # held by the main thread when it exits normally
        self.undo_and_die()

    def run_returned(self) -> None:
        """Called by the main thread after the run: undo and die if the owner is gone.

        Returns (keeping the exit lock, so the watch cannot start undoing
        while this process exits normally) when the owner still runs.
        """
        self._returned.set()
        self._exit_lock.acquire()
        if not self.owner_alive():
            self.undo_and_die()

    def undo_and_die(self) -> None:
        """Undo this run's cpuset group and hotplug changes, then kill our process group."""
        undo(self.host)
        # Only a group of our own session (the owner started us with a new one).
        if os.getsid(0) == os.getpgrp():
            with contextlib.suppress(OSError):
                os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(EXIT_OWNER_GONE)


def undo(host: HostPrep) -> None:
    """Leave and remove the run's cpuset group; restore the owner's hotplug state file."""
    from . import cpuset, hotplug

    group = dict(host.cpuset) if host.cpuset else None
    if group:
        with contextlib.suppress(OSError):
            cpuset.leave_group(group)
        with contextlib.suppress(OSError, ValueError):
            cpuset.remove_group(Path(group["path"]))
    state = host.hotplug_state
    if state:
        with contextlib.suppress(OSError, ValueError, KeyError):
            hotplug.restore(Path(state))


def watch_owner(host: HostPrep) -> ParentWatch | None:
    """Start watching the owner named in the environment; None when there is none."""
    tag = os.environ.get(stale.OWNER_ENV)
    if not tag or stale.parse_tag(tag) is None:
        return None
    watch = ParentWatch(tag, host)
    watch.start()
    return watch
