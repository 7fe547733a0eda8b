"""Each injector alone does something; Chaos.default() and migration catch canary_racy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pytest_rseq import Chaos, run
from pytest_rseq.capabilities import cgroup_info
from pytest_rseq.oracle import coverage_reasons

TWO_CPUS = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="needs 2 allowed CPUs (migration between them)"
)
CPUSETS = pytest.mark.skipif(
    not cgroup_info()["cpuset_writable"], reason=str(cgroup_info()["cpuset_reason"])
)


def counter_run(chaos: Chaos, **kw: object):  # type: ignore[no-untyped-def]
    return run("counter", threads=2, duration=1.0, chaos=chaos, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("chaos", "counter"),
    [
        (Chaos(signals_hz=4000), "signals_delivered"),
        (Chaos(affinity_hz=1000), "affinity_changes"),
        (Chaos(churn_hz=200), "threads_started"),
        (Chaos(fork_hz=100), "forks"),
        (Chaos(membarrier_hz=20000), "membarriers"),
    ],
    ids=["signals", "affinity", "churn", "fork", "membarrier"],
)
def test_injector_alone_on_counter(chaos: Chaos, counter: str) -> None:
    result = counter_run(chaos)
    result.assert_consistent()
    value = getattr(result, counter)
    if counter == "threads_started":
        assert value > result.threads, result.describe()
    else:
        assert value > 0, result.describe()
    if counter == "membarriers":
        assert result.aborts > 0, result.describe()


@CPUSETS
def test_cpuset_alone_on_counter() -> None:
    result = counter_run(Chaos(cpuset_hz=500))
    result.assert_consistent()
    assert result.cpuset_shifts > 0
    assert result.migrations > 0
    assert result.details["cpuset"]["version"] in (1, 2)


def test_signals_with_cs_delay_abort_sections() -> None:
    result = counter_run(Chaos(signals_hz=4000, cs_delay=200))
    result.assert_consistent()
    assert result.signals_delivered > 0
    assert result.aborts > 0
    # Both halves of the storm fired: tgkill and per-thread timers.
    assert result.details["timer_signals"] > 0
    assert result.details["signals_sent"] > result.details["timer_signals"]


def test_default_catches_canary_racy_20_of_20() -> None:
    caught = 0
    for i in range(20):
        result = run("canary_racy", duration=0.3, chaos=Chaos.default(), seed=1000 + i)
        assert result.crash is None, result.describe()
        caught += result.observed != result.expected and not result.ok
    assert caught == 20


def test_default_mix_passes_on_counter() -> None:
    result = run("counter", duration=0.5, chaos=Chaos.default())
    result.assert_consistent()
    assert result.signals_delivered > 0 and result.affinity_changes > 0
    assert result.threads_started > result.threads


@TWO_CPUS
def test_affinity_only_catches_canary_racy_with_two_threads() -> None:
    result = run("canary_racy", threads=2, duration=0.5, chaos=Chaos(affinity_hz=1000))
    assert not result.ok
    assert result.lost > 0, result.describe()
    assert result.affinity_changes > 0


@TWO_CPUS
@CPUSETS
def test_cpuset_only_catches_canary_racy_with_two_threads() -> None:
    result = run("canary_racy", threads=2, duration=0.5, chaos=Chaos(cpuset_hz=1000))
    assert not result.ok
    assert result.lost > 0, result.describe()
    assert result.cpuset_shifts > 0


def test_same_seed_same_schedule_inputs() -> None:
    a = run("counter", threads=2, duration=0.2, chaos=Chaos(signals_hz=1000), seed=7)
    assert a.seed == 7
    assert "seed=7" in a.repro


# ---- the coverage guard -------------------------------------------------------


def test_affinity_without_migration_is_not_evidence() -> None:
    """With one allowed CPU, affinity changes succeed but move nobody: not evidence."""
    code = textwrap.dedent(
        """
        import json, os
        from pytest_rseq import Chaos, run
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        r = run("counter", threads=2, duration=0.3, chaos=Chaos(affinity_hz=500))
        print(json.dumps([r.ok, r.affinity_changes, r.migrations, r.reasons]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ok, changes, migrations, reasons = __import__("json").loads(out.stdout.splitlines()[-1])
    assert changes > 0 and migrations == 0
    assert not ok
    assert any("not evidence" in r and "migrated" in r for r in reasons)


def _run(**counters: int) -> dict[str, object]:
    base: dict[str, object] = {"path": "rseq", "aborts": 0, "migrations": 0, "threads_started": 2}
    base.update(counters)
    return base


@pytest.mark.parametrize(
    ("rate", "counter"),
    [
        ("signals_hz", "signals_delivered"),
        ("affinity_hz", "affinity_changes"),
        ("cpuset_hz", "cpuset_shifts"),
        ("fork_hz", "forks"),
        ("membarrier_hz", "membarriers"),
        ("hotplug_hz", "hotplug_events"),
    ],
)
def test_guard_flags_each_injector_without_effect(rate: str, counter: str) -> None:
    chaos = {rate: 100.0}
    reasons = coverage_reasons(chaos, 2, _run(aborts=5, migrations=5))
    assert any(rate in r and "not evidence" in r for r in reasons), reasons
    assert not any(
        rate in r for r in coverage_reasons(chaos, 2, _run(aborts=5, migrations=5, **{counter: 1}))
    )


def test_guard_flags_churn_without_replacement() -> None:
    assert coverage_reasons({"churn_hz": 10.0}, 2, _run(threads_started=2))
    assert not coverage_reasons({"churn_hz": 10.0}, 2, _run(threads_started=3))


def test_guard_wants_aborts_from_signals_with_cs_delay_and_membarrier() -> None:
    storm = {"signals_hz": 100.0, "cs_delay": 50}
    assert any("aborted no" in r for r in coverage_reasons(storm, 2, _run(signals_delivered=9)))
    assert not coverage_reasons(storm, 2, _run(signals_delivered=9, aborts=1))
    fence = {"membarrier_hz": 100.0}
    assert any("aborted no" in r for r in coverage_reasons(fence, 2, _run(membarriers=9)))
    # On the fallback path there are no sections to abort.
    assert not coverage_reasons(fence, 2, _run(membarriers=9, path="fallback"))


def test_guard_flags_failed_fork_children() -> None:
    reasons = coverage_reasons({"fork_hz": 10.0}, 2, _run(forks=3, fork_errors=1))
    assert any("fork child" in r for r in reasons)


def test_a_signal_storm_beyond_what_workers_can_take_still_stops() -> None:
    """At the top rate Chaos accepts, per-thread timers could starve a worker
    forever; the harness must still stop at the deadline and report."""
    result = run("counter", threads=2, duration=0.3, chaos=Chaos(signals_hz=1_000_000), seed=5)
    assert result.error is None, result.describe()
    result.assert_consistent()
    assert result.signals_delivered > 0
