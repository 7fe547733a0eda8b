"""CPU hotplug for the opt-in ``hotplug_hz`` injector: record, guard, restore.

Before a run that may take CPUs offline, the parent writes the online state
of every hotpluggable CPU to ``<state dir>/hotplug-<pid>.json``. After the
child exits (also after a crash or SIGKILL) the parent writes the recorded
state back and deletes the file; a file whose owner pid is dead is restored
at the next start. CPU 0 is never touched. Root only; off unless asked for
(``Chaos(hotplug_hz=...)``, ``--rseq-allow-hotplug``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import psutil

from ..errors import CapabilityMissing

SYSFS_CPU = Path("/sys/devices/system/cpu")
STATE_DIR = Path(os.environ.get("PYTEST_RSEQ_STATE_DIR", "/run/pytest-rseq"))
LOCK_NAME = "hotplug.lock"
_STATE = re.compile(r"^hotplug-(\d+)\.json$")


def hotpluggable(allowed: set[int], sysfs: Path = SYSFS_CPU) -> list[int]:
    """Online CPUs other than 0, in ``allowed``, whose ``online`` file is writable."""
    cpus = []
    for cpu in sorted(allowed):
        online = sysfs / f"cpu{cpu}" / "online"
        if cpu == 0 or not online.exists():
            continue
        if os.access(online, os.W_OK) and online.read_text().strip() == "1":
            cpus.append(cpu)
    return cpus


def check(allowed: set[int], sysfs: Path = SYSFS_CPU) -> list[int]:
    """Return the CPUs the injector may offline.

    Raises:
        CapabilityMissing: not root, or no CPU besides 0 can go offline.
    """
    if os.geteuid() != 0:
        raise CapabilityMissing(f"CPU hotplug needs root (uid {os.geteuid()})")
    cpus = hotpluggable(allowed, sysfs)
    if not cpus:
        raise CapabilityMissing(f"CPU hotplug: no writable {sysfs}/cpuN/online for N > 0")
    return cpus


def state_path(state_dir: Path = STATE_DIR) -> Path:
    """This process's state file (the stress child restores it when this process dies)."""
    return state_dir / f"hotplug-{os.getpid()}.json"


def record(cpus: list[int], sysfs: Path = SYSFS_CPU, state_dir: Path = STATE_DIR) -> Path:
    """Write the online state of ``cpus`` to this process's state file; return its path."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "pid": os.getpid(),
        "online": {str(c): (sysfs / f"cpu{c}" / "online").read_text().strip() for c in cpus},
    }
    path = state_path(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)
    return path


def restore(path: Path, sysfs: Path = SYSFS_CPU) -> list[int]:
    """Write the recorded state back where it differs, delete the file; return CPUs changed."""
    state = json.loads(path.read_text())
    changed = []
    for cpu, value in state["online"].items():
        online = sysfs / f"cpu{int(cpu)}" / "online"
        if online.read_text().strip() != value:
            online.write_text(value)
            changed.append(int(cpu))
    path.unlink()
    return changed


def restore_stale(sysfs: Path = SYSFS_CPU, state_dir: Path = STATE_DIR) -> list[int]:
    """Restore the state files of dead owners (a run killed mid-hotplug)."""
    changed: list[int] = []
    if not state_dir.is_dir():
        return changed
    for path in state_dir.iterdir():
        match = _STATE.match(path.name)
        if not match:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and psutil.pid_exists(pid):
            continue
        with contextlib.suppress(OSError, ValueError, KeyError):
            changed += restore(path, sysfs)
    return changed


def restore_stale_if_idle(sysfs: Path = SYSFS_CPU, state_dir: Path = STATE_DIR) -> list[int]:
    """:func:`restore_stale` unless a live hotplug run holds the lock (it restored them itself)."""
    if not state_dir.is_dir():
        return []
    with open(state_dir / LOCK_NAME, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []
        return restore_stale(sysfs, state_dir)


@contextlib.contextmanager
def guard(
    cpus: list[int], sysfs: Path = SYSFS_CPU, state_dir: Path = STATE_DIR
) -> Iterator[list[int]]:
    """Record the state of ``cpus`` before the block and restore it after, whatever happens.

    Yields the CPUs of ``cpus`` that are online under the lock: the only
    ones the run may take offline.

    One hotplug run at a time per machine (a lock in ``state_dir``): a second
    run would otherwise record a CPU the first one took offline as "offline"
    and leave it so.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        restore_stale(sysfs, state_dir)
        online = [c for c in cpus if (sysfs / f"cpu{c}" / "online").read_text().strip() == "1"]
        if not online:
            raise CapabilityMissing(f"CPU hotplug: none of CPUs {cpus} is online any more")
        path = record(online, sysfs, state_dir)
        try:
            yield online
        finally:
            restore(path, sysfs)
