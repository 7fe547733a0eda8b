"""Shared helpers of the benchmarks: statistics, tables, and how busy the machine was."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC_STAT = Path("/proc/stat")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def median(values: Iterable[float]) -> float | None:
    """Median of the values, or None when there are none."""
    data = [v for v in values if v is not None]
    return statistics.median(data) if data else None


def spread(values: Iterable[float]) -> dict[str, float | None]:
    """min / median / max of the values (None when empty), for the JSON."""
    data = [v for v in values if v is not None]
    if not data:
        return {"min": None, "median": None, "max": None, "n": 0}
    return {"min": min(data), "median": statistics.median(data), "max": max(data), "n": len(data)}


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    """Format a number for a table; '-' for None."""
    if value is None:
        return "-"
    if abs(value) >= 10_000:
        return f"{value:,.0f}{unit}"
    return f"{value:.{digits}f}{unit}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render a Markdown table (readable in a terminal and pasteable into docs)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


@dataclass
class _Snapshot:
    wall: float
    busy_s: float
    steal_s: float
    own_s: float


def _snapshot() -> _Snapshot:
    busy = steal = 0.0
    try:
        first = PROC_STAT.read_text().splitlines()[0].split()
        # cpu user nice system idle iowait irq softirq steal guest guest_nice
        ticks = [int(v) for v in first[1:]]
        busy = sum(ticks[i] for i in (0, 1, 2, 5, 6) if i < len(ticks)) / CLOCK_TICKS
        steal = (ticks[7] if len(ticks) > 7 else 0) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return _Snapshot(time.monotonic(), busy, steal, own)


class LoadMeter:
    """Measures how many CPUs other processes kept busy while a section ran.

    The machine is shared, so every section records this next to its numbers:
    ``others_cpus`` is (all busy CPU time - this process and its children) /
    wall time, ``steal_cpus`` the hypervisor's steal time / wall time.
    """

    def __init__(self) -> None:
        self._start = _snapshot()

    def result(self) -> dict[str, float]:
        """Return wall_s, others_cpus and steal_cpus since construction."""
        end = _snapshot()
        wall = max(end.wall - self._start.wall, 1e-9)
        others = (end.busy_s - self._start.busy_s) - (end.own_s - self._start.own_s)
        return {
            "wall_s": round(wall, 3),
            "others_cpus": round(max(others, 0.0) / wall, 3),
            "steal_cpus": round((end.steal_s - self._start.steal_s) / wall, 3),
        }


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, CPUs, kernel, glibc, rseq ABI."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu_model": model,
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        import pytest_rseq

        caps = pytest_rseq.capabilities()
        info["pytest_rseq"] = pytest_rseq.__version__
        for key in ("glibc", "owner", "glibc_rseq_size", "feature_size", "mm_cid_usable"):
            info[key] = caps.get(key)
    except Exception as exc:  # the benchmark still reports what it can
        info["capabilities_error"] = f"{type(exc).__name__}: {exc}"
    return info
