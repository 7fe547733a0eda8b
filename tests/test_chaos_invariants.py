"""Each rseq-area invariant detector catches the canary that breaks it, and only that."""

from __future__ import annotations

import os

import pytest

from pytest_rseq import Chaos, capabilities, run
from pytest_rseq.engine.oracle import VIOLATIONS

CAPS = capabilities()
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2

# canary -> violation kind it must trigger (see VIOLATIONS in oracle.py)
CANARIES = {
    "canary_clobber_cpu_id_start": 1,
    "canary_clobber_stale_cpu": 2,
    "canary_clobber_cpu_range": 3,
    "canary_clobber_mm_cid": 4,
    "canary_clobber_not_allowed": 5,
    "canary_clobber_node_id": 6,
}


def _needs(canary: str) -> str | None:
    if CAPS["owner"] not in ("glibc", "own") and not CAPS["rseq_available"]:
        return "rseq is not available"
    if canary in ("canary_clobber_stale_cpu", "canary_clobber_not_allowed") and not TWO_CPUS:
        return "needs 2 allowed CPUs"
    if canary == "canary_clobber_node_id" and not CAPS["node_id_usable"]:
        return "the kernel does not fill node_id in this area"
    if canary == "canary_clobber_mm_cid" and not CAPS["mm_cid_usable"]:
        return "the kernel does not fill mm_cid in this area"
    return None


def _chaos_for(canary: str) -> Chaos:
    """The default chaos, but without affinity changes for the two canaries that write
    another allowed CPU into cpu_id.

    The stale-cpu canary writes the other CPU: while the affinity injector holds the
    thread to one CPU, that CPU is outside its mask and the not-allowed detector
    (checked first) rightly reports the same lie. The not-allowed canary pins itself to
    one CPU and writes the other: once the injector widens its mask, or while a mask
    change is in flight (the not-allowed check is skipped then), the getcpu detector
    rightly reports it first (2 runs in 50 under load). Without affinity changes no mask
    changes under them, so each is caught by its own detector first.
    """
    if canary in ("canary_clobber_stale_cpu", "canary_clobber_not_allowed"):
        return Chaos(signals_hz=2000, churn_hz=200, oversubscribe=2.0)
    return Chaos.default()


@pytest.mark.parametrize(("canary", "kind"), CANARIES.items())
def test_detector_catches_its_canary(canary: str, kind: int) -> None:
    reason = _needs(canary)
    if reason:
        pytest.skip(reason)
    result = run(canary, threads=2, duration=0.3, chaos=_chaos_for(canary))
    assert not result.ok
    assert result.observed == result.expected  # the counts are right: only the area lies
    assert result.invariant_violations > 0
    assert result.details["first_violation"][0] == kind, result.describe()
    assert VIOLATIONS[kind] in " ".join(result.reasons)


@pytest.mark.parametrize("workload", ["counter", "counter_mm_cid"])
@pytest.mark.parametrize(
    "chaos",
    [Chaos(), Chaos(affinity_hz=1000, signals_hz=2000), Chaos.default()],
    ids=["none", "affinity+signals", "default"],
)
def test_correct_workloads_break_no_invariant_under_chaos(workload: str, chaos: Chaos) -> None:
    result = run(workload, threads=3, duration=0.5, chaos=chaos)
    result.assert_consistent()
    assert result.details["invariant_samples"] > 0
    assert result.invariant_violations == 0


def test_cpuset_shifts_break_no_invariant() -> None:
    if not CAPS["cpuset_writable"]:
        pytest.skip(str(CAPS["cpuset_reason"]))
    result = run("counter", threads=3, duration=0.5, chaos=Chaos(cpuset_hz=1000))
    result.assert_consistent()
    assert result.invariant_violations == 0
