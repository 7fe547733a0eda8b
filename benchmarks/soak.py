"""Section 5: the soak. Zero false alarms, and no canary ever ok.

N seeded runs of the correct workloads (the built-in ``counter`` and
``counter_mm_cid``, and ``examples/downstream``'s ``percpu_counter`` and
``percpu_freelist`` when a C compiler can build them) under random chaos drawn
from one seeded generator: any mix of signals, affinity, churn, fork and
membarrier (cpusets only where writable; never hotplug), every registration
mode and path, durations 0.02-0.3 s, default evidence cap. Every run must be
``ok``: a ``bug``, ``no-evidence`` or ``error`` there is a false alarm, listed
with its repro. Then the same draw over every built-in canary must give no
``ok`` (canaries run where their rseq path runs: registrations auto, glibc and
own, paths rseq and both; on the fallback path a canary is correct code).
Runs go two at a time (a process pool); each is an isolated child as usual.
"""

from __future__ import annotations

import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

RUNS = 1000
QUICK_RUNS = 6
WORKERS = 2
DURATIONS_S = (0.02, 0.3)
# Injector -> (low, high) rate when the draw turns it on.
RATES: dict[str, tuple[float, float]] = {
    "signals_hz": (500, 5000),
    "affinity_hz": (100, 1000),
    "churn_hz": (100, 1000),
    "fork_hz": (10, 50),
    "membarrier_hz": (500, 5000),
    "cpuset_hz": (50, 500),
}
CORRECT_BUILTINS = ("counter", "counter_mm_cid")
DOWNSTREAM = ("percpu_counter", "percpu_freelist")
ROOT = Path(__file__).resolve().parent.parent


def downstream_library() -> Path | None:
    """Build examples/downstream's correct library into a temp dir (None: no compiler)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "percpu_build", ROOT / "examples" / "downstream" / "build_lib.py"
    )
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        built = module.build(tempfile.mkdtemp(prefix="pytest-rseq-soak-"))
    except (OSError, RuntimeError):
        return None
    return Path(built["libpercpu.so"])


def draw(rng: random.Random, workload: Any, canary: bool, cpuset_ok: bool) -> dict[str, Any]:
    """One run's keyword arguments for ``pytest_rseq.run`` (chaos as a mapping)."""
    from pytest_rseq.engine.spec import PATHS, REGISTRATIONS

    chaos: dict[str, Any] = {}
    for name, (low, high) in RATES.items():
        if name == "cpuset_hz" and not cpuset_ok:
            continue
        if rng.random() < 0.4:
            chaos[name] = round(rng.uniform(low, high))
    chaos["oversubscribe"] = rng.choice((1.0, 1.5, 2.0, 3.0))
    chaos["cs_delay"] = rng.choice((0, 0, 16, 64))
    registrations = REGISTRATIONS[:3] if canary else REGISTRATIONS
    paths = ("rseq", "both") if canary else PATHS
    return {
        "workload": workload,
        "chaos": chaos,
        "path": rng.choice(paths),
        "registration": rng.choice(registrations),
        "duration": round(rng.uniform(*DURATIONS_S), 3),
        "seed": rng.getrandbits(63),
    }


def one_run(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run one drawn case (in a pool worker); return its verdict and, if not ok, details."""
    from pytest_rseq import Chaos, Workload, run

    args = dict(kwargs)
    target = args.pop("workload")
    if isinstance(target, list):
        target = Workload.from_library(*target)
    args["chaos"] = Chaos(**args["chaos"])
    try:
        res = run(target, **args)
    except Exception as exc:  # a capability missing, a workload that did not load
        return {"verdict": "error", "reasons": [f"{type(exc).__name__}: {exc}"], "repro": ""}
    out: dict[str, Any] = {"verdict": res.verdict, "wall_s": res.duration_s}
    if not res.ok:
        out.update(reasons=res.reasons, repro=res.repro)
    return out


def _soak(cases: list[dict[str, Any]]) -> dict[str, Any]:
    start = time.monotonic()
    with ProcessPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(one_run, cases))
    wall = time.monotonic() - start
    counts = {v: 0 for v in ("ok", "bug", "no-evidence", "error")}
    for r in results:
        counts[r["verdict"]] += 1
    return {"runs": len(cases), "wall_s": wall, "counts": counts, "results": results}


def measure(runs: int, quick: bool, seed: int | None = None) -> dict[str, Any]:
    """Soak ``runs`` correct runs and ``runs`` canary runs from one seeded generator."""
    from pytest_rseq import BUILTIN_WORKLOADS
    from pytest_rseq.host.capabilities import cgroup_info

    n = QUICK_RUNS if quick else runs
    seed = random.SystemRandom().getrandbits(32) if seed is None else seed
    rng = random.Random(seed)
    cpuset_ok = bool(cgroup_info()["cpuset_writable"])
    library = downstream_library()
    correct: list[Any] = list(CORRECT_BUILTINS)
    if library is not None:
        correct += [[str(library), symbol] for symbol in DOWNSTREAM]
    canaries = [w for w in BUILTIN_WORKLOADS if w.startswith("canary_")]
    good = [draw(rng, rng.choice(correct), False, cpuset_ok) for _ in range(n)]
    bad = [draw(rng, canaries[i % len(canaries)], True, cpuset_ok) for i in range(n)]
    section: dict[str, Any] = {
        "seed": seed,
        "downstream": str(library) if library else "not built (no C compiler)",
        "correct": _soak(good),
        "canaries": _soak(bad),
    }
    for name, cases in (("correct", good), ("canaries", bad)):
        for case, result in zip(cases, section[name]["results"], strict=True):
            result["case"] = {**case, "workload": str(case["workload"])}
    return section


def summary_line(label: str, part: dict[str, Any]) -> str:
    """``soak: N runs (R runs/s): ok X, bug 0, no-evidence 0, error 0``."""
    c = part["counts"]
    rate = part["runs"] / part["wall_s"] if part["wall_s"] > 0 else 0.0
    return (
        f"{label}: {part['runs']} runs ({rate:.2f} runs/s): ok {c['ok']}, bug {c['bug']}, "
        f"no-evidence {c['no-evidence']}, error {c['error']}"
    )


def render(section: dict[str, Any]) -> str:
    """The two soak lines, then every false alarm and every canary that passed."""
    out = [
        "## 5. Soak (seeded random chaos; every registration mode and path)",
        "",
        f"seed {section['seed']}; downstream library: {section['downstream']}",
        summary_line("soak", section["correct"]),
        summary_line("soak canaries", section["canaries"]),
    ]
    alarms = [r for r in section["correct"]["results"] if r["verdict"] != "ok"]
    passed = [r for r in section["canaries"]["results"] if r["verdict"] == "ok"]
    for title, rows in (("false alarm", alarms), ("canary ok", passed)):
        for r in rows:
            out.append(f"{title}: {r['verdict']} {r['case']}")
            out += [f"    reason: {reason}" for reason in r.get("reasons", [])]
            if r.get("repro"):
                out.append(f"    repro: {r['repro']}")
    return "\n".join(out)


def claims(section: dict[str, Any]) -> dict[str, Any]:
    """Must show 2: no false alarm in the correct soak, no canary ok."""
    c = section["correct"]["counts"]
    return {
        "runs": section["correct"]["runs"],
        "false_alarms": c["bug"] + c["no-evidence"] + c["error"],
        "canaries_ok": section["canaries"]["counts"]["ok"],
        "holds": c["ok"] == section["correct"]["runs"] and section["canaries"]["counts"]["ok"] == 0,
    }
