"""The oracle: turns a child's raw numbers into a :class:`StressResult` and a verdict.

A run is ``ok`` only when the per-CPU total equals the fallback-path tally,
the stressed process neither crashed nor stopped on an error, no rseq-area
invariant broke, and the registration mode did what it promised.
"""

from __future__ import annotations

from typing import Any

from .result import StressResult

VIOLATIONS = {
    1: "cpu_id_start != cpu_id outside a critical section",
    2: "sched_getcpu() != cpu_id",
    3: "cpu_id is not a possible CPU",
    4: "mm_cid is not below the number of possible CPUs",
}


def repro_line(spec: dict[str, Any]) -> str:
    """Return a shell command that repeats the run with the same seed."""
    wl = spec["workload"]
    target = (
        f"Workload.from_library({wl['library']!r}, {wl['symbol']!r})"
        if wl["library"]
        else repr(wl["name"])
    )
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
    return str((raw.get("abi") or {}).get("owner", "none"))


def _empty_run() -> dict[str, Any]:
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
        "path": "fallback",
        "owner": "none",
    }


def build_result(spec: dict[str, Any], raw: dict[str, Any]) -> StressResult:
    """Return the :class:`StressResult` for the raw output of one child."""
    runs = raw.get("runs", {})
    main = runs.get("rseq") or runs.get("fallback")
    reasons: list[str] = []
    crash = raw.get("crash")
    if crash:
        reasons.append(f"the stressed process died with {crash}")
    if raw.get("error"):
        reasons.append(str(raw["error"]))
    if main is None:
        main = _empty_run()
        if not reasons:
            reasons.append("the child produced no result")
    else:
        reasons += _run_reasons(main["path"], main)

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
    }
    if spec["path"] == "both" and "rseq" in runs:
        fallback = runs.get("fallback")
        path = "both"
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
