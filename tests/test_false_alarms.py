"""Regression tests for false alarms and hangs of the harness itself (not of a workload)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_rseq import Chaos, capabilities, run
from pytest_rseq._native import load
from pytest_rseq.engine import driver as _child
from pytest_rseq.engine.spec import RunSpec
from pytest_rseq.host.prep import HostPrep

CAPS = capabilities()
CPUS = sorted(os.sched_getaffinity(0))
TWO_CPUS = pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 allowed CPUs")
RSEQ = pytest.mark.skipif(
    CAPS["owner"] not in ("glibc", "own") and not CAPS["rseq_available"],
    reason="rseq is not available",
)
# Liveness bound, not a performance threshold.
HANG_LIMIT_S = 60


def _spec(workload: str, **kw: Any) -> RunSpec:
    args: dict[str, Any] = {
        "threads": 2,
        "ops_per_thread": None,
        "duration": 0.2,
        "chaos": Chaos(),
        "path": "rseq",
        "registration": "auto",
        "seed": 1,
    }
    args.update(kw)
    return RunSpec.build(workload, **args)


@RSEQ
@TWO_CPUS
@pytest.mark.skipif(not CAPS["mm_cid_usable"], reason="the kernel does not fill mm_cid here")
def test_mm_cid_bound_is_the_kernels_in_process() -> None:
    """Main thread pinned to one CPU, a Python thread on another: the process's
    nr_cpus_allowed is their union, so mm_cid 1 is legal for the pinned workers."""
    before = os.sched_getaffinity(0)
    stop = threading.Event()

    def elsewhere() -> None:
        os.sched_setaffinity(0, {CPUS[1]})
        while not stop.is_set():
            sum(range(1000))

    other = threading.Thread(target=elsewhere)
    other.start()
    os.sched_setaffinity(0, {CPUS[0]})
    try:
        result = run("counter_mm_cid", threads=2, duration=0.3, chaos=Chaos(), isolate=False)
    finally:
        os.sched_setaffinity(0, before)
        stop.set()
        other.join()
    assert result.invariant_violations == 0, result.describe()
    assert result.observed == result.expected and not result.error
    assert result.details["invariant_samples"] > 0


@RSEQ
def test_stop_during_both_stops_the_fallback_half_too() -> None:
    """The stop flag survives into the second half of path="both": it does not run."""
    _, lib = load()
    spec = _spec("counter", duration=60.0, path="both")
    lib.prseq_clear_stop()
    box: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: box.update(raw=_child.run_spec(spec)))
    worker.start()
    time.sleep(0.3)  # let the rseq half start; the stop may land anywhere
    lib.prseq_request_stop()
    worker.join(HANG_LIMIT_S)
    lib.prseq_clear_stop()
    assert not worker.is_alive(), "the stop was lost"
    raw = box["raw"]
    assert raw["stopped"] is True
    assert "fallback" not in raw["runs"], "the fallback half ran after the stop"
    assert raw["runs"]["rseq"]["duration_s"] < 60


def test_a_run_does_not_clear_a_pending_stop() -> None:
    """Only the caller clears the flag: a run started after a stop request stops at once
    (op counts, not time: a 60 s run of the fallback counter does far more than this)."""
    _, lib = load()
    lib.prseq_request_stop()
    try:
        raw = _child.run_spec(_spec("counter", duration=60.0, path="fallback"))
    finally:
        lib.prseq_clear_stop()
    assert raw["stopped"] is True
    assert raw["runs"]["fallback"]["ops"] < 10_000_000


@TWO_CPUS
def test_affinity_injector_never_touches_another_process() -> None:
    """A sentinel process started here keeps its mask through a churn-heavy run with a
    high affinity rate (workers' TIDs are recycled while the injector targets them)."""
    sentinel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    masks: list[set[int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            masks.append(os.sched_getaffinity(sentinel.pid))
            time.sleep(0.001)

    try:
        before = os.sched_getaffinity(sentinel.pid)
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            result = run(
                "counter",
                threads=8,
                duration=1.0,
                chaos=Chaos(affinity_hz=20_000, churn_hz=5_000),
                seed=3,
            )
        finally:
            stop.set()
            watcher.join()
        after = os.sched_getaffinity(sentinel.pid)
    finally:
        sentinel.kill()
        sentinel.wait()
    assert result.affinity_changes > 0 and result.threads_started > 8
    assert masks and all(m == before for m in masks) and after == before


def _node_tree(root: Path, node: int) -> Path:
    (root / f"node{node}").mkdir(parents=True)
    (root / f"node{node}" / "cpulist").write_text(f"0-{max(CPUS)}\n")
    (root / "possible").write_text("0\n")  # a file that is not a node directory
    return root


@RSEQ
@pytest.mark.skipif(not CAPS["node_id_usable"], reason="the kernel does not fill node_id here")
def test_node_map_is_read_from_the_node_directories(tmp_path: Path) -> None:
    """A fake tree saying every CPU is on node 7: the node_id check fires (it was read)."""
    spec = _spec("counter", duration=0.1)
    host = HostPrep(node_root=str(_node_tree(tmp_path, 7)))
    rseq = _child.run_spec(spec, host)["runs"]["rseq"]
    assert rseq["invariant_violations"] > 0 and rseq["first_violation"][0] == 6


def test_missing_node_tree_means_unknown_nodes(tmp_path: Path) -> None:
    """No node directory: every node is unknown, the run goes on with no node check."""
    spec = _spec("counter", duration=0.1)
    host = HostPrep(node_root=str(tmp_path / "absent"))
    rseq = _child.run_spec(spec, host)["runs"]["rseq"]
    assert rseq["invariant_violations"] == 0 and not rseq["error"] and rseq["ops"] > 0
