"""A stalled process (stopped, or starved by the machine) earns no evidence in the
time it does not run: that time moves the evidence cap, up to an allowance, so a
correct run is not "no-evidence" because the machine paused it."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from pytest_rseq import Chaos, run
from pytest_rseq.engine.deadlines import deadlines, stall_allowance_s
from pytest_rseq.engine.evidence import evidence_reasons
from pytest_rseq.engine.spec import RunSpec

STALL_S = 1.5


def _stop_the_run_once(stall_s: float, stopped: list[float]) -> None:
    """SIGSTOP this test's run child once its workers exist, for ``stall_s``."""
    me = psutil.Process()
    until = time.monotonic() + 30
    while time.monotonic() < until:
        for child in me.children(recursive=True):
            try:
                if "pytest_rseq.engine.driver" in " ".join(child.cmdline()) and (
                    child.num_threads() >= 3
                ):
                    os.kill(child.pid, signal.SIGSTOP)
                    stopped.append(time.monotonic())
                    time.sleep(stall_s)
                    os.kill(child.pid, signal.SIGCONT)
                    return
            except (psutil.Error, ProcessLookupError):
                continue
        time.sleep(0.001)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 allowed CPUs")
@pytest.mark.parametrize("seed", [1, 2])
def test_a_run_stopped_longer_than_its_cap_still_earns_its_evidence(seed: int) -> None:
    """The run's cap is 1 s (0.05 s x 20); its process is stopped for 1.5 s near the
    start. Before the allowance this was "no-evidence" in 3 of 3 runs."""
    stopped: list[float] = []
    staller = threading.Thread(target=_stop_the_run_once, args=(STALL_S, stopped))
    staller.start()
    try:
        result = run("counter", threads=2, duration=0.05, chaos=Chaos(signals_hz=2000), seed=seed)
    finally:
        staller.join()
    assert stopped, "the run's child was never seen with its workers"
    assert result.details["stalled_s"] >= 1.0, result.describe()
    assert result.verdict == "ok", result.describe()


def test_the_reason_names_the_stall_and_the_child_deadline_allows_for_it() -> None:
    """A stall beyond the allowance still ends the run; the reason says so."""
    spec = RunSpec.build("counter", duration=0.05, chaos=Chaos(signals_hz=2000))
    raw = {"evidence_missing": 8, "extended_s": 5.9, "stalled_s": 7.0, "overlapped_migrations": 1}
    reasons = evidence_reasons(spec, raw, "rseq")
    assert reasons and all("moved by 5.00 s" in r for r in reasons), reasons
    assert all("7.00 s" in r for r in reasons), reasons
    limits = deadlines(spec)
    assert limits.child > limits.first_half + stall_allowance_s()
