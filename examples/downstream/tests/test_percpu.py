"""The example's rseq structures under pytest-rseq, through its public API only.

Correct workloads must pass in every registration mode and under the default
chaos; every broken one must be caught, by the perturbation named in the test.

Under ``pytest --rseq-mutate`` each call on the correct library also runs on
mutants of it (``pytest_rseq.mutants``): the summary scores each test. The
tests of the broken library opt out (``mutate=False``: they expect a bug, so a
mutant of them proves nothing); ``test_weak_...`` opts in and is expected to
fail, as it lets mutants survive.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_rseq import Chaos, Workload, lint, mutants, run

CORRECT = ["percpu_counter", "percpu_freelist"]
REGISTRATIONS = ["auto", "glibc", "own", "blocked-enosys", "blocked-eperm"]
# Oversubscription: twice as many threads as CPUs, so threads are preempted
# while they sit inside (or just before) a critical section.
OVERSUBSCRIBED = Chaos(oversubscribe=2.0)
# ... and migrations: a thread moved between its CPU check and its commit is the
# only way a stale-CPU bug or a one-instruction commit outside the section shows
# (preempted on its own CPU, a thread re-reads the shard); --rseq-mutate shows it.
MIGRATING = Chaos(oversubscribe=2.0, affinity_hz=500)
# Deliberately weak: one thread, signals only. Every section still aborts (the
# evidence is in, so the run earns its ok), but no other thread ever touches
# the data, so a section that protects too little cannot show it.
WEAK = {"threads": 1, "chaos": Chaos(signals_hz=2000), "duration": 0.3}
EXPECTS_A_BUG = pytest.mark.rseq(mutate=False)


def correct(libs: dict[str, Path], symbol: str) -> Workload:
    return Workload.from_library(libs["libpercpu.so"], symbol)


def broken(libs: dict[str, Path], symbol: str) -> Workload:
    return Workload.from_library(libs["libpercpu_broken.so"], symbol)


@pytest.mark.parametrize("registration", REGISTRATIONS)
@pytest.mark.parametrize("symbol", CORRECT)
def test_correct_workload_passes_in_every_registration_mode(
    rseq_stress, percpu_libs, symbol, registration
):
    result = rseq_stress(
        correct(percpu_libs, symbol),
        registration=registration,
        chaos=MIGRATING,
        duration=0.2,
    )
    result.assert_consistent()
    if registration.startswith("blocked-"):
        assert result.path == "fallback"
    else:
        assert result.path == "rseq" and result.ops > 0


@pytest.mark.parametrize("symbol", CORRECT)
def test_correct_workload_passes_under_default_chaos(rseq_stress, percpu_libs, symbol):
    result = rseq_stress(
        correct(percpu_libs, symbol), chaos=Chaos.default(), path="both", duration=0.3
    )
    result.assert_consistent()
    assert result.aborts > 0 or result.migrations > 0, "the chaos had no visible effect"


@EXPECTS_A_BUG
def test_racy_counter_is_caught_by_oversubscription(rseq_stress, percpu_libs):
    """A per-CPU load/add/store without rseq loses counts once threads share a CPU."""
    result = rseq_stress(
        broken(percpu_libs, "percpu_counter_racy"), chaos=OVERSUBSCRIBED, duration=0.3
    )
    assert not result.ok
    assert result.crash is None and result.error is None
    assert result.observed < result.expected, result.describe()


@EXPECTS_A_BUG
def test_commit_early_freelist_is_caught_by_preemption_in_the_section(rseq_stress, percpu_libs):
    """A push that stores head before node->next corrupts the list when preempted between."""
    result = rseq_stress(
        broken(percpu_libs, "percpu_freelist_commit_early"), chaos=OVERSUBSCRIBED, duration=0.3
    )
    assert not result.ok
    assert result.crash is None and result.error is None
    assert result.observed != result.expected, result.describe()
    assert result.aborts > 0


@EXPECTS_A_BUG
def test_bad_signature_is_caught_by_the_first_abort(rseq_stress, percpu_libs):
    """A wrong signature before the abort handler: the first preemption inside kills it."""
    result = rseq_stress(
        broken(percpu_libs, "percpu_counter_bad_signature"), chaos=OVERSUBSCRIBED, duration=0.3
    )
    assert not result.ok
    assert result.crash == "SIGSEGV", result.describe()


def test_lint_passes_the_correct_library(percpu_libs):
    assert lint(percpu_libs["libpercpu.so"]) == []


def test_lint_flags_the_bad_signature_before_it_runs(percpu_libs):
    findings = lint(percpu_libs["libpercpu_broken.so"])
    assert [(f.check, (f.function or "").split("+")[0]) for f in findings] == [
        ("signature", "counter_bad_signature_op")
    ], [str(f) for f in findings]


@pytest.mark.xfail(
    strict=True,
    raises=pytest.fail.Exception,
    reason="deliberately weak: mutants of the counter survive it (see the rseq mutation summary)",
)
@pytest.mark.rseq(mutate=True)
def test_weak_single_thread_signals_only(rseq_stress, percpu_libs):
    """Passes on the correct counter, but has no teeth: mutation testing fails it."""
    result = rseq_stress(correct(percpu_libs, "percpu_counter"), **WEAK)
    result.assert_consistent()


def test_the_weak_settings_let_late_start_and_commit_outside_survive(percpu_libs, tmp_path):
    """The same weak settings through the public API: a wrong signature is killed
    by the first signal, but a stale-CPU or unprotected-commit bug needs a second
    thread, so those mutants survive."""
    made = {
        m.kind: m for m in mutants(percpu_libs["libpercpu.so"], tmp_path, symbol="percpu_counter")
    }
    assert sorted(made) == sorted(["unprotected", "commit-outside", "late-start", "bad-signature"])
    assert all(m.made for m in made.values()), [m.reason for m in made.values()]
    verdicts = {
        kind: run(m.workload("percpu_counter"), seed=7, **WEAK).verdict for kind, m in made.items()
    }
    assert verdicts["bad-signature"] == "bug"
    assert verdicts["late-start"] == "ok" and verdicts["commit-outside"] == "ok", verdicts
