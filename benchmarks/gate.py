"""Section 4: wall time of the environment gate, ``python -m pytest_rseq [--quick]``.

Each variant runs as a fresh subprocess (``--quick`` mode of the benchmark
runs one scenario only, ``--only canary/racy``, as a smoke test), timed from start to exit, with its
exit code (0 pass, 1 fail, 2 could not test) and verdict line. When this
checkout has no gate yet (no ``pytest_rseq.__main__``), the section says so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from .common import fmt, median, table

TIMEOUT_S = 600
QUICK_ONLY = "canary/racy"


def available() -> bool:
    """True when ``python -m pytest_rseq`` exists in this checkout."""
    return importlib.util.find_spec("pytest_rseq.__main__") is not None


def _one(args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="prseq-bench-gate-") as tmp:
        report = os.path.join(tmp, "gate.json")
        argv = [sys.executable, "-m", "pytest_rseq", *args, "--json", report]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {
                "wall_s": time.monotonic() - t0,
                "exit": None,
                "error": f"timed out after {TIMEOUT_S} s",
            }
        wall = time.monotonic() - t0
        verdict = None
        try:
            with open(report) as fh:
                data = json.load(fh)
            verdict = data.get("verdict") if isinstance(data, dict) else None
        except (OSError, ValueError):
            pass
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("gate:")] or [
            ln for ln in proc.stdout.splitlines() if ln.strip()
        ]
        return {
            "wall_s": wall,
            "exit": proc.returncode,
            "verdict": verdict,
            "last_line": lines[-1][:200] if lines else proc.stderr.strip()[-200:],
        }


def measure(repeats: int, quick: bool) -> dict[str, Any]:
    """Time the gate ``repeats`` times per mode (quick mode: ``--quick`` once)."""
    if not available():
        return {
            "available": False,
            "reason": "this checkout has no `python -m pytest_rseq` (the gate is not merged)",
        }
    if quick:
        # Smoke mode: one scenario only, so the test suite stays fast; the
        # wall time of this is not the gate's.
        modes = {"--quick": ["--quick", "--only", QUICK_ONLY]}
    else:
        modes = {"--quick": ["--quick"], "full": []}
    rows = {}
    for name, args in modes.items():
        runs = [_one(args) for _ in range(1 if quick else repeats)]
        rows[name] = {
            "command": f"python -m pytest_rseq {' '.join(args)}".strip(),
            "wall_s": median(r["wall_s"] for r in runs),
            "wall_s_max": max(r["wall_s"] for r in runs),
            "exits": [r["exit"] for r in runs],
            "verdicts": [r.get("verdict") for r in runs],
            "last_line": runs[-1].get("last_line") or runs[-1].get("error"),
        }
    return {"available": True, "filtered": quick, "modes": rows}


def render(section: dict[str, Any]) -> str:
    """The section's table as text."""
    out = ["## 4. Environment gate wall time", ""]
    if section.get("filtered"):
        out += [f"(smoke mode: one scenario only, --only {QUICK_ONLY}; not the gate's time)", ""]
    if not section["available"]:
        out.append(f"not measured: {section['reason']}")
        return "\n".join(out)
    rows = [
        [
            m["command"],
            fmt(m["wall_s"], 2),
            fmt(m["wall_s_max"], 2),
            ",".join(str(e) for e in m["exits"]),
            str(m["last_line"])[:70],
        ]
        for m in section["modes"].values()
    ]
    out.append(table(["command", "median s", "max s", "exit codes", "last line"], rows))
    return "\n".join(out)
