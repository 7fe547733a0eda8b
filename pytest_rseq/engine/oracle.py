"""The oracle: turns a child's raw numbers into a :class:`StressResult` and a verdict.

A run's verdict is ``bug`` (lost or invented counts, a crash, a broken
rseq-area invariant, a failed fork child), ``error`` (it stopped on an error
that shows no bug, or the registration mode did not do what it promised),
``no-evidence`` (nothing wrong seen, but the native core's evidence rules,
``PRSEQ_EVIDENCE_*``, were not met) or ``ok``.
"""

from __future__ import annotations

import errno
from typing import Any

from ..host.prep import HostPrep
from .chaos import Chaos
from .counters import Counters
from .evidence import evidence_reasons, missing_evidence
from .result import COUNTER_ATTRIBUTES, StressResult
from .spec import DEFAULT_EVIDENCE_CAP, RunSpec

VIOLATIONS = {
    1: "cpu_id_start != cpu_id outside a critical section",
    2: "getcpu() (the syscall) != cpu_id",
    3: "cpu_id is not a possible CPU",
    4: "mm_cid is not below min(possible CPUs, threads of the process)",
    5: "cpu_id is outside the thread's settled affinity mask",
    6: "node_id is not the NUMA node of cpu_id",
}


def aborts_by_cause(run: dict[str, Any]) -> dict[str, int]:
    """The run's aborts split by cause (signal and membarrier are upper bounds)."""
    signal = int(run.get("aborts_signal", 0))
    membarrier = int(run.get("aborts_membarrier", 0))
    return {
        "signal": signal,
        "membarrier": membarrier,
        "preemption": max(0, int(run.get("aborts", 0)) - signal - membarrier),
    }


def repro_line(spec: RunSpec) -> str:
    """Return a shell command that repeats the run with the same seed."""
    wl = spec.workload
    target = repr(wl.name)
    if wl.library:
        options = [repr(wl.library), repr(wl.symbol)]
        if wl.preload is not None:
            options.append(f"preload={wl.preload!r}")
        if wl.registers_itself:
            options.append("registers_itself=True")
        target = f"Workload.from_library({', '.join(options)})"
    base = Chaos().to_dict()
    chaos = ", ".join(f"{k}={v!r}" for k, v in spec.chaos.to_dict().items() if v != base[k])
    args = [
        target,
        f"threads={spec.threads}",
        f"duration={spec.duration!r}",
        f"chaos=Chaos({chaos})",
        f"path={spec.path!r}",
        f"registration={spec.registration!r}",
        f"seed={spec.seed}",
    ]
    if spec.ops_per_thread:
        args.insert(2, f"ops_per_thread={spec.ops_per_thread}")
    if not spec.isolate:
        args.append("isolate=False")
    if spec.resolved_evidence_cap != DEFAULT_EVIDENCE_CAP:
        args.append(f"evidence_cap={spec.resolved_evidence_cap!r}")
    code = f"from pytest_rseq import *; run({', '.join(args)}).assert_consistent()"
    return f'python -c "{code}"'


def _violation_text(run: dict[str, Any]) -> str:
    kind, cpu_id, start, other = run.get("first_violation", [0, 0, 0, 0])
    what = VIOLATIONS.get(kind, f"kind {kind}")
    return (
        f"{run['invariant_violations']} rseq-area invariant violation(s) in "
        f"{run['invariant_samples']} samples; first: {what} "
        f"(cpu_id={cpu_id}, cpu_id_start={start}, other={other})"
    )


Findings = list[tuple[str, str]]
"""(kind, reason) pairs in the order found; kind is ``crash`` (a bug that stands
even when the run stopped on an error), ``bug``, ``error`` or ``no-evidence``."""


def _fork_bug(run: dict[str, Any]) -> bool:
    """A fork child lost counts or died: the workload's bug, reported as the run's error."""
    return bool(run.get("fork_errors")) and run.get("errno") == errno.EPROTO


def _run_findings(label: str, run: dict[str, Any]) -> Findings:
    """The run's error, lost counts, broken invariants and failed fork children."""
    found: Findings = []
    if run.get("error"):
        found.append(("crash" if _fork_bug(run) else "error", f"{label}: {run['error']}"))
    if run["observed"] != run["expected"]:
        found.append(
            (
                "bug",
                f"{label}: observed {run['observed']} != expected {run['expected']} "
                f"(lost {run['expected'] - run['observed']})",
            )
        )
    if run["invariant_violations"]:
        found.append(("bug", f"{label}: {_violation_text(run)}"))
    if run.get("fork_errors") and not run.get("error"):
        found.append(("crash", f"{label}: {run['fork_errors']} fork child(ren) failed or hung"))
    return found


def verdict_of(findings: Findings) -> str:
    """``bug`` > ``error`` > ``no-evidence`` > ``ok``. An error hides lost counts and
    broken invariants (the run stopped part-way), not a crash or a failed fork child."""
    kinds = {kind for kind, _ in findings}
    if "crash" in kinds:
        return "bug"
    for kind in ("error", "bug", "no-evidence"):
        if kind in kinds:
            return kind
    return "ok"


def _registration(spec: RunSpec, raw: dict[str, Any]) -> str:
    """The requested mode, or for ``auto`` who owns the process's area."""
    requested = spec.registration
    if requested != "auto":
        return requested
    return str((raw.get("abi") or {}).get("owner", "unknown"))


def _empty_run(path: str) -> dict[str, Any]:
    """Zero counters for a child that produced no result (it crashed or never ran)."""
    return {
        **Counters.zeros(),
        "per_cpu": [],
        "duration_s": 0.0,
        "error": None,
        "path": path,
        "owner": "unknown",
    }


def _raw_findings(raw: dict[str, Any], main: dict[str, Any] | None) -> Findings:
    """What the child process as a whole says: a crash, an error, a stop, a failed cleanup."""
    found: Findings = []
    crash = raw.get("crash")
    if main is not None and main["ops"] == 0 and not main.get("error") and not crash:
        found.append(
            (
                "no-evidence",
                f"no evidence ({main['path']}): no op completed: raise the duration "
                "or ops_per_thread",
            )
        )
    if crash:
        found.append(("crash", f"the stressed process died with {crash}"))
    if raw.get("error"):
        found.append(("error", str(raw["error"])))
    if raw.get("stopped"):
        found.append(("error", "the run was stopped (a stop request) before it finished"))
    found += [("error", f"cleanup: {p}") for p in raw.get("cleanup_errors", [])]
    return found


def _registration_findings(spec: RunSpec, runs: dict[str, Any], main: dict[str, Any]) -> Findings:
    """A registration mode that did not do what it promised."""
    requested = spec.registration
    if requested.startswith("blocked-") and main["path"] == "rseq":
        return [("error", f"registration={requested}: the seccomp filter did not block rseq")]
    if requested in ("glibc", "own") and runs.get("rseq") and main["path"] != "rseq":
        return [("error", f"registration={requested}: the workers ran on the fallback path")]
    return []


def _both_findings(
    spec: RunSpec, raw: dict[str, Any], main: dict[str, Any], details: dict[str, Any]
) -> Findings:
    """The fallback half of ``path="both"``: its own findings, and the totals compared."""
    fallback = raw.get("runs", {}).get("fallback")
    if fallback is None:
        return [("error", "both: the fallback run did not happen")]
    found = _run_findings("fallback", fallback)
    if not fallback.get("error"):
        found += [("no-evidence", r) for r in evidence_reasons(spec, fallback, "fallback")]
    details["fallback"] = {
        **Counters.of_run(fallback),
        "duration_s": fallback.get("duration_s"),
        "per_cpu": fallback.get("per_cpu"),
        "attempts": raw.get("fallback_attempts", 1),
    }
    unfinished = _unfinished_ops(main, fallback)
    if unfinished:
        # Its time limit (or a stop) ended the half: the totals cannot be compared.
        found.append(
            (
                "error",
                f"both: the fallback half ended after {fallback.get('duration_s', 0.0):.2f} s "
                f"with {unfinished} of the rseq half's {sum(main.get('slot_ops', []))} ops not "
                "done (its time limit, or a stop): the totals are not compared; the fallback "
                "path may hang, or the machine was too slow for this run",
            )
        )
    elif fallback["observed"] != main["observed"]:
        found.append(
            (
                "bug",
                f"both: rseq path total {main['observed']} != fallback path "
                f"total {fallback['observed']} for the same op budget",
            )
        )
    return found


def _unfinished_ops(main: dict[str, Any], fallback: dict[str, Any]) -> int:
    """Ops of the rseq half's per-slot budgets that the fallback half did not do."""
    budgets = main.get("slot_ops", [])
    done = fallback.get("slot_ops", [])
    return sum(max(0, b - (done[i] if i < len(done) else 0)) for i, b in enumerate(budgets))


def _details(
    spec: RunSpec, host: HostPrep, raw: dict[str, Any], main: dict[str, Any]
) -> dict[str, Any]:
    """The result's ``details``: the counters that are not attributes, and the rest."""
    counters = Counters.of_run(main)
    details: dict[str, Any] = {
        "abi": raw.get("abi"),
        "owner": main.get("owner"),
        "slot_ops": main.get("slot_ops", []),
        "first_violation": main.get("first_violation", [0, 0, 0, 0]),
        **{k: v for k, v in counters.items() if k not in COUNTER_ATTRIBUTES},
        "evidence_missing": missing_evidence(counters["evidence_missing"]),
        "evidence_cap": spec.resolved_evidence_cap,
        "stalled_s": float(main.get("stalled_s", 0.0)),
    }
    if host.cpuset:
        details["cpuset"] = dict(host.cpuset)
    perf = dict(raw.get("perf") or {"available": False, "reason": "in-process run"})
    if perf.get("available") and "fixups" in perf:
        # Fork children abort on their copies too; the kernel counts those.
        perf["aborts"] = main["aborts"]
        perf["difference"] = perf["fixups"] - main["aborts"]
    details["perf"] = perf
    if raw.get("stderr"):
        details["stderr"] = raw["stderr"]
    return details


def build_result(spec: RunSpec, host: HostPrep, raw: dict[str, Any]) -> StressResult:
    """Return the :class:`StressResult` for the raw output of one child."""
    runs = raw.get("runs", {})
    main = runs.get("rseq") or runs.get("fallback")
    crash = raw.get("crash")
    found = _raw_findings(raw, main)
    if main is None:
        main = _empty_run(spec.path)
        if not found:
            found.append(("error", "the child produced no result"))
    else:
        found += _run_findings(main["path"], main)
        if not main.get("error") and not crash:
            found += [("no-evidence", r) for r in evidence_reasons(spec, main, main["path"])]
    found += _registration_findings(spec, runs, main)
    details = _details(spec, host, raw, main)
    path = main["path"]
    if spec.path == "both" and "rseq" in runs:
        # "both" only when the first half really ran on rseq (blocked modes say fallback).
        path = "both" if main["path"] == "rseq" else "fallback"
        found += _both_findings(spec, raw, main, details)
    counters = Counters.of_run(main)
    verdict = verdict_of(found)
    return StressResult(
        ok=verdict == "ok",
        verdict=verdict,
        workload=spec.workload.name,
        path=path,
        registration=_registration(spec, raw),
        threads=spec.threads,
        **{name: counters[name] for name in COUNTER_ATTRIBUTES},
        per_cpu=list(main["per_cpu"]),
        aborts_by_cause=aborts_by_cause(main),
        crash=crash,
        seed=spec.seed,
        duration_s=float(main["duration_s"]),
        extended_s=float(main.get("extended_s", 0.0)),
        error=main.get("error") or raw.get("error"),
        reasons=[reason for _, reason in found],
        repro=repro_line(spec),
        details=details,
        counters=counters,
    )
