"""The oracle: turns a child's raw numbers into a :class:`StressResult` and a verdict.

A run is ``ok`` only when the per-CPU total equals the fallback-path tally,
the stressed process neither crashed nor stopped on an error, no rseq-area
invariant broke, and the registration mode did what it promised.
"""

from __future__ import annotations

import errno
from typing import Any

from .result import StressResult

VIOLATIONS = {
    1: "cpu_id_start != cpu_id outside a critical section",
    2: "getcpu() (the syscall) != cpu_id",
    3: "cpu_id is not a possible CPU",
    4: "mm_cid is not below min(possible CPUs, threads of the process)",
    5: "cpu_id is outside the thread's settled affinity mask",
    6: "node_id is not the NUMA node of cpu_id",
}

# Injector rate field -> (result counter, what "no effect" means).
_EFFECTS = {
    "signals_hz": ("signals_delivered", "no signal was delivered"),
    "affinity_hz": ("affinity_changes", "no affinity change succeeded"),
    "cpuset_hz": ("cpuset_shifts", "no cpuset.cpus write succeeded"),
    "fork_hz": ("forks", "no fork child completed"),
    "membarrier_hz": ("membarriers", "no membarrier fence succeeded"),
    "hotplug_hz": ("hotplug_events", "no CPU went offline or online"),
}


def coverage_reasons(chaos: dict[str, Any], threads: int, run: dict[str, Any]) -> list[str]:
    """Why a run whose perturbations showed no effect is not evidence (empty: it is).

    Each requested injector must have done something; churn must have
    replaced at least one thread; affinity or cpuset shifts must have moved a
    worker; on the rseq path a signal storm with ``cs_delay`` and membarrier
    fences must have aborted sections.
    """
    reasons = []
    for rate, (counter, what) in _EFFECTS.items():
        if chaos.get(rate, 0) > 0 and not run.get(counter, 0):
            if rate == "cpuset_hz" and run.get("cpuset_errors"):
                what += (
                    f" ({run['cpuset_errors']} refused, last errno "
                    f"{errno.errorcode.get(run.get('cpuset_errno', 0), run.get('cpuset_errno'))})"
                )
            reasons.append(f"not evidence: {rate}={chaos[rate]:g} requested but {what}")
    if chaos.get("churn_hz", 0) > 0 and run.get("threads_started", 0) <= threads:
        reasons.append(
            f"not evidence: churn_hz={chaos['churn_hz']:g} requested but no worker thread "
            f"was replaced (threads_started={run.get('threads_started', 0)})"
        )
    moving = [r for r in ("affinity_hz", "cpuset_hz") if chaos.get(r, 0) > 0]
    if moving and not run.get("migrations", 0):
        text = f"not evidence: {', '.join(moving)} requested but no worker migrated"
        if chaos.get("cpuset_hz", 0) > 0:
            text += (
                f" (cpuset.cpus: {run.get('cpuset_shifts', 0)} writes, "
                f"{run.get('cpuset_errors', 0)} refused, last errno {run.get('cpuset_errno', 0)}, "
                f"last list {run.get('cpuset_last')!r})"
            )
        reasons.append(text)
    if run.get("path") == "rseq" and not run.get("aborts", 0):
        if chaos.get("signals_hz", 0) > 0 and chaos.get("cs_delay", 0) > 0:
            reasons.append("not evidence: a signal storm with cs_delay aborted no critical section")
        if chaos.get("membarrier_hz", 0) > 0:
            reasons.append("not evidence: membarrier fences aborted no critical section")
    if run.get("fork_errors", 0):
        reasons.append(f"{run['fork_errors']} fork child(ren) failed, hung or crashed")
    return reasons


def repro_line(spec: dict[str, Any]) -> str:
    """Return a shell command that repeats the run with the same seed."""
    wl = spec["workload"]
    target = repr(wl["name"])
    if wl["library"]:
        options = [repr(wl["library"]), repr(wl["symbol"])]
        if wl.get("preload") is not None:
            options.append(f"preload={wl['preload']!r}")
        if wl.get("registers_itself"):
            options.append("registers_itself=True")
        target = f"Workload.from_library({', '.join(options)})"
    chaos = ", ".join(
        f"{k}={v!r}" for k, v in spec["chaos"].items() if v != {"oversubscribe": 1.0}.get(k, 0)
    )
    args = [
        target,
        f"threads={spec['threads']}",
        f"duration={spec['duration']!r}",
        f"chaos=Chaos({chaos})",
        f"path={spec['path']!r}",
        f"registration={spec['registration']!r}",
        f"seed={spec['seed']}",
    ]
    if spec.get("ops_per_thread"):
        args.insert(2, f"ops_per_thread={spec['ops_per_thread']}")
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


def _run_reasons(label: str, run: dict[str, Any]) -> list[str]:
    reasons = []
    if run.get("error"):
        reasons.append(f"{label}: {run['error']}")
    if run["observed"] != run["expected"]:
        reasons.append(
            f"{label}: observed {run['observed']} != expected {run['expected']} "
            f"(lost {run['expected'] - run['observed']})"
        )
    if run["invariant_violations"]:
        reasons.append(f"{label}: {_violation_text(run)}")
    return reasons


def _registration(spec: dict[str, Any], raw: dict[str, Any]) -> str:
    """The requested mode, or for ``auto`` who owns the process's area."""
    requested = str(spec["registration"])
    if requested != "auto":
        return requested
    return str((raw.get("abi") or {}).get("owner", "unknown"))


def _empty_run(path: str) -> dict[str, Any]:
    """Zero counters for a child that produced no result (it crashed or never ran)."""
    return {
        "ops": 0,
        "expected": 0,
        "observed": 0,
        "aborts": 0,
        "migrations": 0,
        "signals_delivered": 0,
        "affinity_changes": 0,
        "cpuset_shifts": 0,
        "threads_started": 0,
        "forks": 0,
        "membarriers": 0,
        "invariant_violations": 0,
        "invariant_samples": 0,
        "per_cpu": [],
        "duration_s": 0.0,
        "error": None,
        "path": path,
        "owner": "unknown",
    }


def build_result(spec: dict[str, Any], raw: dict[str, Any]) -> StressResult:
    """Return the :class:`StressResult` for the raw output of one child."""
    runs = raw.get("runs", {})
    main = runs.get("rseq") or runs.get("fallback")
    reasons: list[str] = []
    crash = raw.get("crash")
    if main is not None and main["ops"] == 0 and not main.get("error") and not crash:
        reasons.append(f"{main['path']}: no op completed: the run proves nothing")
    if crash:
        reasons.append(f"the stressed process died with {crash}")
    if raw.get("error"):
        reasons.append(str(raw["error"]))
    if raw.get("stopped"):
        reasons.append("the run was stopped (a stop request) before it finished")
    reasons += [f"cleanup: {p}" for p in raw.get("cleanup_errors", [])]
    if main is None:
        main = _empty_run(spec["path"])
        if not reasons:
            reasons.append("the child produced no result")
    else:
        reasons += _run_reasons(main["path"], main)
        if not main.get("error") and not crash:
            reasons += coverage_reasons(spec["chaos"], spec["threads"], main)

    path = main["path"]
    requested = spec["registration"]
    if requested.startswith("blocked-") and main["path"] == "rseq":
        reasons.append(f"registration={requested}: the seccomp filter did not block rseq")
    if requested in ("glibc", "own") and runs.get("rseq") and main["path"] != "rseq":
        reasons.append(f"registration={requested}: the workers ran on the fallback path")
    details: dict[str, Any] = {
        "abi": raw.get("abi"),
        "owner": main.get("owner"),
        "slot_ops": main.get("slot_ops", []),
        "invariant_samples": main.get("invariant_samples", 0),
        "signals_sent": main.get("signals_sent", 0),
        "timer_signals": main.get("timer_signals", 0),
        "fork_errors": main.get("fork_errors", 0),
        "cpuset_errors": main.get("cpuset_errors", 0),
        "hotplug_events": main.get("hotplug_events", 0),
        "first_violation": main.get("first_violation", [0, 0, 0, 0]),
    }
    if spec.get("cpuset"):
        details["cpuset"] = spec["cpuset"]
    perf = dict(raw.get("perf") or {"available": False, "reason": "in-process run"})
    if perf.get("available") and "fixups" in perf:
        # Fork children abort on their copies too; the kernel counts those.
        perf["aborts"] = main["aborts"]
        perf["difference"] = perf["fixups"] - main["aborts"]
    details["perf"] = perf
    if spec["path"] == "both" and "rseq" in runs:
        fallback = runs.get("fallback")
        # "both" only when the first half really ran on rseq (blocked modes say fallback).
        path = "both" if main["path"] == "rseq" else "fallback"
        if fallback is None:
            reasons.append("both: the fallback run did not happen")
        else:
            reasons += _run_reasons("fallback", fallback)
            details["fallback"] = {
                k: fallback[k] for k in ("ops", "expected", "observed", "duration_s", "per_cpu")
            }
            if fallback["observed"] != main["observed"]:
                reasons.append(
                    f"both: rseq path total {main['observed']} != fallback path "
                    f"total {fallback['observed']} for the same op budget"
                )
    if raw.get("stderr"):
        details["stderr"] = raw["stderr"]

    return StressResult(
        ok=not reasons,
        workload=spec["workload"]["name"],
        path=path,
        registration=_registration(spec, raw),
        threads=spec["threads"],
        expected=main["expected"],
        observed=main["observed"],
        per_cpu=list(main["per_cpu"]),
        ops=main["ops"],
        aborts=main["aborts"],
        migrations=main["migrations"],
        signals_delivered=main["signals_delivered"],
        affinity_changes=main["affinity_changes"],
        cpuset_shifts=main["cpuset_shifts"],
        threads_started=main["threads_started"],
        forks=main["forks"],
        membarriers=main["membarriers"],
        invariant_violations=main["invariant_violations"],
        crash=crash,
        seed=spec["seed"],
        duration_s=float(main["duration_s"]),
        error=main.get("error") or raw.get("error"),
        reasons=reasons,
        repro=repro_line(spec),
        details=details,
    )
