"""Kill rates of the example library's mutants under ``Chaos.default()``.

    python -m benchmarks.mutants [--runs N] [--duration S] [--unaimed] [--json PATH]

Builds ``examples/downstream``'s correct library, makes every mutant class for
every descriptor reached by each workload (``pytest_rseq.mutants``), and runs
each mutant ``--runs`` times (seeds 0..N-1) under ``Chaos.default()`` for
``--duration`` seconds, as ``--rseq-mutate`` runs it: aimed at the mutant's
window (``Mutant.aim``; ``--unaimed`` runs without breakpoints). Then the
correct library runs as many times aimed at each address the mutants used
(the control: it must stay ok). Prints, per row, how many runs showed a bug
(``killed``; for the original a false alarm), how many were ``ok`` and how
many were inconclusive (``no-evidence`` or ``error``), with the breakpoint
hits; and the mutants that could not be made with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("percpu_counter", "percpu_freelist")


def _count(
    workload: Any, aim: tuple[int, ...], runs: int, duration: float, expect: str
) -> dict[str, Any]:
    """Outcome counts of ``runs`` seeded runs of ``workload`` aimed at ``aim``; the runs
    whose outcome is not ``expect`` are listed with their verdict and first reason."""
    from pytest_rseq import Chaos
    from pytest_rseq.elf.mutation import outcome
    from pytest_rseq.engine.runner import run_spec
    from pytest_rseq.engine.spec import RunSpec

    counts = {"killed": 0, "survived": 0, "inconclusive": 0}
    hits: list[int] = []
    problems: set[str] = set()
    odd: list[dict[str, Any]] = []
    start = time.monotonic()
    for seed in range(runs):
        spec = RunSpec.build(workload, chaos=Chaos.default(), duration=duration, seed=seed)
        result = run_spec(dataclasses.replace(spec, aim=aim))
        counts[outcome(result)] += 1
        if outcome(result) != expect:
            why = result.reasons[0] if result.reasons else result.error or ""
            odd.append({"seed": seed, "verdict": result.verdict, "reason": why[:300]})
        hits.append(int(result.counters.get("aim_hits", 0)))
        if result.counters.get("aim_errno"):
            problems.add(f"aim_errno {result.counters['aim_errno']}")
    return {
        **counts,
        "aim": [f"{a:#x}" for a in aim],
        "hits_min": min(hits),
        "hits_max": max(hits),
        "aim_problems": sorted(problems),
        "odd_runs": odd,
        "wall_s": round(time.monotonic() - start, 1),
    }


def _show(symbol: str, name: str, row: dict[str, Any], runs: int) -> None:
    where = ",".join(row["aim"]) or "-"

    for run in row["odd_runs"]:
        print(f"    seed {run['seed']}: {run['verdict']}: {run['reason']}")
    print(
        f"{symbol:16} {name:34} {where:8} killed {row['killed']}/{runs} "
        f"(ok {row['survived']}, inconclusive {row['inconclusive']}; "
        f"hits {row['hits_min']}-{row['hits_max']}) {row['wall_s']} s",
        flush=True,
    )


def measure(runs: int, duration: float, aimed: bool = True) -> dict[str, Any]:
    """{"mutants": [...], "originals": [...], "not_made": [...]} for the example library."""
    from pytest_rseq import Workload, mutants

    sys.path.insert(0, str(ROOT / "examples" / "downstream"))
    from build_lib import build

    rows: list[dict[str, Any]] = []
    originals: list[dict[str, Any]] = []
    not_made: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="rseq-mutbench-") as tmp:
        lib = build(Path(tmp) / "build")["libpercpu.so"]
        for symbol in WORKLOADS:
            aims: list[int] = []
            for m in mutants(lib, Path(tmp) / symbol, symbol=symbol):
                if m.path is None:
                    not_made.append({"workload": symbol, "mutant": m.name, "reason": m.reason})
                    continue
                aim = m.aim if aimed else ()
                row = _count(m.workload(symbol), aim, runs, duration, "killed")
                rows.append({"workload": symbol, "mutant": m.name, "change": m.change, **row})
                _show(symbol, m.name, row, runs)
                aims.extend(aim)
            for address in sorted(set(aims)):
                original = Workload.from_library(lib, symbol)
                row = _count(original, (address,), runs, duration, "survived")
                originals.append({"workload": symbol, **row})
                _show(symbol, "original", row, runs)
    for item in not_made:
        print(f"{item['workload']:16} {item['mutant']:34} not made: {item['reason']}")
    return {
        "runs": runs,
        "duration_s": duration,
        "aimed": aimed,
        "mutants": rows,
        "originals": originals,
        "not_made": not_made,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, measure, print; write JSON when ``--json`` is given."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.mutants", description=__doc__.split("\n")[0]
    )
    p.add_argument("--runs", type=int, default=20, help="runs per mutant (20)")
    p.add_argument("--duration", type=float, default=0.3, help="seconds per run (0.3)")
    p.add_argument("--unaimed", action="store_true", help="run the mutants without breakpoints")
    p.add_argument("--json", default=None, help="also write the counts to this file")
    args = p.parse_args(argv)
    if args.runs < 1 or args.duration <= 0:
        p.error(f"--runs must be >= 1 and --duration > 0, got {args.runs} and {args.duration}")
    data = measure(args.runs, args.duration, aimed=not args.unaimed)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
