"""Nothing is left behind: cgroups, processes, the pytest process's affinity and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_rseq import Chaos, run
from pytest_rseq.engine.result import StressResult
from pytest_rseq.host import cpuset
from pytest_rseq.host.capabilities import cgroup_info

CPUSETS = pytest.mark.skipif(
    not cgroup_info()["cpuset_writable"], reason=str(cgroup_info()["cpuset_reason"])
)
Snapshot = Callable[[], dict[str, Any]]


def test_runs_leave_the_pytest_process_as_they_found_it(snapshot: Snapshot) -> None:
    before = snapshot()
    everything = Chaos(
        signals_hz=2000, affinity_hz=500, churn_hz=100, fork_hz=50, membarrier_hz=2000, cs_delay=50
    )
    # In-process: the handler, masks and fork children are in this very process.
    run("counter", threads=2, duration=0.5, chaos=everything, isolate=False).assert_consistent()
    run("counter", threads=2, duration=0.5, chaos=everything).assert_consistent()
    if cgroup_info()["cpuset_writable"]:
        run("counter", threads=2, duration=0.5, chaos=Chaos(cpuset_hz=1000)).assert_consistent()
    run("canary_bad_signature", threads=2, duration=0.3, chaos=Chaos(signals_hz=2000))
    assert snapshot() == before


def _tgid(tid: int) -> int:
    status = Path(f"/proc/{tid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("Tgid:")))


def _kill_child_mid_shift() -> int:
    """Wait until a worker sits in our group and cpuset.cpus has changed, SIGKILL the child."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for group in cpuset.our_groups():
            if not group.name.startswith(f"{cpuset.PREFIX}{os.getpid()}-"):
                continue
            cpus_dir = group if (group / "tasks").exists() else group / "workers"
            tasks = cpus_dir / ("tasks" if cpus_dir == group else "cgroup.threads")
            tids = [int(t) for t in tasks.read_text().split()] if tasks.exists() else []
            if not tids:
                continue
            first = (cpus_dir / "cpuset.cpus").read_text()
            while (cpus_dir / "cpuset.cpus").read_text() == first:
                assert time.monotonic() < deadline, "cpuset.cpus never changed"
                time.sleep(0.001)
            pid = _tgid(tids[0])
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.005)
    raise AssertionError("no worker ever joined a cpuset group")


@CPUSETS
def test_sigkill_mid_cpuset_shift_leaves_nothing(snapshot: Snapshot) -> None:
    before = snapshot()
    box: dict[str, StressResult] = {}

    def target() -> None:
        box["result"] = run("counter", threads=2, duration=10, chaos=Chaos(cpuset_hz=500))

    worker = threading.Thread(target=target)
    worker.start()
    pid = _kill_child_mid_shift()
    worker.join(30)
    assert not worker.is_alive()
    result = box["result"]
    assert result.crash == "SIGKILL"
    assert not result.ok
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert snapshot()["groups"] == []
    assert snapshot() == before


@CPUSETS
def test_stale_group_of_dead_owner_removed_at_next_start() -> None:
    host = cpuset.find_host()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    assert not psutil.pid_exists(dead_pid)
    stale = host.base / cpuset.group_name(dead_pid)
    stale.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    kept = host.base / cpuset.group_name(live.pid)
    kept.mkdir()
    try:
        result = run("counter", threads=2, duration=0.2, chaos=Chaos(cpuset_hz=200))
        result.assert_consistent()
        assert not stale.exists()
        assert kept.exists()  # its owner is alive: not ours to remove
    finally:
        live.kill()
        live.wait()
        for path in (stale, kept):
            if path.exists():
                cpuset.remove_group(path)
    assert not kept.exists()


def test_remove_group_refuses_foreign_folders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a pytest-rseq cpuset group"):
        cpuset.remove_group(tmp_path / "system.slice")


def test_the_process_tag_finds_a_surviving_descendant(
    process_tag: Callable[[], list[int]],
) -> None:
    """The detector below sees a process that outlives its parent (reparented to init)."""
    subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 &"], check=True)
    survivors = process_tag()
    assert survivors, "a detached, tagged sleep was not found"
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)


def test_no_process_left_after_a_crash_under_fork_churn(
    process_tag: Callable[..., list[int]],
) -> None:
    """Nothing started by a run that crashed under fork churn (the stress child, its
    forks, reparented or not) is alive afterwards."""
    result = run("canary_bad_signature", threads=2, duration=0.5, chaos=Chaos(fork_hz=200))
    assert result.crash == "SIGSEGV"
    assert process_tag(within_s=5.0) == []
