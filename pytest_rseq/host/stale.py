"""Who owns a stress child, and undoing what a killed run left behind.

Every stress child carries ``PYTEST_RSEQ_OWNER=<pid>:<start time>`` in its
environment: the pid of the process that started it (the pytest process, or
whoever called ``run()``) and that process's start time in clock ticks since
boot, so a reused pid never passes for the owner. The child watches its owner
(``parent_watch.py``) and undoes its own changes when the owner dies.

When both died (``kill -9`` of the owner and the child), or the child could
not finish, the first run of the next process, and every run with cpuset or
hotplug chaos, calls :func:`restore` before any capability check:

1. orphans are killed: processes whose initial environment holds our tag,
   whose command line is the stress child's, and whose owner is dead (pid
   gone, or the pid now belongs to a process started at another time).
   Nothing else is ever signalled;
2. cpuset groups ``pytest-rseq-<pid>-<n>`` whose ``<pid>`` is dead are removed;
3. CPUs recorded in a hotplug state file of a dead owner are put back as
   recorded and the file is deleted (root only; skipped while a live run
   holds the hotplug lock: it restored stale files when it took the lock).
"""

from __future__ import annotations

import os
import select
import signal
from dataclasses import dataclass, field
from pathlib import Path

from . import cpuset, hotplug

OWNER_ENV = "PYTEST_RSEQ_OWNER"
CHILD_MODULE = b"pytest_rseq.engine.driver"
PROC = Path("/proc")
ORPHAN_EXIT_WAIT_S = 2.0


def start_time(pid: int, proc: Path = PROC) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when there is no such process."""
    try:
        stat = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


def owner_tag(pid: int | None = None) -> str:
    """The value of ``PYTEST_RSEQ_OWNER`` naming ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{start_time(pid)}"


def parse_tag(tag: str) -> tuple[int, int] | None:
    """``(pid, start time)`` from an owner tag, or None when it is not one."""
    pid, sep, started = tag.partition(":")
    if not sep or not pid.isdigit() or not started.isdigit():
        return None
    return int(pid), int(started)


def owner_alive(tag: str, proc: Path = PROC) -> bool:
    """True while the process named by ``tag`` runs (same pid, same start time)."""
    parsed = parse_tag(tag)
    return parsed is not None and start_time(parsed[0], proc) == parsed[1]


def _child_tag(pid: int, proc: Path = PROC) -> str | None:
    """The owner tag of ``pid`` when it is a stress child of ours, else None."""
    base = proc / str(pid)
    try:
        if CHILD_MODULE not in (base / "cmdline").read_bytes().split(b"\0"):
            return None
        environ = (base / "environ").read_bytes().split(b"\0")
    except OSError:  # gone, or not ours to read
        return None
    prefix = f"{OWNER_ENV}=".encode()
    for entry in environ:
        if entry.startswith(prefix):
            tag = entry[len(prefix) :].decode(errors="replace")
            return tag if parse_tag(tag) else None
    return None


def find_orphans(proc: Path = PROC) -> list[int]:
    """Stress children of ours whose owner is dead (this process excluded)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        tag = _child_tag(int(entry.name), proc)
        if tag is not None and not owner_alive(tag, proc):
            found.append(int(entry.name))
    return found


def kill_orphans(proc: Path = PROC) -> list[int]:
    """SIGKILL every orphan (checked again through a pidfd), wait for them; return their pids."""
    killed = []
    for pid in find_orphans(proc):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            # The pidfd pins the process: check it is still the orphan we saw.
            tag = _child_tag(pid, proc)
            if tag is None or owner_alive(tag, proc):
                continue
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            select.select([fd], [], [], ORPHAN_EXIT_WAIT_S)
            killed.append(pid)
        except OSError:
            continue
        finally:
            os.close(fd)
    return killed


@dataclass
class Restored:
    """What :func:`restore` undid: orphans killed, groups removed, CPUs brought back."""

    orphans: list[int] = field(default_factory=list)
    groups: list[Path] = field(default_factory=list)
    cpus: list[int] = field(default_factory=list)


_restored_in = 0


def restore_once() -> None:
    """:func:`restore` on this process's first run (every run that changes the machine
    calls :func:`restore` itself)."""
    global _restored_in
    if _restored_in != os.getpid():
        _restored_in = os.getpid()
        restore()


def restore(proc: Path = PROC) -> Restored:
    """Undo what killed runs left: orphans first, then their cgroups, then offline CPUs."""
    done = Restored(orphans=kill_orphans(proc))
    # remove_group() waits for a killed orphan's threads to leave (EBUSY).
    done.groups = cpuset.remove_stale()
    if os.geteuid() == 0:
        done.cpus = hotplug.restore_stale_if_idle()
    return done
