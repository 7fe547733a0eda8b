"""Each injector alone does something; Chaos.default() and migration catch canary_racy."""

from __future__ import annotations

import os

import pytest

from pytest_rseq import Chaos, run
from pytest_rseq.host.capabilities import cgroup_info

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
        # evidence_cap=1: the canary never aborts, so the extension would only add time.
        result = run(
            "canary_racy", duration=0.3, chaos=Chaos.default(), seed=1000 + i, evidence_cap=1
        )
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


def test_a_signal_storm_beyond_what_workers_can_take_still_stops() -> None:
    """At the top rate Chaos accepts, per-thread timers could starve a worker
    forever; the harness must still stop at the deadline and report."""
    result = run("counter", threads=2, duration=0.3, chaos=Chaos(signals_hz=1_000_000), seed=5)
    assert result.error is None, result.describe()
    result.assert_consistent()
    assert result.signals_delivered > 0
