"""cgroup cpusets for the ``cpuset_hz`` injector, created and removed by the parent.

The parent (the pytest process) creates one group per run, named
``pytest-rseq-<owner pid>-<n>``, under the cpuset cgroup it runs in, and
hands its paths to the child. The child's native injector moves its worker
threads in and rewrites ``cpuset.cpus``; the parent removes the group by name
after the child exits, also after SIGKILL. When the parent dies first, the
child moves its threads back to the group's parent folder and removes the group
itself (``parent_watch.py``). Groups whose owner pid is dead are removed at the
next start (``stale.py``). Nothing is written outside groups made here, except
the child's own threads moved back where they came from.

cgroup v1 (``cpuset`` hierarchy): the group gets ``cpuset.mems`` and
``cpuset.cpus``; TIDs go to ``tasks``. cgroup v2: the group is a threaded
domain with ``+cpuset`` in its own ``cgroup.subtree_control`` and one
``threaded`` child whose ``cpuset.cpus`` is rewritten; the child process joins
the domain through ``cgroup.procs`` and TIDs go to ``cgroup.threads``. v2
needs ``cpuset`` already enabled in the parent group (we do not write there).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ..errors import CapabilityMissing

PREFIX = "pytest-rseq-"
MOUNTS = "/proc/self/mounts"
SELF_CGROUP = "/proc/self/cgroup"
RMDIR_TIMEOUT_S = 3.0
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)-(\d+)$")
_counter = itertools.count()


@dataclass(frozen=True)
class CpusetHost:
    """Where this process may create cpuset groups: cgroup version and parent folder."""

    version: int
    base: Path


@dataclass(frozen=True)
class CpusetGroup:
    """One group made for one run.

    ``path`` is the folder removed at the end; ``cpus_dir`` holds the
    ``cpuset.cpus`` the injector rewrites; ``tasks`` takes worker TIDs;
    ``procs`` (v2 only) takes the child's pid first.
    """

    version: int
    path: Path
    cpus_dir: Path
    tasks: Path
    procs: Path | None
    choices: tuple[str, ...]

    def to_spec(self) -> dict[str, Any]:
        """Return what the child needs, JSON-safe."""
        return {
            "version": self.version,
            "path": str(self.path),
            "dir": str(self.cpus_dir),
            "tasks": str(self.tasks),
            "procs": str(self.procs) if self.procs else None,
            "choices": ";".join(self.choices),
        }


def _mounts(mounts: str = MOUNTS) -> list[tuple[str, str, set[str]]]:
    out = []
    with contextlib.suppress(OSError), open(mounts) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                out.append((parts[1], parts[2], set(parts[3].split(","))))
    return out


def _own_cgroup(version: int, self_cgroup: str = SELF_CGROUP) -> str:
    with contextlib.suppress(OSError), open(self_cgroup) as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if version == 1 and "cpuset" in controllers.split(","):
                return path
            if version == 2 and controllers == "":
                return path
    return "/"


def find_host(mounts: str = MOUNTS, self_cgroup: str = SELF_CGROUP) -> CpusetHost:
    """Return where cpuset groups can be made.

    Raises:
        CapabilityMissing: no writable cpuset hierarchy (not root, no cpuset
            controller, v2 without ``cpuset`` in the parent's subtree_control).
    """
    found = _mounts(mounts)
    for mount, fstype, opts in found:
        if fstype == "cgroup" and "cpuset" in opts:
            base = Path(mount + _own_cgroup(1, self_cgroup))
            if not os.access(base, os.W_OK) or not os.access(base / "tasks", os.W_OK):
                raise CapabilityMissing(
                    f"cpuset shifts: the cgroup v1 cpuset folder {base} is not writable "
                    f"(uid {os.geteuid()}; creating cpusets needs root)"
                )
            return CpusetHost(1, base)
    for mount, fstype, _ in found:
        if fstype != "cgroup2":
            continue
        base = Path(mount + _own_cgroup(2, self_cgroup))
        controllers = _read(Path(mount) / "cgroup.controllers").split()
        if "cpuset" not in controllers:
            raise CapabilityMissing(
                f"cpuset shifts: cgroup v2 at {mount} has no cpuset controller "
                f"(cgroup.controllers: {' '.join(controllers) or 'empty'}) and no v1 cpuset "
                f"hierarchy is mounted"
            )
        if "cpuset" not in _read(base / "cgroup.subtree_control").split():
            raise CapabilityMissing(
                f"cpuset shifts: cpuset is not enabled in {base}/cgroup.subtree_control "
                f"(pytest-rseq writes only inside groups it creates)"
            )
        if not os.access(base, os.W_OK):
            raise CapabilityMissing(
                f"cpuset shifts: {base} is not writable (uid {os.geteuid()}; needs root)"
            )
        return CpusetHost(2, base)
    raise CapabilityMissing("cpuset shifts: no cgroup hierarchy with a cpuset controller")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def parse_cpu_list(text: str) -> list[int]:
    """Parse a kernel CPU list such as ``"0-3,6"``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def cpu_choices(cpus: list[int]) -> tuple[str, ...]:
    """The ``cpuset.cpus`` values the injector cycles through.

    Each CPU alone (workers share one CPU, then move), every other CPU as a
    sparse list such as ``"0,2"`` where there are at least 3, and all of them.
    """
    if len(cpus) < 2:
        raise CapabilityMissing(f"cpuset shifts need at least 2 usable CPUs, have {cpus}")
    choices = [str(c) for c in cpus]
    if len(cpus) >= 3:
        choices.append(",".join(str(c) for c in cpus[::2]))
    choices.append(",".join(str(c) for c in cpus))
    return tuple(choices)


def group_name(owner: int | None = None) -> str:
    """A fresh group name carrying the owner's pid."""
    return f"{PREFIX}{owner if owner is not None else os.getpid()}-{next(_counter)}"


def create_group(cpus: list[int], host: CpusetHost | None = None) -> CpusetGroup:
    """Create a group for one run, limited to ``cpus`` and the parent's CPUs.

    Raises:
        CapabilityMissing: cpusets are not writable here, or fewer than 2 CPUs.
    """
    host = host or find_host()
    effective = "cpuset.effective_cpus" if host.version == 1 else "cpuset.cpus.effective"
    usable_cpus = _read(host.base / effective) or _read(host.base / "cpuset.cpus")
    usable = sorted(set(cpus) & set(parse_cpu_list(usable_cpus))) if usable_cpus else sorted(cpus)
    choices = cpu_choices(usable)
    path = host.base / group_name()
    try:
        path.mkdir()
    except OSError as exc:
        raise CapabilityMissing(f"cpuset shifts: cannot create {path}: {exc}") from exc
    try:
        if host.version == 1:
            mems = _read(host.base / "cpuset.effective_mems") or _read(host.base / "cpuset.mems")
            _write(path / "cpuset.mems", mems or "0")
            _write(path / "cpuset.cpus", choices[-1])
            return CpusetGroup(1, path, path, path / "tasks", None, choices)
        _write(path / "cgroup.subtree_control", "+cpuset")
        workers = path / "workers"
        workers.mkdir()
        _write(workers / "cgroup.type", "threaded")
        _write(workers / "cpuset.cpus", choices[-1])
        return CpusetGroup(
            2, path, workers, workers / "cgroup.threads", path / "cgroup.procs", choices
        )
    except OSError as exc:
        remove_group(path)
        raise CapabilityMissing(f"cpuset shifts: setting up {path} failed: {exc}") from exc


def remove_group(path: Path, timeout_s: float = RMDIR_TIMEOUT_S) -> bool:
    """Remove a group made here (and its ``workers`` child); True when it is gone.

    Threads of a killed child may take a moment to leave, so EBUSY is retried.
    """
    if not _NAME.match(path.name):
        raise ValueError(f"refusing to remove {path}: not a pytest-rseq cpuset group")
    deadline = time.monotonic() + timeout_s
    for folder in (path / "workers", path):
        while folder.exists():
            try:
                folder.rmdir()
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
    return not path.exists()


def our_groups(host: CpusetHost | None = None) -> list[Path]:
    """Every group with the pytest-rseq prefix under the host's folder."""
    try:
        host = host or find_host()
    except CapabilityMissing:
        return []
    try:
        return sorted(p for p in host.base.iterdir() if p.is_dir() and _NAME.match(p.name))
    except OSError:
        return []


def remove_stale(host: CpusetHost | None = None) -> list[Path]:
    """Remove groups whose owner pid is dead; return the ones removed."""
    removed = []
    for path in our_groups(host):
        match = _NAME.match(path.name)
        if match and not psutil.pid_exists(int(match.group(1))) and remove_group(path):
            removed.append(path)
    return removed


def leave_group(spec: dict[str, Any]) -> None:
    """Child side: move every thread of this process back to the folder the group was made in.

    Used by a stress child whose owner died, so that it can remove the group
    itself (a group with tasks in it cannot be removed).
    """
    base = Path(spec["path"]).parent
    if spec.get("procs"):
        _write(base / "cgroup.procs", str(os.getpid()))
        return
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):
            _write(base / "tasks", tid)


def join_process(spec: dict[str, Any]) -> None:
    """Child side, v2 only: move this process into the group's threaded domain."""
    if spec.get("procs"):
        _write(Path(spec["procs"]), str(os.getpid()))
