"""Suite-wide guard: the whole test session leaves the machine as it found it.

Every pytest process (each xdist worker too) snapshots its CPU affinity,
signal dispositions, child processes and pytest-rseq cgroups at session start
and compares at the end; a difference is an error on the last test.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "pytest-rseq-"


def leftover_groups(pid: int | None = None) -> list[Path]:
    """Folders named ``pytest-rseq-<pid>-*`` under the cgroup roots (4 levels deep)."""
    prefix = f"{PREFIX}{pid if pid is not None else os.getpid()}-"
    found = []
    for dirpath, dirnames, _ in os.walk(CGROUP_ROOT):
        found += [Path(dirpath, d) for d in dirnames if d.startswith(prefix)]
        if len(Path(dirpath).relative_to(CGROUP_ROOT).parts) >= 3:
            dirnames[:] = []
    return found


def _status_masks() -> dict[str, str]:
    masks = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigCgt", "SigIgn", "SigBlk", "Cpus_allowed_list"):
            masks[key] = value.strip()
    return masks


def take_snapshot() -> dict[str, Any]:
    """The state of this pytest process that stress runs must not change."""
    # The first thread an interpreter starts makes CPython/glibc install a
    # handler for signal 33 (not pytest-rseq): start one before looking.
    worker = threading.Thread(target=lambda: None)
    worker.start()
    worker.join()
    return {
        "affinity": sorted(os.sched_getaffinity(0)),
        "signals": _status_masks(),
        "python_handlers": {
            s.name: signal.getsignal(s)
            for s in signal.valid_signals()
            if isinstance(s, signal.Signals)
        },
        "children": sorted(p.pid for p in psutil.Process().children(recursive=True)),
        "groups": leftover_groups(),
    }


@pytest.fixture
def snapshot() -> Callable[[], dict[str, Any]]:
    """A callable returning the process state stress runs must leave unchanged."""
    return take_snapshot


@pytest.fixture(scope="session", autouse=True)
def _session_leaves_nothing_behind() -> Iterator[None]:
    before = take_snapshot()
    yield
    after = take_snapshot()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"the test session left changes behind (before, after): {changed}"


def processes_with_tag(tag: str) -> list[int]:
    """PIDs (other than ours) whose initial environment holds ``tag`` ("NAME=value").

    Unlike a children() walk this also finds processes reparented to init,
    such as leaked grandchildren of a crashed stress child.
    """
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if tag.encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture
def process_tag(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[int]]:
    """Tag every process started from now on (through the environment); the returned
    callable lists the tagged processes still alive.

    Called with ``within_s``, it waits up to that long for them to go (a SIGKILLed
    process lives until the scheduler runs it, late on a loaded machine: a bound, not a
    speed check) and lists those still alive then.
    """
    value = uuid.uuid4().hex
    monkeypatch.setenv("PRSEQ_TEST_TAG", value)

    def alive(within_s: float = 0.0) -> list[int]:
        deadline = time.monotonic() + within_s
        while (found := processes_with_tag(f"PRSEQ_TEST_TAG={value}")) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.02)
        return found

    return alive


def real_hotplug_unavailable() -> str | None:
    """Why tests may not take real CPUs offline here, or None when they may."""
    if os.environ.get("PYTEST_RSEQ_TEST_HOTPLUG") == "0":
        return "PYTEST_RSEQ_TEST_HOTPLUG=0"
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return "under xdist: taking a CPU offline would disturb the other workers' runs"
    if os.geteuid() != 0:
        return "CPU hotplug needs root"
    if not os.access("/sys/devices/system/cpu/cpu1/online", os.W_OK):
        return "cpu1 is not hot-pluggable here"
    return None


@pytest.fixture
def real_hotplug() -> None:
    """Skip the test unless it may take real CPUs offline (see real_hotplug_unavailable)."""
    why = real_hotplug_unavailable()
    if why is not None:
        pytest.skip(why)
