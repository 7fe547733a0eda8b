"""Suite-wide guard: the tests must leave the machine as they found it.

Every run may change affinity, signal dispositions, cgroups and CPUs online
in its child process only; this checks, once at the end of the session, that
nothing leaked into the pytest process or the machine.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

CPUSET_ROOTS = ("/sys/fs/cgroup/cpuset", "/sys/fs/cgroup", "/sys/fs/cgroup/unified")


def _machine_state() -> dict[str, object]:
    realtime = range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
    return {
        "affinity": sorted(os.sched_getaffinity(0)),
        "dispositions": {s: signal.getsignal(s) for s in realtime},
        "cpus_offline": Path("/sys/devices/system/cpu/offline").read_text().strip(),
    }


def _our_cgroups() -> list[str]:
    found = []
    for root in CPUSET_ROOTS:
        base = Path(root)
        if base.is_dir():
            found += [str(p) for p in base.iterdir() if p.is_dir() and "pytest-rseq" in p.name]
    return found


@pytest.fixture(scope="session", autouse=True)
def machine_left_as_found() -> Iterator[None]:
    """Fail the session if it changed our affinity or signals, or left CPUs or cgroups."""
    before = _machine_state()
    yield
    after = _machine_state()
    assert after == before, f"the test session changed the machine: {before} -> {after}"
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        assert _our_cgroups() == [], f"cgroups left behind: {_our_cgroups()}"
