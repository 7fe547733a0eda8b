"""The environment gate's scenario suite and its verdicts (``python -m pytest_rseq``).

Each scenario is one isolated stress run (or, for the after-start seccomp
case, one small child process) with an expectation. A scenario passes only
with evidence: the oracle agrees, and the perturbation it is about shows an
effect (signals delivered, CPUs changed, aborts seen). The canaries are
broken on purpose: catching them is what proves the gate can see a bug.

The gate fails closed. Verdicts per scenario are ``PASS``, ``FAIL``,
``SKIP`` (could not test here, with the reason), ``NOT TESTED`` (an extra
that needs a privilege or tool this host does not give: cpuset shifts and
hotplug need root, the perf cross-check needs a readable tracefs and perf)
and ``OFF`` (an opt-in scenario that was not asked for). Overall: any
``FAIL`` -> exit 1; else any ``SKIP``, or a ``--require``d scenario that did
not pass -> exit 2 (could not test); else exit 0. A skip never becomes a
pass, and a ``NOT TESTED`` extra is listed with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine.chaos import Chaos
from ..engine.injectors import INJECTORS, Injector
from .checks import perf_ip_fixup_check, seccomp_after_start_check

QUICK_DURATION_S = 0.25
FULL_DURATION_S = 1.0


@dataclass(frozen=True)
class Scenario:
    """One gate scenario.

    Args:
        name: ``group/name``, unique.
        what: one line saying what it shows.
        workload: the built-in workload.
        run_args: keyword arguments of ``run()`` besides workload and duration.
        expect: ``"ok"`` (oracle agrees, on the rseq path unless rseq is
            unavailable), ``"fallback"`` (oracle agrees on the fallback path),
            ``"lost"`` or ``"SIGSEGV"`` (a canary: counts lost, or that crash).
        proof: result counters that must be > 0 for the run to be evidence.
        opt_in: the gate flag that turns the scenario on (off by default).
        check: a custom check instead of a stress run (returns verdict, detail).
        min_cpus: allowed CPUs the scenario needs to show anything (else SKIP).
        injector: the injector an ``injector/`` scenario shows (from the registry).
        extra: needs what many hosts do not give (root, perf): a missing
            capability is ``NOT TESTED`` (does not change the exit code unless
            ``--require``d) instead of ``SKIP``.
    """

    name: str
    what: str
    workload: str = "counter"
    run_args: dict[str, Any] = field(default_factory=dict)
    expect: str = "ok"
    proof: tuple[str, ...] = ()
    opt_in: str | None = None
    check: Callable[[dict[str, Any]], tuple[str, str]] | None = None
    min_cpus: int = 1
    extra: bool = False
    injector: Injector | None = None

    @property
    def group(self) -> str:
        """The part of the name before the slash."""
        return self.name.split("/", 1)[0]


def _injector_scenario(inj: Injector, threads: int) -> Scenario:
    """The scenario that shows ``inj`` has an effect here (its registry entry says how)."""
    chaos = Chaos(**{inj.field: inj.probe_hz}, cs_delay=inj.cs_delay)
    return Scenario(
        f"injector/{inj.name}",
        f"{inj.name} chaos at {inj.probe_hz:g}/s",
        run_args={"threads": threads, "chaos": chaos},
        proof=inj.proof,
        injector=inj,
        opt_in="--allow-hotplug" if inj.opt_in else None,
        extra=inj.root_only,
    )


def _registration_scenarios(cpus: int) -> list[Scenario]:
    """Each registration mode, and rseq blocked after start."""
    return [
        Scenario("registration/auto", "rseq as the process has it", run_args={"threads": cpus}),
        Scenario("registration/glibc", "glibc owns the area", run_args={"registration": "glibc"}),
        Scenario("registration/own", "glibc's off, our own area", run_args={"registration": "own"}),
        Scenario(
            "registration/blocked-enosys",
            "seccomp before exec, ENOSYS",
            run_args={"registration": "blocked-enosys"},
            expect="fallback",
        ),
        Scenario(
            "registration/blocked-eperm",
            "seccomp before exec, EPERM",
            run_args={"registration": "blocked-eperm"},
            expect="fallback",
        ),
        *[
            Scenario(
                f"seccomp/after-start-{errno_name.lower()}" + ("-own" if reg == "own" else ""),
                f"{errno_name} filter after start, new thread"
                + (" (glibc's off)" if reg == "own" else ""),
                check=seccomp_after_start_check(errno_name, reg),
            )
            for errno_name, reg in (("ENOSYS", "auto"), ("EPERM", "auto"), ("ENOSYS", "own"))
        ],
    ]


def _perturbation_scenarios(over: int, duration: float, seed: int | None) -> list[Scenario]:
    """Aborts by preemption, each injector, the perf cross-check."""
    return [
        Scenario(
            "abort/preemption",
            "oversubscribed: preemption aborts",
            run_args={"threads": over, "chaos": Chaos(cs_delay=64)},
            proof=("aborts",),
        ),
        *[_injector_scenario(inj, over) for inj in INJECTORS],
        Scenario(
            "perf/ip-fixup",
            "kernel rseq_ip_fixup count == aborts",
            check=perf_ip_fixup_check(over, duration, seed),
            extra=True,
        ),
    ]


def _path_scenarios() -> list[Scenario]:
    """The fallback path, and both paths on one schedule."""
    return [
        Scenario(
            "path/fallback",
            "fallback path under default chaos",
            run_args={"path": "fallback", "chaos": Chaos.default()},
            expect="fallback",
        ),
        Scenario(
            "path/both-counter",
            "same schedule on both paths",
            run_args={"path": "both", "chaos": Chaos.default()},
        ),
        Scenario(
            "path/both-mm_cid",
            "mm_cid shards on both paths",
            workload="counter_mm_cid",
            run_args={"path": "both", "chaos": Chaos.default()},
        ),
    ]


def _invariant_scenarios(over: int) -> list[Scenario]:
    """The rseq-area invariants under migration and churn."""
    return [
        Scenario(
            "invariants/migration",
            "area invariants under migration",
            run_args={"threads": over, "chaos": Chaos(affinity_hz=1000)},
            proof=("invariant_samples", "affinity_changes"),
        ),
        Scenario(
            "invariants/mm_cid",
            "mm_cid below possible CPUs",
            workload="counter_mm_cid",
            run_args={"threads": over, "chaos": Chaos(churn_hz=500)},
            proof=("invariant_samples",),
        ),
    ]


def _canary_scenarios(over: int) -> list[Scenario]:
    """The broken-on-purpose workloads: catching them proves the gate sees bugs."""
    return [
        Scenario(
            "canary/racy",
            "per-CPU add without rseq: lost",
            workload="canary_racy",
            run_args={"threads": over},
            expect="lost",
        ),
        Scenario(
            "canary/racy-default-chaos",
            "Chaos.default() catches it",
            workload="canary_racy",
            run_args={"chaos": Chaos.default()},
            expect="lost",
        ),
        Scenario(
            "canary/exit-loss",
            "per-thread remainder dropped at thread exit: lost",
            workload="canary_exit_loss",
            run_args={"chaos": Chaos.default()},
            expect="lost",
        ),
        Scenario(
            "canary/stale-cpu",
            "cpu read before the section, not compared in it: lost",
            workload="canary_stale_cpu",
            run_args={"chaos": Chaos.default()},
            expect="lost",
            min_cpus=2,  # only a migration shows it
        ),
        Scenario(
            "canary/bad-signature",
            "wrong abort signature: SIGSEGV",
            workload="canary_bad_signature",
            run_args={"threads": over, "chaos": Chaos(cs_delay=64)},
            expect="SIGSEGV",
        ),
    ]


def scenarios(cpus: int, duration: float = 1.0, seed: int | None = None) -> list[Scenario]:
    """The whole suite, in the order it runs.

    ``cpus``: CPUs this process may use; ``duration`` and ``seed`` reach the
    checks that start their own runs.
    """
    over = max(2, 2 * cpus)
    return [
        *_registration_scenarios(cpus),
        *_perturbation_scenarios(over, duration, seed),
        *_path_scenarios(),
        *_invariant_scenarios(over),
        *_canary_scenarios(over),
    ]
