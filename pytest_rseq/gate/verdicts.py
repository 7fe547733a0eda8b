"""Running and judging the gate's scenarios, and the overall verdict with its exit code."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..engine.result import StressResult
from ..engine.spec import SEED_MAX
from ..errors import CapabilityMissing, RseqError
from .outcome import (
    EXIT_COULD_NOT_TEST,
    EXIT_FAIL,
    EXIT_PASS,
    FAIL,
    NA,
    NOT_TESTED,
    OFF,
    PASS,
    SKIP,
    VERDICTS,
    Outcome,
)
from .suite import FULL_DURATION_S, QUICK_DURATION_S, Scenario, scenarios


def _metric(scenario: Scenario, result: StressResult, name: str) -> tuple[str, int]:
    """A proof counter of ``result`` and how to name it; an injector's own counter counts
    its effect (``churn``: the threads started past the first of each slot)."""
    inj = scenario.injector
    if inj is not None and name == inj.counter:
        label = inj.name if inj.baseline_threads else name
        return label, inj.effect(result.counters, result.threads)
    return name, int(result.counters.get(name, 0))


CANARY_RUNS = 3
"""Runs a canary that loses counts gets before the gate calls it MISSED. Its loss needs
the workers on the CPU at the right moments (a migration inside the stale-cpu canary's
window): on a loaded machine a short run can miss it (about 1 run in 10 at 0.25 s with
load 12 on 2 CPUs). A gate that is blind to the bug misses it in every run."""


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
    metrics = [_metric(scenario, result, p) for p in scenario.proof]
    missing = [label for label, value in metrics if value <= 0]
    if missing:
        return FAIL, f"no evidence: {', '.join(missing)} = 0, the perturbation had no effect"
    proof = ", ".join(f"{label} {value:,}" for label, value in metrics)
    return PASS, f"{result.observed:,} counts agree" + (f"; {proof}" if proof else "")


def run_scenario(
    scenario: Scenario, fp: dict[str, Any], *, duration: float, seed: int | None
) -> Outcome:
    """Run one scenario and judge it (never raises for what the machine cannot do)."""
    from ..engine.driver import MM_CID_WORKLOADS
    from ..engine.runner import run

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
    attempts = CANARY_RUNS if scenario.expect == "lost" else 1
    for attempt in range(1, attempts + 1):
        run_seed = None if seed is None else (seed + attempt - 1) % (SEED_MAX + 1)
        try:
            result = run(scenario.workload, duration=duration, seed=run_seed, **scenario.run_args)
        except CapabilityMissing as exc:
            return done(NOT_TESTED if scenario.extra else SKIP, f"capability missing: {exc}")
        except (RseqError, ValueError, OSError) as exc:
            return done(FAIL, f"{type(exc).__name__}: {exc}")
        verdict, detail = judge(scenario, result, rseq)
        if verdict == PASS or result.error or result.crash:
            break
    if attempt > 1:
        detail += f" (run {attempt} of at most {attempts})"
    return done(verdict, detail, result)


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
