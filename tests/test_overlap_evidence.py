"""The migration evidence of an rseq run counts overlapped migrations, not just moves.

A migration exposes a stale CPU number only while the CPU the worker left keeps
running a writer; with two threads or more an rseq run must show
``PRSEQ_MIN_OVERLAPPED_MIGRATIONS`` such migrations before it may be ``ok``.
"""

from __future__ import annotations

import os

import pytest

from pytest_rseq import Chaos, capabilities, run
from pytest_rseq._native import load

CAPS = capabilities()
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
NEEDED = int(load()[1].PRSEQ_MIN_OVERLAPPED_MIGRATIONS)

pytestmark = [
    pytest.mark.skipif(not TWO_CPUS, reason="migrations need 2 allowed CPUs"),
    pytest.mark.skipif(
        CAPS["owner"] not in ("glibc", "own") and not CAPS["rseq_available"],
        reason="rseq is not available",
    ),
]


def test_a_budget_too_short_for_overlaps_is_no_evidence_and_says_so() -> None:
    # 2,048 ops are at most three batches of the built-in counter per worker:
    # a move seen at one boundary and a batch after it, at most once each, so
    # two workers can show 2 overlapped migrations, fewer than needed.
    result = run("counter", threads=2, ops_per_thread=2048, chaos=Chaos.none(), seed=5)
    assert result.verdict == "no-evidence", result.describe()
    assert result.counters["overlapped_migrations"] <= 2
    assert any(f"{NEEDED} needed" in r and "overlapped migration" in r for r in result.reasons)


def test_a_correct_run_without_chaos_gets_its_overlaps_from_the_harness() -> None:
    result = run("counter", threads=2, duration=0.05, chaos=Chaos.none(), seed=7)
    result.assert_consistent()
    assert result.counters["overlapped_migrations"] >= NEEDED
    assert result.details["evidence_moves"] >= 1


def test_one_thread_needs_one_migration_not_overlaps() -> None:
    # Nobody can run on the CPU a lone worker left: overlaps are impossible.
    result = run("counter", threads=1, duration=0.05, chaos=Chaos.none(), seed=3)
    result.assert_consistent()
    assert result.counters["overlapped_migrations"] == 0
    assert result.counters["migrations"] >= 1


def test_stale_cpu_canary_is_caught_without_any_chaos() -> None:
    # Only the harness's own moves. With "a worker migrated" as the rule, 18 of
    # 30 runs of seeds 100-129 passed; with 16 overlapped migrations none of 120
    # did (under load), so 9 of 10 caught is a bar the old rule fails.
    verdicts = [
        run("canary_stale_cpu", threads=2, duration=0.05, chaos=Chaos.none(), seed=s).verdict
        for s in range(100, 110)
    ]
    assert verdicts.count("bug") >= 9, verdicts
