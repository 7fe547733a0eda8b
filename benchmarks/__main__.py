"""``python -m benchmarks``: run the benchmarks, print tables, write JSON.

    python -m benchmarks [--quick] [--json PATH] [--only SECTION,...]
                         [--repeats N] [--trials N] [--runs N] [--seed N]

Sections: fastpath (ns per increment, harness overhead), injectors (achieved
rates), detection (canaries caught, time to first detected loss), gate (wall
time of ``python -m pytest_rseq``), soak (N seeded random-chaos runs of the
correct workloads and of the canaries; ``--runs``, ``--seed``). ``--quick`` is
a tiny smoke mode (seconds) whose numbers mean nothing; the published numbers
come from a run without it.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import detection, fastpath, gate, injectors, soak
from .common import LoadMeter, machine

SCHEMA = "pytest-rseq-benchmarks/1"
SECTIONS = ("fastpath", "injectors", "detection", "gate", "soak")
DEFAULT_JSON = "benchmarks/results.json"


def _sections(value: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in value.split(",") if s.strip())
    bad = [s for s in names if s not in SECTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(bad) or repr(value)}; choose from {', '.join(SECTIONS)}"
        )
    return names


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
    return n


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line (errors exit with status 2 and name the value)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke mode (numbers mean nothing)")
    p.add_argument("--json", default=DEFAULT_JSON, help=f"where to write JSON ({DEFAULT_JSON})")
    p.add_argument(
        "--only",
        type=_sections,
        default=SECTIONS,
        help=f"comma-separated sections ({','.join(SECTIONS)})",
    )
    p.add_argument(
        "--repeats",
        type=_positive,
        default=None,
        help="repeats per fast-path (9), injector (3) and gate (3) measurement; quick 1",
    )
    p.add_argument(
        "--trials",
        type=_positive,
        default=None,
        help=f"detection trials per canary and preset ({detection.TRIALS}; "
        f"quick {detection.QUICK_TRIALS})",
    )
    p.add_argument(
        "--runs",
        type=_positive,
        default=soak.RUNS,
        help=f"soak runs, correct and canary each ({soak.RUNS}; quick {soak.QUICK_RUNS})",
    )
    p.add_argument("--seed", type=int, default=None, help="soak seed (default: random, printed)")
    return p.parse_args(argv)


def _finite(obj: Any) -> Any:
    """Replace NaN/inf by None so the JSON is strict."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _git_commit() -> str | None:
    """The checkout's commit (with "+dirty" when it has changes), or None."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def must_show(sections: dict[str, Any]) -> dict[str, Any]:
    """The issue's "Must show" items, judged from this run's numbers (None: not measured)."""
    out: dict[str, Any] = {}
    fp = sections.get("fastpath")
    if fp:
        out["rseq_2x_faster_than_atomic_at_2plus_threads"] = fp["claims"][
            "rseq_2x_faster_than_atomic_at_2plus_threads"
        ]
        out["harness_overhead_at_most_20pct"] = fp["claims"]["harness_overhead_at_most_20pct"]
    det = sections.get("detection")
    if det:
        row = next(
            (r for r in det["rows"] if r["canary"] == "canary_racy" and r["preset"] == "default"),
            None,
        )
        if row and row["fraction_caught"] is not None:
            med = row["first_detection_ms"]["median"]
            out["canary_racy_default_caught_always_median_under_50ms"] = {
                "fraction_caught": row["fraction_caught"],
                "median_ms": med,
                "holds": row["fraction_caught"] == 1.0 and med is not None and med < 50,
            }
        else:
            out["canary_racy_default_caught_always_median_under_50ms"] = {
                "holds": None,
                "errors": row["errors"] if row else ["no such row"],
            }
    if sections.get("soak"):
        out["soak_no_false_alarm_no_canary_ok"] = soak.claims(sections["soak"])
    inj = sections.get("injectors")
    if inj:
        out["injector_rates"] = {name: c for name, c in inj["ceilings"].items() if c["target_hz"]}
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections; print tables; write the JSON. Returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    repeats = args.repeats or (1 if args.quick else 9)
    inj_repeats = args.repeats or (1 if args.quick else 3)
    trials = args.trials or (detection.QUICK_TRIALS if args.quick else detection.TRIALS)
    started = time.time()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "command": "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine(),
        "git_commit": _git_commit(),
        "sections": {},
        "load": {},
    }
    runners: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], str]]] = {
        "fastpath": (lambda: fastpath.measure(repeats, args.quick), fastpath.render),
        "injectors": (lambda: injectors.measure(inj_repeats, args.quick), injectors.render),
        "detection": (lambda: detection.measure(trials, args.quick), detection.render),
        "gate": (lambda: gate.measure(min(repeats, 3), args.quick), gate.render),
        "soak": (lambda: soak.measure(args.runs, args.quick, args.seed), soak.render),
    }
    for name in SECTIONS:
        if name not in args.only:
            continue
        meter = LoadMeter()
        measure, render = runners[name]
        section = measure()
        doc["load"][name] = meter.result()
        doc["sections"][name] = section
        print(render(section))
        load = doc["load"][name]
        print(
            f"\n(section took {load['wall_s']:.1f} s; other processes kept "
            f"{load['others_cpus']:.2f} CPUs busy meanwhile, steal {load['steal_cpus']:.2f})\n",
            flush=True,
        )
    doc["must_show"] = must_show(doc["sections"])
    doc["elapsed_s"] = round(time.time() - started, 1)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(doc), indent=1, allow_nan=False) + "\n")
    print("## Must show\n")
    print(json.dumps(_finite(doc["must_show"]), indent=1))
    print(f"\nJSON written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
