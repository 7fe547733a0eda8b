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

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import perf
from .chaos import Chaos
from .errors import CapabilityMissing, RseqError
from .result import StressResult

EXIT_PASS, EXIT_FAIL, EXIT_COULD_NOT_TEST = 0, 1, 2
PASS, FAIL, SKIP, OFF = "PASS", "FAIL", "SKIP", "OFF"
NOT_TESTED = "NOT TESTED"
NA = "N/A"
"""Not applicable on this kernel (e.g. mm_cid before Linux 6.3): a result, not a skip."""
VERDICTS = (PASS, FAIL, SKIP, NOT_TESTED, OFF, NA)
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

    @property
    def group(self) -> str:
        """The part of the name before the slash."""
        return self.name.split("/", 1)[0]


@dataclass
class Outcome:
    """The verdict of one scenario, with the run's metrics when there was a run."""

    name: str
    what: str
    verdict: str
    detail: str
    seconds: float = 0.0
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "name": self.name,
            "what": self.what,
            "verdict": self.verdict,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
            "result": self.result,
        }


def seccomp_after_start_check(errno_name: str, registration: str) -> Callable[..., Any]:
    """A check: a seccomp filter blocking rseq installed after start, then a new thread.

    With glibc owning the area (``registration="auto"``), glibc must abort the
    new thread's start ("rseq registration failed", SIGABRT): the field failure
    the gate shows and must detect. A glibc that starts the thread without rseq
    instead is reported as such. With glibc's registration off (``"own"``) the
    thread must start. Anything else fails.
    """

    def check(fp: dict[str, Any]) -> tuple[str, str]:
        from .child_process import seccomp_after_start

        if registration == "auto" and fp.get("owner") != "glibc":
            return SKIP, f"glibc does not register rseq here (owner {fp.get('owner')})"
        if not fp.get("rseq_available"):
            return SKIP, "rseq unavailable: there is no registration to break"
        got = seccomp_after_start(errno_name, registration)
        if got.outcome == "abort" and registration == "auto":
            if got.signal == "SIGABRT" and got.glibc_message:
                return PASS, "the new thread's start aborted (SIGABRT: rseq registration failed)"
            return FAIL, f"died with {got.signal}, not glibc's SIGABRT: {got.stderr[-200:]!r}"
        if got.outcome == "survived":
            if registration == "own":
                return PASS, "glibc's registration off: the new thread started without rseq"
            return PASS, "glibc started the new thread without rseq (no abort)"
        return FAIL, f"unexpected outcome {got.outcome} ({got.signal}): {got.stderr[-200:]!r}"

    return check


def perf_ip_fixup_check(threads: int, duration: float, seed: int | None) -> Callable[..., Any]:
    """A check: the kernel's ``rseq:rseq_ip_fixup`` count equals the aborts the handlers saw.

    Runs a signal storm with widened sections under ``perf stat``; needs perf and a
    readable tracefs (root), else ``NOT TESTED`` with the reason.
    """

    def check(fp: dict[str, Any]) -> tuple[str, str]:
        from .runner import run

        if not fp.get("rseq_available"):
            return SKIP, "rseq unavailable: no aborts to count"
        with perf.requested():
            status = perf.perf_status()
            if not status["available"]:
                return NOT_TESTED, f"perf cross-check not available: {status['reason']}"
            chaos = Chaos(signals_hz=5000, cs_delay=64)
            result = run("counter", threads=threads, duration=duration, chaos=chaos, seed=seed)
        got = result.details.get("perf") or {}
        if not result.ok:
            return FAIL, (result.reasons or ["the oracle disagreed"])[0]
        if not got.get("available"):
            return FAIL, f"perf ran but counted nothing: {got.get('reason')}"
        if got["fixups"] != result.aborts:
            return FAIL, f"kernel fixups {got['fixups']:,} != handler aborts {result.aborts:,}"
        if result.aborts <= 0:
            return FAIL, "no evidence: no aborts under the signal storm"
        return PASS, f"kernel fixups {got['fixups']:,} == handler aborts {result.aborts:,}"

    return check


def scenarios(cpus: int, duration: float = 1.0, seed: int | None = None) -> list[Scenario]:
    """The whole suite, in the order it runs.

    ``cpus``: CPUs this process may use; ``duration`` and ``seed`` reach the
    checks that start their own runs.
    """
    over = max(2, 2 * cpus)
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
        Scenario(
            "abort/preemption",
            "oversubscribed: preemption aborts",
            run_args={"threads": over, "chaos": Chaos(cs_delay=64)},
            proof=("aborts",),
        ),
        *[
            Scenario(
                f"injector/{name}",
                f"{name} chaos at {rate:g}/s",
                run_args={"threads": over, "chaos": Chaos(**{f"{name}_hz": rate, **extra})},
                proof=proof,
                extra=name in ROOT_ONLY_INJECTORS,
            )
            for name, rate, extra, proof in INJECTORS
        ],
        Scenario(
            "injector/hotplug",
            "CPU offline/online at 2/s",
            run_args={"threads": over, "chaos": Chaos(hotplug_hz=2)},
            opt_in="--allow-hotplug",
            extra=True,
        ),
        Scenario(
            "perf/ip-fixup",
            "kernel rseq_ip_fixup count == aborts",
            check=perf_ip_fixup_check(over, duration, seed),
            extra=True,
        ),
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


ROOT_ONLY_INJECTORS = ("cpuset",)
"""Injectors (besides the opt-in hotplug) that need root: ``NOT TESTED`` without it."""
INJECTORS: list[tuple[str, float, dict[str, Any], tuple[str, ...]]] = [
    ("signals", 5000, {"cs_delay": 64}, ("signals_delivered", "aborts")),
    ("affinity", 1000, {}, ("affinity_changes", "migrations")),
    ("cpuset", 500, {}, ("cpuset_shifts",)),
    ("churn", 500, {}, ("churn",)),
    ("fork", 50, {}, ("forks",)),
    ("membarrier", 5000, {"cs_delay": 64}, ("membarriers", "aborts")),
]


def _metric(result: StressResult, name: str) -> int:
    if name == "churn":
        return result.threads_started - result.threads
    if name == "invariant_samples":
        return int(result.details.get("invariant_samples", 0))
    return int(getattr(result, name))


def judge(scenario: Scenario, result: StressResult, rseq_available: bool) -> tuple[str, str]:
    """The verdict and a one-line reason for ``scenario``'s ``result``."""
    first = result.reasons[0] if result.reasons else ""
    if scenario.expect == "lost":
        if result.error or result.crash:
            return FAIL, f"canary run broke instead: {result.error or result.crash}"
        if result.lost > 0:
            return PASS, f"caught: lost {result.lost:,} of {result.expected:,} counts"
        return FAIL, "canary MISSED: no count lost, so the gate cannot see this bug"
    if scenario.expect == "SIGSEGV":
        if result.crash == "SIGSEGV":
            return PASS, "caught: the wrong signature killed the process with SIGSEGV"
        return FAIL, f"canary MISSED: expected SIGSEGV, got crash={result.crash} ok={result.ok}"
    if not result.ok:
        return FAIL, first or "the oracle disagreed"
    if scenario.expect == "fallback":
        if result.path not in ("fallback",):
            return FAIL, f"expected the fallback path, ran on {result.path}"
        return PASS, f"fallback path ok: {result.observed:,} counts, none lost"
    if not rseq_available or result.path == "fallback":
        return SKIP, "rseq unavailable: ran on the fallback path only (which was ok)"
    missing = [p for p in scenario.proof if _metric(result, p) <= 0]
    if missing:
        return FAIL, f"no evidence: {', '.join(missing)} = 0, the perturbation had no effect"
    proof = ", ".join(f"{p} {_metric(result, p):,}" for p in scenario.proof)
    return PASS, f"{result.observed:,} counts agree" + (f"; {proof}" if proof else "")


def run_scenario(
    scenario: Scenario, fp: dict[str, Any], *, duration: float, seed: int | None
) -> Outcome:
    """Run one scenario and judge it (never raises for what the machine cannot do)."""
    from ._child import MM_CID_WORKLOADS
    from .runner import run

    start = time.monotonic()

    def done(verdict: str, detail: str, result: StressResult | None = None) -> Outcome:
        data = result.to_dict() if result is not None else None
        if data is not None:
            data.pop("details", None)
        return Outcome(
            scenario.name, scenario.what, verdict, detail, time.monotonic() - start, data
        )

    rseq = bool(fp.get("rseq_available"))
    if scenario.check is not None:
        try:
            return done(*scenario.check(fp))
        except CapabilityMissing as exc:
            return done(NOT_TESTED if scenario.extra else SKIP, f"capability missing: {exc}")
        except (RseqError, OSError, subprocess.SubprocessError) as exc:
            return done(FAIL, f"{type(exc).__name__}: {exc}")
    if len(os.sched_getaffinity(0)) < scenario.min_cpus:
        return done(SKIP, f"needs {scenario.min_cpus} allowed CPUs")
    if scenario.workload in MM_CID_WORKLOADS and rseq and not fp.get("mm_cid_usable", True):
        return done(NA, not_applicable_mm_cid(fp))
    if scenario.expect in ("lost", "SIGSEGV") and not rseq:
        return done(SKIP, "rseq unavailable: canaries need the rseq path to show their bug")
    try:
        result = run(scenario.workload, duration=duration, seed=seed, **scenario.run_args)
    except CapabilityMissing as exc:
        return done(NOT_TESTED if scenario.extra else SKIP, f"capability missing: {exc}")
    except (RseqError, ValueError, OSError) as exc:
        return done(FAIL, f"{type(exc).__name__}: {exc}")
    return done(*judge(scenario, result, rseq), result)


def not_applicable_mm_cid(fp: dict[str, Any]) -> str:
    """Why an mm_cid scenario does not apply: the kernel's rseq area has no mm_cid (< 6.3)."""
    size = int(fp.get("feature_size") or 0)
    # Kernels before 6.3 give no AT_RSEQ_FEATURE_SIZE: their area is the original 20 bytes.
    shown = f"{size}" if size else "20 (no AT_RSEQ_FEATURE_SIZE)"
    return f"kernel feature size {shown}: no mm_cid"


def resolve_required(names: Sequence[str], cpus: int) -> list[str]:
    """The scenario names that ``--require`` values name.

    A value is a scenario (``injector/cpuset``), the part after its slash
    (``cpuset``) or a group (``perf``).

    Raises:
        ValueError: a value names no scenario (the message lists the valid ones).
    """
    known = [s.name for s in scenarios(cpus)]
    chosen: list[str] = []
    for name in names:
        hits = [k for k in known if name in (k, k.split("/", 1)[0], k.split("/", 1)[1])]
        if not hits:
            raise ValueError(
                f"--require: no scenario named {name!r} (scenarios: {', '.join(known)})"
            )
        chosen += [h for h in hits if h not in chosen]
    return chosen


def overall(
    outcomes: Sequence[Outcome], rseq_available: bool = True, required: Sequence[str] = ()
) -> tuple[int, str]:
    """The exit code and the one-line overall verdict. Skips never count as passes.

    Without rseq (blocked, emulator, old kernel) nothing about rseq could be
    tested, so the best outcome is "could not test" (exit 2), with the
    fallback scenarios' passes said explicitly. ``NOT TESTED`` extras (root
    or perf missing) are named in the verdict; they make it exit 2 only when
    ``required`` (scenario names) lists them.
    """
    count = {v: sum(o.verdict == v for o in outcomes) for v in VERDICTS}
    tally = f"{count[PASS]} passed, {count[FAIL]} failed, {count[SKIP]} skipped"
    if count[NOT_TESTED]:
        untested = [o.name for o in outcomes if o.verdict == NOT_TESTED]
        tally += f", {count[NOT_TESTED]} not tested ({', '.join(untested)})"
    if count[OFF]:
        tally += f", {count[OFF]} off"
    if count[NA]:
        tally += f", {count[NA]} n/a on this kernel"
    if count[FAIL]:
        broken = [o.name for o in outcomes if o.verdict == FAIL and o.name.startswith("canary/")]
        why = (
            f" (a canary was not caught, so the gate itself is broken: {', '.join(broken)})"
            if broken
            else ""
        )
        return EXIT_FAIL, f"FAIL{why}: {tally}"
    if not rseq_available:
        return EXIT_COULD_NOT_TEST, (
            f"COULD NOT TEST: rseq is unavailable here; the fallback path passed in "
            f"{count[PASS]} scenario(s): {tally}"
        )
    verdicts = {o.name: o.verdict for o in outcomes}
    unmet = [f"{n} ({verdicts.get(n, 'not run')})" for n in required if verdicts.get(n) != PASS]
    if unmet:
        return EXIT_COULD_NOT_TEST, (
            f"COULD NOT TEST what --require asks for: {', '.join(unmet)}: {tally}"
        )
    if count[SKIP] or not count[PASS]:
        return EXIT_COULD_NOT_TEST, f"COULD NOT TEST everything: {tally}"
    return EXIT_PASS, f"PASS: {tally}"


def run_gate(
    *,
    quick: bool,
    allow: Sequence[str] = (),
    only: Sequence[str] = (),
    seed: int | None = None,
    fingerprint: dict[str, Any],
    on_outcome: Callable[[Outcome], None] = lambda o: None,
) -> list[Outcome]:
    """Run the suite (or the scenarios whose name contains one of ``only``)."""
    duration = QUICK_DURATION_S if quick else FULL_DURATION_S
    cpus = len(os.sched_getaffinity(0))
    outcomes = []
    for scenario in scenarios(cpus, duration, seed):
        if only and not any(o in scenario.name for o in only):
            continue
        if scenario.opt_in and scenario.opt_in not in allow:
            outcome = Outcome(scenario.name, scenario.what, OFF, f"opt-in: {scenario.opt_in}")
        else:
            outcome = run_scenario(scenario, fingerprint, duration=duration, seed=seed)
        on_outcome(outcome)
        outcomes.append(outcome)
    return outcomes
