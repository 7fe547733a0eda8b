"""Machine-wide guard for the whole run: no CPU left offline, no plugin cgroup left behind.

tests/conftest.py checks each pytest process (affinity, signals, children,
its own cgroups); this checks what every process shares, once, on the
controller (with xdist the workers' groups are gone by then).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import psutil
import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")
OFFLINE = Path("/sys/devices/system/cpu/offline")


def _orphaned(name: str) -> bool:
    """A group named ``pytest-rseq-<pid>-<n>`` whose owner is us or gone (not a live run)."""
    match = re.match(r"pytest-rseq-(\d+)-", name)
    if not match:
        return False
    pid = int(match.group(1))
    return pid == os.getpid() or not psutil.pid_exists(pid)


def _plugin_cgroups() -> list[str]:
    found = []
    for dirpath, dirnames, _ in os.walk(CGROUP_ROOT):
        found += [os.path.join(dirpath, d) for d in dirnames if _orphaned(d)]
        if len(Path(dirpath).relative_to(CGROUP_ROOT).parts) >= 3:
            dirnames[:] = []
    return found


def _offline() -> str:
    return OFFLINE.read_text().strip() if OFFLINE.exists() else ""


_BEFORE = pytest.StashKey[tuple[str, list[str]]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Note the CPUs offline and orphaned plugin cgroups before anything runs."""
    session.config.stash[_BEFORE] = (_offline(), _plugin_cgroups())


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run if it left a CPU offline or a pytest-rseq cgroup behind.

    Hooks, not a session fixture: with xdist only hooks run on the controller,
    which finishes after every worker is gone.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is not None:
        return
    offline, groups = session.config.stash[_BEFORE]
    problems = []
    if _offline() != offline:
        problems.append(f"CPUs offline changed: {offline!r} -> {_offline()!r}")
    if _plugin_cgroups() != groups:
        problems.append(f"cgroups left behind: {_plugin_cgroups()}")
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for problem in problems:
            if reporter is not None:
                reporter.write_line(f"machine not left as found: {problem}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
