"""Kill rates of the example library's mutants under ``Chaos.default()``.

    python -m benchmarks.mutants [--runs N] [--duration S] [--json PATH]

Builds ``examples/downstream``'s correct library, makes every mutant class for
every descriptor reached by each workload (``pytest_rseq.mutants``), and runs
each mutant ``--runs`` times (seeds 0..N-1) under ``Chaos.default()`` for
``--duration`` seconds, as the harness runs any workload (evidence cap as
default). Prints, per mutant, how many runs killed it (verdict ``bug``), how
many it survived (``ok``) and how many were inconclusive (``no-evidence`` or
``error``), and the mutants that could not be made with the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("percpu_counter", "percpu_freelist")


def measure(runs: int, duration: float) -> dict[str, Any]:
    """{"mutants": [per-mutant counts], "not_made": [...]} for the example library."""
    from pytest_rseq import Chaos, mutants, run
    from pytest_rseq.elf.mutation import outcome

    sys.path.insert(0, str(ROOT / "examples" / "downstream"))
    from build_lib import build

    rows: list[dict[str, Any]] = []
    not_made: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="rseq-mutbench-") as tmp:
        lib = build(Path(tmp) / "build")["libpercpu.so"]
        for symbol in WORKLOADS:
            for m in mutants(lib, Path(tmp) / symbol, symbol=symbol):
                if m.path is None:
                    not_made.append({"workload": symbol, "mutant": m.name, "reason": m.reason})
                    continue
                counts = {"killed": 0, "survived": 0, "inconclusive": 0}
                start = time.monotonic()
                for seed in range(runs):
                    result = run(
                        m.workload(symbol), chaos=Chaos.default(), duration=duration, seed=seed
                    )
                    counts[outcome(result)] += 1
                rows.append(
                    {
                        "workload": symbol,
                        "mutant": m.name,
                        "change": m.change,
                        **counts,
                        "wall_s": round(time.monotonic() - start, 1),
                    }
                )
                print(
                    f"{symbol:16} {m.name:34} killed {counts['killed']}/{runs} "
                    f"(survived {counts['survived']}, inconclusive {counts['inconclusive']})",
                    flush=True,
                )
    for row in not_made:
        print(f"{row['workload']:16} {row['mutant']:34} not made: {row['reason']}")
    return {"runs": runs, "duration_s": duration, "mutants": rows, "not_made": not_made}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, measure, print; write JSON when ``--json`` is given."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.mutants", description=__doc__.split("\n")[0]
    )
    p.add_argument("--runs", type=int, default=20, help="runs per mutant (20)")
    p.add_argument("--duration", type=float, default=0.3, help="seconds per run (0.3)")
    p.add_argument("--json", default=None, help="also write the counts to this file")
    args = p.parse_args(argv)
    if args.runs < 1 or args.duration <= 0:
        p.error(f"--runs must be >= 1 and --duration > 0, got {args.runs} and {args.duration}")
    data = measure(args.runs, args.duration)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
