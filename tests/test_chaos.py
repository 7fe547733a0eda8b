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
    assert result.observed == result.expected, result.describe()
    assert result.signals_delivered > 0, result.describe()
    # Workers that spend their time in the handler seldom get into a section or run a
    # batch after a move: on a loaded machine the signal and migration evidence may be
    # missing at the cap (CI saw 651,707 signals and no signal abort). That is an
    # honest "no-evidence" verdict, not a hang; what must hold is the stop.
    assert set(result.details["evidence_missing"]) <= {"aborts", "migration", "signal"}, (
        result.describe()
    )
    assert result.verdict in ("ok", "no-evidence"), result.describe()


@TWO_CPUS
def test_affinity_flips_swap_workers_so_every_cpu_keeps_a_writer() -> None:
    """One worker per CPU: a flip of one worker to the other's CPU moves that one back
    (a swap), so the CPU left is never left without a writer."""
    cpus = len(os.sched_getaffinity(0))
    result = run("counter", threads=cpus, duration=0.3, chaos=Chaos(affinity_hz=500), seed=11)
    result.assert_consistent()
    swaps = result.details["affinity_swaps"]
    assert swaps > 0, result.describe()
    assert 2 * swaps <= result.affinity_changes  # each swap is two of the changes


@CPUSETS
@TWO_CPUS
def test_short_fallback_half_under_cpuset_shifts_earns_its_evidence() -> None:
    """The soak's false alarm: ``path="both"`` with rseq blocked and cpuset chaos, where the
    fallback half lasts a few milliseconds (its op budgets end it) and a shift may hold the
    workers to one CPU for all of it. The group starts each half with all its CPUs, every
    live worker is asked to move at once, and a move widens a one-CPU cpuset first."""
    for seed in range(12):
        result = run(
            "counter_mm_cid",
            threads=2,
            duration=0.028,
            chaos=Chaos(cpuset_hz=420, membarrier_hz=1053),
            path="both",
            registration="blocked-enosys",
            seed=1326115605605102603 + seed,
        )
        assert result.verdict == "ok", result.describe()


@TWO_CPUS
def test_every_run_has_an_aimed_swap_even_without_chaos() -> None:
    """With no injector at all, the harness still moves one worker in the middle of the run
    and a worker on its target CPU the other way (counted in ``evidence_moves``)."""
    result = run("counter", threads=2, duration=0.2, chaos=Chaos(), seed=5)
    result.assert_consistent()
    assert result.details["evidence_moves"] >= 1, result.describe()
    assert result.migrations >= 1
