"""Section 3: detection power, per canary and chaos preset.

The harness can only say that counts were lost when a run ends (it compares
the per-CPU total with the thread-local tally), so there is no exact time of
the first loss. What is measured instead, honestly named: for each trial, runs
of increasing duration d from a fixed ladder (each a fresh isolated child,
fresh seed) until one catches the bug; that d is the trial's "time to first
detected loss" (the shortest run that caught it, an upper bound at the
ladder's resolution). A trial that no rung catches counts as missed.

"Caught" means the run failed for the canary's own reason: counts lost
(``observed != expected``), an rseq-area invariant broken, or the process
crashed. A run that fails for anything else (an injector missing, an error)
is counted as an error, not as a catch.

The latency table answers a stricter question per canary class: the
shortest duration on LATENCY_LADDER_S at which the canary is caught in
every one of LATENCY_RUNS runs (fresh seeds) under ``Chaos.default()``; a
rung stops at its first miss and the next rung is tried.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from .common import fmt, median, table

LADDER_MS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
QUICK_LADDER_MS: tuple[float, ...] = (10, 50)
TRIALS = 20
QUICK_TRIALS = 1
LATENCY_LADDER_S: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
QUICK_LATENCY_LADDER_S: tuple[float, ...] = (0.05,)
LATENCY_RUNS = 20
QUICK_LATENCY_RUNS = 2
LATENCY_TARGET_S = 0.1


def presets() -> dict[str, Any]:
    """The chaos presets ``Chaos`` offers: its argument-less classmethods returning a Chaos."""
    from pytest_rseq import Chaos

    found = {}
    for name, member in inspect.getmembers(Chaos):
        if name.startswith("_") or not inspect.ismethod(member):
            continue
        try:
            if inspect.signature(member).parameters:
                continue
            value = member()
        except (TypeError, ValueError):
            continue
        if isinstance(value, Chaos):
            found[name] = value
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != "none", kv[0])))


def canaries() -> list[str]:
    """The built-in workloads that are broken on purpose."""
    from pytest_rseq import BUILTIN_WORKLOADS

    return [w for w in BUILTIN_WORKLOADS if w.startswith("canary_")]


def _verdict(res: Any) -> str:
    # An error (an injector that could not start, a bad config) means the run
    # was not the one asked for: whatever it lost does not count as a catch.
    if res.showed_a_bug:
        return "caught"
    return "error" if res.error else "missed"


def _trial(canary: str, chaos: Any, ladder: tuple[float, ...], seed: int) -> dict[str, Any]:
    import pytest_rseq

    walls = []
    for rung, d_ms in enumerate(ladder):
        t0 = time.monotonic()
        try:
            res = pytest_rseq.run(canary, duration=d_ms / 1000, chaos=chaos, seed=seed * 100 + rung)
        except Exception as exc:
            return {"verdict": "error", "error": f"{type(exc).__name__}: {exc}"}
        walls.append(time.monotonic() - t0)
        verdict = _verdict(res)
        if verdict == "error":
            return {"verdict": "error", "error": res.error, "d_ms": d_ms}
        if verdict == "caught":
            return {
                "verdict": "caught",
                "d_ms": d_ms,
                # A crashed child reports no length: unknown, not zero.
                "run_s": None if res.crash else res.duration_s,
                "lost": res.lost,
                "crash": res.crash,
                "invariant_violations": res.invariant_violations,
                "threads": res.threads,
                "wall_to_verdict_s": sum(walls),
            }
    return {"verdict": "missed", "d_ms": None, "wall_to_verdict_s": sum(walls)}


def _rung(canary: str, d_s: float, runs: int, seed: int) -> dict[str, Any]:
    """Up to ``runs`` runs of ``d_s`` under ``Chaos.default()``, stopping at the first miss."""
    import pytest_rseq
    from pytest_rseq import Chaos

    caught = 0
    for i in range(runs):
        try:
            res = pytest_rseq.run(canary, duration=d_s, chaos=Chaos.default(), seed=seed + i)
        except Exception as exc:
            return {
                "d_s": d_s,
                "caught": caught,
                "runs": i + 1,
                "error": f"{type(exc).__name__}: {exc}",
            }
        verdict = _verdict(res)
        if verdict != "caught":
            out = {"d_s": d_s, "caught": caught, "runs": i + 1}
            if verdict == "error":
                out["error"] = str(res.error)
            return out
        caught += 1
    return {"d_s": d_s, "caught": caught, "runs": runs}


def measure_latency(runs: int, quick: bool) -> dict[str, Any]:
    """Per canary: the shortest ladder duration caught in ``runs`` of ``runs`` runs."""
    ladder = QUICK_LATENCY_LADDER_S if quick else LATENCY_LADDER_S
    rows = []
    for n, canary in enumerate(canaries()):
        rungs = []
        for k, d_s in enumerate(ladder):
            rungs.append(_rung(canary, d_s, runs, seed=20_000 + 1_000 * n + 100 * k))
            if rungs[-1]["caught"] == runs or "error" in rungs[-1]:
                break
        best = rungs[-1]["d_s"] if rungs[-1]["caught"] == runs else None
        rows.append(
            {
                "canary": canary,
                "always_caught_at_s": best,
                "meets_target": best is not None and best <= LATENCY_TARGET_S,
                "rungs": rungs,
                "errors": [r["error"] for r in rungs if "error" in r],
            }
        )
    return {
        "ladder_s": list(ladder),
        "runs": runs,
        "target_s": LATENCY_TARGET_S,
        "chaos": "Chaos.default()",
        "rows": rows,
    }


def render_latency(section: dict[str, Any]) -> str:
    """The latency table as text."""
    rows = []
    for r in section["rows"]:
        best = r["always_caught_at_s"]
        tried = ", ".join(f"{g['d_s']:g} s {g['caught']}/{g['runs']}" for g in r["rungs"])
        rows.append(
            [
                r["canary"],
                "-" if best is None else f"{best:g}",
                "yes" if r["meets_target"] else "no",
                tried,
                "; ".join(r["errors"])[:60],
            ]
        )
    head = (
        f"## 3b. Detection latency ({section['runs']}/{section['runs']} runs caught under "
        f"{section['chaos']}; ladder {section['ladder_s']} s; target <= {section['target_s']:g} s)"
    )
    return "\n".join(
        [
            head,
            "",
            table(
                [
                    "canary",
                    f"{section['runs']}/{section['runs']} at s",
                    "target",
                    "rungs tried",
                    "error",
                ],
                rows,
            ),
        ]
    )


def measure(trials: int, quick: bool) -> dict[str, Any]:
    """Run ``trials`` ladder trials per canary and preset; return the JSON section."""
    ladder = QUICK_LADDER_MS if quick else LADDER_MS
    rows = []
    for canary in canaries():
        for pname, chaos in presets().items():
            results = []
            for i in range(trials):
                results.append(_trial(canary, chaos, ladder, seed=7000 + i))
                if results[-1]["verdict"] == "error":
                    break  # the preset cannot run here; one error says why
            caught = [r for r in results if r["verdict"] == "caught"]
            errors = sorted({str(r.get("error")) for r in results if r["verdict"] == "error"})
            evaluated = [r for r in results if r["verdict"] != "error"]
            d = [r["d_ms"] for r in caught]
            rows.append(
                {
                    "canary": canary,
                    "preset": pname,
                    "chaos": chaos.to_dict(),
                    "trials": len(evaluated),
                    "caught": len(caught),
                    "fraction_caught": len(caught) / len(evaluated) if evaluated else None,
                    "first_detection_ms": {
                        "median": median(d),
                        "max": max(d) if d else None,
                        "values": d,
                    },
                    "catching_run_actual_ms": {
                        "median": median(r["run_s"] * 1000 for r in caught if r["run_s"]),
                        "max": max((r["run_s"] * 1000 for r in caught if r["run_s"]), default=None),
                    },
                    "lost_median": median(r["lost"] for r in caught if r["lost"]),
                    "caught_by": {
                        "lost_counts": sum(1 for r in caught if r["lost"]),
                        "crash": sum(1 for r in caught if r["crash"]),
                        "invariant": sum(1 for r in caught if r["invariant_violations"]),
                    },
                    "crashes": sorted({r["crash"] for r in caught if r["crash"]}),
                    "wall_to_verdict_s_median": median(r["wall_to_verdict_s"] for r in evaluated),
                    "errors": errors,
                }
            )
    runs = QUICK_LATENCY_RUNS if quick else LATENCY_RUNS
    return {
        "ladder_ms": list(ladder),
        "trials": trials,
        "rows": rows,
        "latency": measure_latency(runs, quick),
    }


def render(section: dict[str, Any]) -> str:
    """The section's table as text."""
    out = [
        f"## 3. Detection power ({section['trials']} trials per row; time = the shortest run "
        f"deadline from the ladder {section['ladder_ms']} ms that caught it; actual = median "
        "measured length of that run, thread start and join included)",
        "",
    ]
    rows = []
    for r in section["rows"]:
        fd = r["first_detection_ms"]
        frac = r["fraction_caught"]
        rows.append(
            [
                r["canary"],
                r["preset"],
                "-" if frac is None else f"{r['caught']}/{r['trials']} ({frac:.0%})",
                fmt(fd["median"], 1),
                fmt(fd["max"], 1),
                fmt(r["catching_run_actual_ms"]["median"], 1),
                _how(r),
                fmt(r["wall_to_verdict_s_median"], 2),
                "; ".join(r["errors"])[:70],
            ]
        )
    out.append(
        table(
            [
                "canary",
                "preset",
                "caught",
                "median ms",
                "max ms",
                "actual ms",
                "caught by",
                "wall s",
                "error",
            ],
            rows,
        )
    )
    if "latency" in section:
        out += ["", render_latency(section["latency"])]
    return "\n".join(out)


def _how(row: dict[str, Any]) -> str:
    """What caught it: median lost counts, the crash signal, invariant violations."""
    parts = []
    if row["lost_median"] is not None:
        parts.append(f"lost {fmt(row['lost_median'], 0)}")
    parts.extend(row["crashes"])
    if row["caught_by"]["invariant"]:
        parts.append(f"invariant ({row['caught_by']['invariant']})")
    return ", ".join(parts) or "-"
