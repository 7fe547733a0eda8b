"""Verdicts that are earned: ok / bug / no-evidence / error, the evidence rules,
the extension up to the evidence cap, and abort attribution by cause."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from pytest_rseq import Chaos, StressResult, run
from pytest_rseq.engine.evidence import EVIDENCE_BITS, evidence_reasons, missing_evidence
from pytest_rseq.engine.oracle import verdict_of
from pytest_rseq.engine.spec import RunSpec

TWO_CPUS = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="needs 2 allowed CPUs (migration between them)"
)


# ---- classification (units) ----------------------------------------------------


@pytest.mark.parametrize(
    ("findings", "verdict"),
    [
        ([], "ok"),
        ([("no-evidence", "x")], "no-evidence"),
        ([("bug", "lost"), ("no-evidence", "x")], "bug"),
        ([("error", "op failed"), ("no-evidence", "x")], "error"),
        # A run that stopped on an error proves nothing about its counts ...
        ([("error", "timeout"), ("bug", "lost")], "error"),
        # ... but a crash or a failed fork child stands.
        ([("error", "timeout"), ("crash", "SIGSEGV")], "bug"),
    ],
)
def test_verdict_precedence(findings: list[tuple[str, str]], verdict: str) -> None:
    assert verdict_of(findings) == verdict


def _result(**overrides: Any) -> StressResult:
    base: dict[str, Any] = dict(
        ok=False,
        workload="counter",
        path="rseq",
        registration="glibc",
        threads=2,
        expected=10,
        observed=10,
        per_cpu=[10],
        ops=10,
        aborts=7,
        migrations=0,
        signals_delivered=0,
        affinity_changes=0,
        cpuset_shifts=0,
        threads_started=2,
        forks=0,
        membarriers=0,
        invariant_violations=0,
        crash=None,
        seed=1,
        duration_s=0.1,
    )
    base.update(overrides)
    return StressResult(**base)


def test_ok_is_a_field_equal_to_verdict_ok() -> None:
    res = _result(verdict="no-evidence", reasons=["no evidence (rseq): ..."])
    assert res.ok is False and not res.showed_a_bug
    data = res.to_dict()
    assert data["ok"] is False and data["verdict"] == "no-evidence"
    assert data["aborts_by_cause"] == {"signal": 0, "membarrier": 0, "preemption": 7}
    assert "NO EVIDENCE" in res.describe() and "BUG" not in res.describe()
    assert _result(verdict="bug", observed=9).showed_a_bug
    with pytest.raises(ValueError, match="contradicts"):
        _result(ok=True, verdict="bug")
    with pytest.raises(ValueError, match="verdict must be one of"):
        _result(verdict="maybe")


def test_evidence_bits_come_from_the_core_and_are_distinct() -> None:
    from pytest_rseq._native import load

    lib = load()[1]
    values = [getattr(lib, f"PRSEQ_EVIDENCE_{n.upper()}") for n in EVIDENCE_BITS]
    assert len(set(values)) == len(values) and all(v & (v - 1) == 0 for v in values)
    assert missing_evidence(values[1] | values[3]) == [EVIDENCE_BITS[1], EVIDENCE_BITS[3]]


def test_each_missing_item_is_explained_with_what_to_change() -> None:
    chaos = Chaos(signals_hz=5, membarrier_hz=5, churn_hz=1, fork_hz=1, hotplug_hz=1)
    spec = RunSpec.build("counter", chaos=chaos, seed=1, evidence_cap=10.0)
    for bit in range(len(EVIDENCE_BITS)):
        run_ = {"path": "rseq", "evidence_missing": 1 << bit, "duration_s": 3.0}
        (reason,) = evidence_reasons(spec, run_, "rseq")
        assert reason.startswith("no evidence (rseq)") and "bug" not in reason
        assert "evidence cap (10x" in reason
    run_ = {"path": "rseq", "evidence_missing": 2, "duration_s": 3.0}
    assert "signals_hz=5" in evidence_reasons(spec, run_, "rseq")[0]
    budget = dataclasses.replace(spec, ops_per_thread=100)
    assert "ops_per_thread" in evidence_reasons(budget, run_, "rseq")[0]


def test_evidence_cap_is_validated() -> None:
    for bad in (0.5, float("nan"), True, "10", 10**6):
        with pytest.raises(ValueError, match="evidence_cap"):
            run("counter", duration=0.01, evidence_cap=bad)


# ---- real runs -------------------------------------------------------------------


def test_canary_racy_with_default_arguments_is_never_ok() -> None:
    """The canary never aborts, so each run goes on to the default cap (3 s) and must end
    a bug, not no-evidence. Five seeds: the catch rate itself is what
    test_default_catches_canary_racy_20_of_20 and test_racy_canary_is_caught_every_time
    measure (20 runs each, without the extension)."""
    for i in range(5):
        result = run("canary_racy", threads=2, duration=0.3, seed=9000 + i)
        assert result.verdict == "bug", result.describe()


def test_canary_racy_unperturbed_is_never_ok() -> None:
    """No chaos, no extension: a broken workload can no longer pass on 'no effect'."""
    for i in range(4):
        result = run(
            "canary_racy", threads=2, duration=0.3, chaos=Chaos.none(), evidence_cap=1, seed=i
        )
        assert not result.ok, result.describe()
        assert "aborts" in result.details["evidence_missing"]  # it has no section to abort


def test_preemption_aborts_are_not_membarrier_evidence() -> None:
    """One fence per second fires about once: whatever the preemption aborts (two
    threads per CPU), only aborts attributed to that fence count for membarrier."""
    result = run(
        "counter",
        duration=0.3,
        chaos=Chaos(membarrier_hz=1, oversubscribe=2),
        evidence_cap=1,
        seed=3,
    )
    causes = result.aborts_by_cause
    assert causes["preemption"] > 0, result.describe()
    # A fence aborts at most one section per thread; the rest is preemption.
    assert causes["membarrier"] <= max(1, result.membarriers) * result.threads
    # The membarrier evidence follows the fence-attributed count alone.
    missing = "membarrier" in result.details["evidence_missing"]
    assert missing == (causes["membarrier"] == 0), result.describe()
    if missing:
        assert not result.ok
        assert any("membarrier_hz=1" in r for r in result.reasons), result.reasons


def test_fences_that_abort_are_membarrier_evidence() -> None:
    result = run("counter", duration=0.3, chaos=Chaos(membarrier_hz=5000, oversubscribe=2))
    assert result.verdict == "ok", result.describe()
    assert 0 < result.aborts_by_cause["membarrier"] <= result.aborts
    assert result.aborts_by_cause["membarrier"] <= result.membarriers * result.threads


def test_preemption_aborts_are_not_signal_evidence() -> None:
    """Two signals per second: the injector's first one fires as it starts, and reaches a
    worker when the workers started first (8 runs in 30 under load), so a signal abort
    may be real. Whatever the preemption aborts (two threads per CPU), only aborts
    attributed to a handled signal count for the signal evidence."""
    result = run(
        "counter", duration=0.3, chaos=Chaos(signals_hz=2, oversubscribe=2), evidence_cap=1, seed=4
    )
    causes = result.aborts_by_cause
    assert causes["preemption"] > 0, result.describe()
    # A handled signal aborts at most one section; the rest is preemption.
    assert causes["signal"] <= result.signals_delivered, result.describe()
    # The signal evidence follows the signal-attributed count alone.
    missing = "signal" in result.details["evidence_missing"]
    assert missing == (causes["signal"] == 0), result.describe()
    if missing:
        assert result.verdict == "no-evidence", result.describe()
        assert any("signals_hz=2" in r for r in result.reasons), result.reasons


def test_signal_aborts_are_bounded_by_signals_handled() -> None:
    result = run("counter", duration=0.3, chaos=Chaos(signals_hz=4000, cs_delay=50))
    assert result.verdict == "ok", result.describe()
    causes = result.aborts_by_cause
    assert 0 < causes["signal"] <= result.signals_delivered
    assert sum(causes.values()) == result.aborts


@pytest.mark.parametrize("workload", ["counter", "counter_mm_cid"])
def test_short_runs_of_correct_counters_are_ok_thanks_to_the_extension(workload: str) -> None:
    for i, duration in enumerate((0.02, 0.03, 0.05)):
        result = run(workload, duration=duration, seed=77 + i)
        assert result.verdict == "ok", result.describe()


def test_extension_ends_at_the_cap_without_evidence() -> None:
    """One thread of the sectionless canary can never abort: the run ends at the
    cap (4 x 0.05 s) with no-evidence, not a hang and not a bug."""
    result = run("canary_racy", threads=1, duration=0.05, chaos=Chaos.none(), evidence_cap=4)
    assert result.verdict == "no-evidence", result.describe()
    assert result.extended_s >= 0.15 * 0.99
    assert any("evidence cap (4x" in r for r in result.reasons)


def test_fallback_path_needs_concurrency_where_cpus_allow() -> None:
    result = run("counter", threads=2, duration=0.1, path="fallback")
    assert result.verdict == "ok", result.describe()
    assert result.details["distinct_cpus"] >= min(2, len(os.sched_getaffinity(0)))


def _pinned(code: str) -> Any:
    """Run ``code`` in a Python pinned to one CPU; return the JSON it printed last."""
    script = "import os\nos.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n" + code
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "chaos", ["Chaos.none()", "Chaos(affinity_hz=500)"], ids=["none", "affinity"]
)
@pytest.mark.parametrize("path", ["rseq", "fallback"])
def test_one_allowed_cpu_waives_migration_and_concurrency(chaos: str, path: str) -> None:
    """On one CPU nothing can migrate or run in parallel: those rules are waived;
    aborts (preemption between two threads on the CPU) are still required."""
    code = textwrap.dedent(
        f"""
        import json
        from pytest_rseq import Chaos, run
        r = run("counter", threads=2, duration=0.2, chaos={chaos}, path={path!r})
        print(json.dumps([r.verdict, r.migrations, r.aborts, r.reasons]))
        """
    )
    verdict, migrations, aborts, reasons = _pinned(code)
    assert verdict == "ok", reasons
    assert migrations == 0
    assert (aborts > 0) == (path == "rseq")


@TWO_CPUS
def test_both_path_judges_the_fallback_half_by_concurrency() -> None:
    result = run("counter", duration=0.05, path="both")
    assert result.verdict == "ok", result.describe()
    assert "fallback" in result.details and result.details["fallback"]["distinct_cpus"] >= 2


def test_evidence_cap_option_parses_repeats_and_reaches_run() -> None:
    from pytest_rseq.plugin import options

    assert options.PARSERS["evidence_cap"]("20", "--rseq-evidence-cap") == 20.0
    with pytest.raises(pytest.UsageError, match=r"--rseq-evidence-cap: invalid value '0\.5'"):
        options.PARSERS["evidence_cap"]("0.5", "--rseq-evidence-cap")
    settings = options.Settings(evidence_cap=20.0)
    assert "--rseq-evidence-cap=20.0" in options.as_flags(settings, 1)
    assert settings.run_defaults() == {"evidence_cap": 20.0}


def test_default_cap_is_ten_times_the_duration_and_at_least_one_second() -> None:
    from pytest_rseq.engine.spec import RunSpec

    def cap(duration: float, given: float | None = None) -> float:
        spec = RunSpec.build(
            "counter",
            threads=1,
            duration=duration,
            seed=1,
            evidence_cap=given,
        )
        return spec.resolved_evidence_cap

    assert cap(0.3) == 10.0 and cap(0.02) == pytest.approx(50.0) and cap(0.02, 4) == 4.0
    assert (
        RunSpec.build(
            "counter",
            threads=1,
            duration=1,
            seed=1,
        ).chaos
        == Chaos.default()
    )


def test_only_a_clean_fallback_half_without_evidence_is_run_again() -> None:
    """path="both": the fallback half is repeated (same budgets) only when it was clean
    and lacked evidence; a half that lost counts, broke an invariant or failed is kept."""
    from pytest_rseq.engine.driver import _only_evidence_missing

    clean = {"evidence_missing": 128, "error": None, "observed": 10, "expected": 10,
             "invariant_violations": 0, "fork_errors": 0}  # fmt: skip
    assert _only_evidence_missing(clean)
    assert not _only_evidence_missing({**clean, "evidence_missing": 0})
    assert not _only_evidence_missing({**clean, "observed": 9})
    assert not _only_evidence_missing({**clean, "invariant_violations": 1})
    assert not _only_evidence_missing({**clean, "error": "op returned -5"})
    assert not _only_evidence_missing({**clean, "fork_errors": 1})


def test_both_reports_how_many_fallback_halves_ran() -> None:
    result = run("counter", threads=2, duration=0.05, path="both")
    assert result.ok, result.describe()
    assert 1 <= result.details["fallback"]["attempts"] <= 3


def test_fallback_half_cut_by_its_time_limit_is_an_error_not_a_bug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fallback half that its hang limit ends before it has done the rseq half's
    ops has an unequal total for a reason that is not the code's: an error naming
    the unfinished ops, never ``bug`` (seen under emulation on a loaded machine)."""
    from pytest_rseq.engine import driver

    monkeypatch.setattr(driver, "fallback_deadline", lambda first_half_s: 0.001)
    result = run("counter", threads=2, duration=0.1, path="both", isolate=False, seed=3)
    assert result.verdict == "error", result.describe()
    assert "ops not done" in result.describe(), result.describe()
    assert result.observed == result.expected, result.describe()  # the rseq half is exact
