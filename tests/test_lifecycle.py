"""Worker lifetimes end at random ops: the exit-loss and stale-cpu canaries are caught."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pytest_rseq import Chaos, capabilities, run

CAPS = capabilities()
RSEQ = pytest.mark.skipif(
    CAPS["owner"] not in ("glibc", "own") and not CAPS["rseq_available"],
    reason="rseq is not available",
)
TWO_CPUS = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="needs 2 allowed CPUs (migration between them)"
)


def test_exit_loss_is_caught_in_every_default_run() -> None:
    """Its remainder (flushed every 64 ops) is lost only when a thread leaves off a batch."""
    for i in range(10):
        result = run("canary_exit_loss", duration=0.05, chaos=Chaos.default(), seed=300 + i)
        assert not result.ok and result.lost > 0, result.describe()
        assert not result.error and not result.invariant_violations


def test_exit_loss_is_caught_without_churn_by_the_run_end() -> None:
    """No churn: only the last op of each worker before the deadline is random."""
    result = run("canary_exit_loss", threads=4, duration=0.05, chaos=Chaos(), seed=11)
    assert result.lost > 0, result.describe()


@pytest.mark.parametrize("workload", ["counter", "canary_exit_loss"])
def test_lifetimes_are_not_multiples_of_any_batch(workload: str) -> None:
    """Library-style workloads go 64 ops a batch, built-in counters 1024: a life's ops
    count is a random number, so 8 slots all on a multiple of 64 would be a 2^-48 event."""
    result = run(workload, threads=8, duration=0.05, chaos=Chaos(), seed=5)
    assert len(result.details["slot_ops"]) == 8
    assert any(ops % 64 for ops in result.details["slot_ops"]), result.details["slot_ops"]


def test_correct_counter_stays_ok_with_random_boundaries() -> None:
    for i in range(3):
        run("counter", duration=0.1, chaos=Chaos.default(), seed=40 + i).assert_consistent()


@RSEQ
@TWO_CPUS
def test_stale_cpu_is_caught_under_default_chaos() -> None:
    """Its loss needs a migration inside the stale window while the CPU left has a writer
    on it: 0.2 s runs missed it in 3 of 30 under load (load 12 on 2 CPUs, the workers
    seldom on a CPU), 1 s runs never (0 of 60 at 0.5 s)."""
    for i in range(3):
        result = run("canary_stale_cpu", duration=1.0, chaos=Chaos.default(), seed=500 + i)
        assert not result.ok and result.lost > 0, result.describe()


@pytest.fixture
def one_cpu() -> Iterator[None]:
    """This process (and the children it starts) on one CPU; restored afterwards."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@RSEQ
def test_stale_cpu_needs_a_migration(one_cpu: None) -> None:
    """On one CPU preemption, signals and churn cannot expose it: the bug is the stale CPU."""
    result = run(
        "canary_stale_cpu",
        threads=4,
        duration=0.2,
        chaos=Chaos(signals_hz=2000, churn_hz=200),
        seed=9,
    )
    assert result.lost == 0 and not result.error, result.describe()
    assert result.aborts > 0  # the sections were interrupted, harmlessly
