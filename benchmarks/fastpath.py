"""Section 1: ns per increment of the rseq counter and its alternatives, side by side.

Every repeat runs every variant at every thread count, in a rotating order,
so that the noise of a shared machine falls on all variants alike; ratios
(atomic / rseq, harness / tight loop) are taken inside each repeat and their
median is reported.

Two figures per run:
  * ``cpu_ns``: CPU time of the threads / ops. What one increment costs a CPU,
    including cache-line transfers; it does not count time a thread waits off
    CPU (a blocked mutex waiter, or another process holding the CPU).
  * ``wall_ns``: wall time x min(threads, CPUs) / ops. Throughput per CPU,
    including blocking; inflated when other processes take CPUs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .common import fmt, median, spread, table

THREADS = (1, 2, 4, 8)
# Total ops per run (split over the threads), by speed class: about 50-150 ms a run.
OPS_FAST = 128_000_000
OPS_ATOMIC = 16_000_000
OPS_MUTEX = 4_000_000
QUICK_DIVISOR = 1000


@dataclass(frozen=True)
class Variant:
    """One way to count: a tight native loop (bench.c) or a workload run by the harness."""

    name: str
    kind: str  # "tight" or "harness"
    target: int | str  # PRSEQ_BENCH_* constant or built-in workload name
    total_ops: int
    label: str


def variants(lib: Any) -> list[Variant]:
    """The variants measured, in table order."""
    table = (
        ("harness_counter", "harness", "counter", OPS_FAST,
         "rseq counter (cpu_id), through the harness"),
        ("harness_counter_mm_cid", "harness", "counter_mm_cid", OPS_FAST,
         "rseq counter (mm_cid), through the harness"),
        ("builtin_cpu_id", "tight", lib.PRSEQ_BENCH_BUILTIN_CPU_ID, OPS_FAST,
         "same counter code, one call, no harness"),
        ("builtin_mm_cid", "tight", lib.PRSEQ_BENCH_BUILTIN_MM_CID, OPS_FAST,
         "same mm_cid counter code, one call, no harness"),
        ("rseq_cpu_id", "tight", lib.PRSEQ_BENCH_RSEQ_CPU_ID, OPS_FAST,
         "rseq section hand-inlined in bench.c (cpu_id)"),
        ("rseq_mm_cid", "tight", lib.PRSEQ_BENCH_RSEQ_MM_CID, OPS_FAST,
         "rseq section hand-inlined in bench.c (mm_cid)"),
        ("atomic", "tight", lib.PRSEQ_BENCH_ATOMIC, OPS_ATOMIC,
         "one shared counter, atomic fetch_add"),
        ("getcpu_shard", "tight", lib.PRSEQ_BENCH_GETCPU_SHARD, OPS_ATOMIC,
         "sched_getcpu() + atomic fetch_add on the CPU's shard"),
        ("mutex", "tight", lib.PRSEQ_BENCH_MUTEX, OPS_MUTEX,
         "one counter behind one pthread mutex"),
    )  # fmt: skip
    return [Variant(*row) for row in table]


def _tight(ffi: Any, lib: Any, v: Variant, threads: int, per_thread: int) -> dict[str, Any]:
    out = ffi.new("struct prseq_bench_result *")
    rc = lib.prseq_bench_tight(v.target, threads, per_thread, out)
    if rc != 0:
        raise RuntimeError(f"{v.name}: {ffi.string(out.errmsg).decode(errors='replace')}")
    return {
        "ops": int(out.ops),
        "total": int(out.total),
        "aborts": int(out.aborts),
        "wall_s": out.wall_ns / 1e9,
        "cpu_s": out.cpu_ns / 1e9,
    }


def _harness(v: Variant, threads: int, per_thread: int) -> dict[str, Any]:
    """One run of a built-in workload through the native harness, in this process.

    The spec is built by the runner exactly as ``run(isolate=False)`` builds
    it (same invariant sampling, same batches); the oracle is skipped here and
    checked below (total == ops), and only the native run is timed.
    """
    from pytest_rseq.engine import driver
    from pytest_rseq.engine.spec import RunSpec

    spec = RunSpec.build(
        str(v.target),
        threads=threads,
        ops_per_thread=per_thread,
        duration=600.0,
        seed=1,
    )
    cpu0 = time.process_time()
    raw = driver.run_spec(spec)
    cpu1 = time.process_time()
    run = raw["runs"].get("rseq")
    if not run or run.get("error") or run.get("path") != "rseq":
        raise RuntimeError(f"{v.name}: the harness run failed: {raw}")
    return {
        "ops": run["ops"],
        "total": run["observed"],
        "aborts": run["aborts"],
        "wall_s": run["duration_s"],
        "cpu_s": cpu1 - cpu0,
    }


def measure(repeats: int, quick: bool, threads: tuple[int, ...] = THREADS) -> dict[str, Any]:
    """Run every variant at every thread count ``repeats`` times; return the JSON section."""
    from .native import load_bench

    ffi, lib = load_bench()
    cpus = len(__import__("os").sched_getaffinity(0))
    vs = variants(lib)
    samples: dict[str, dict[int, list[dict[str, Any]]]] = {
        v.name: {t: [] for t in threads} for v in vs
    }
    for rep in range(repeats):
        for t in threads:
            order = vs[rep % len(vs) :] + vs[: rep % len(vs)]
            for v in order:
                total = v.total_ops // (QUICK_DIVISOR if quick else 1)
                per_thread = max(1, total // t)
                r = (
                    _tight(ffi, lib, v, t, per_thread)
                    if v.kind == "tight"
                    else _harness(v, t, per_thread)
                )
                if r["total"] != r["ops"]:
                    raise RuntimeError(
                        f"{v.name} at {t} threads counted {r['total']} for {r['ops']} ops: "
                        "a benchmark variant is broken"
                    )
                used = min(t, cpus)
                r["cpu_ns"] = r["cpu_s"] * 1e9 / r["ops"]
                r["wall_ns"] = r["wall_s"] * 1e9 * used / r["ops"]
                r["busy"] = r["cpu_s"] / (r["wall_s"] * used) if r["wall_s"] > 0 else None
                samples[v.name][t].append(r)
    return summarize(vs, samples, threads, repeats, cpus)


def _ratios(
    samples: dict[str, dict[int, list[dict[str, Any]]]], num: str, den: str, t: int, key: str
) -> list[float]:
    """Per-repeat ratios num/den (same repeat, same thread count)."""
    return [
        a[key] / b[key] for a, b in zip(samples[num][t], samples[den][t], strict=True) if b[key] > 0
    ]


def _rows(
    vs: list[Variant], samples: dict[str, dict[int, list[dict[str, Any]]]], threads: tuple[int, ...]
) -> dict[str, Any]:
    """Each variant's medians and spreads per thread count."""
    rows: dict[str, Any] = {}
    for v in vs:
        rows[v.name] = {
            "label": v.label,
            "kind": v.kind,
            "threads": {
                str(t): {
                    "cpu_ns": spread(r["cpu_ns"] for r in samples[v.name][t]),
                    "wall_ns": spread(r["wall_ns"] for r in samples[v.name][t]),
                    "busy": median(r["busy"] for r in samples[v.name][t]),
                    "aborts": median(r["aborts"] for r in samples[v.name][t]),
                    "ops": samples[v.name][t][0]["ops"] if samples[v.name][t] else 0,
                }
                for t in threads
            },
        }
    return rows


def _claims(
    speedup: dict[str, Any], overhead: dict[str, Any], threads: tuple[int, ...]
) -> dict[str, Any]:
    """The fast-path claims, each judged on CPU time and on wall time."""
    multi = [str(t) for t in threads if t >= 2]
    return {
        "rseq_2x_faster_than_atomic_at_2plus_threads": {
            key: _all_at_least(
                [
                    speedup[key][n][t]
                    for n in ("harness_counter", "harness_counter_mm_cid")
                    for t in multi
                ],
                2.0,
            )
            for key in ("cpu_ns", "wall_ns")
        },
        "harness_overhead_at_most_20pct": {
            key: _all_at_most(
                [
                    overhead[key][p][str(t)]
                    for p in ("counter_vs_same_code", "counter_mm_cid_vs_same_code")
                    for t in threads
                ],
                0.20,
            )
            for key in ("cpu_ns", "wall_ns")
        },
    }


def summarize(
    vs: list[Variant],
    samples: dict[str, dict[int, list[dict[str, Any]]]],
    threads: tuple[int, ...],
    repeats: int,
    cpus: int,
) -> dict[str, Any]:
    """Medians, per-repeat ratios and the verdicts of the fast-path claims."""
    rows = _rows(vs, samples, threads)
    speedup: dict[str, Any] = {}
    overhead: dict[str, Any] = {}
    for key in ("cpu_ns", "wall_ns"):
        speedup[key] = {
            name: {str(t): median(_ratios(samples, "atomic", name, t, key)) for t in threads}
            for name in ("harness_counter", "harness_counter_mm_cid", "rseq_cpu_id")
        }
        overhead[key] = {
            pair: {str(t): _minus_one(median(_ratios(samples, a, b, t, key))) for t in threads}
            for pair, (a, b) in {
                "counter_vs_same_code": ("harness_counter", "builtin_cpu_id"),
                "counter_mm_cid_vs_same_code": ("harness_counter_mm_cid", "builtin_mm_cid"),
                "counter_vs_hand_inlined": ("harness_counter", "rseq_cpu_id"),
                "counter_mm_cid_vs_hand_inlined": ("harness_counter_mm_cid", "rseq_mm_cid"),
            }.items()
        }
    claims = _claims(speedup, overhead, threads)
    return {
        "repeats": repeats,
        "cpus": cpus,
        "threads": list(threads),
        "variants": rows,
        "speedup_vs_atomic": speedup,
        "harness_overhead": overhead,
        "claims": claims,
    }


def _minus_one(value: float | None) -> float | None:
    return None if value is None else value - 1.0


def _all_at_least(values: list[float | None], bound: float) -> bool | None:
    if not values or any(v is None for v in values):
        return None
    return all(v >= bound for v in values if v is not None)


def _all_at_most(values: list[float | None], bound: float) -> bool | None:
    if not values or any(v is None for v in values):
        return None
    return all(v <= bound for v in values if v is not None)


def render(section: dict[str, Any]) -> str:
    """The section's tables as text."""
    threads = [str(t) for t in section["threads"]]
    out = [
        f"## 1. ns per increment (median of {section['repeats']} repeats, "
        f"{section['cpus']} CPUs; cpu = thread CPU time / ops, "
        "wall = wall x min(threads, CPUs) / ops)",
        "",
    ]
    headers = ["variant", *(f"{t} thr cpu / wall" for t in threads), "what it is"]
    rows = []
    for name, row in section["variants"].items():
        cells = [name]
        for t in threads:
            cell = row["threads"][t]
            cells.append(f"{fmt(cell['cpu_ns']['median'])} / {fmt(cell['wall_ns']['median'])}")
        cells.append(row["label"])
        rows.append(cells)
    out.append(table(headers, rows))
    out += [
        "",
        "Speed-up against the shared atomic (atomic ns / variant ns, median of "
        "per-repeat ratios, cpu / wall):",
        "",
    ]
    out.append(
        table(
            ["variant", *(f"{t} thr" for t in threads)],
            _cpu_wall_rows(section["speedup_vs_atomic"], threads, lambda v: f"{fmt(v)}x"),
        )
    )
    out += [
        "",
        "Harness overhead (harness ns / tight-loop ns - 1, median of per-repeat "
        "ratios, cpu / wall):",
        "",
    ]
    out.append(
        table(
            ["harness vs", *(f"{t} thr" for t in threads)],
            _cpu_wall_rows(section["harness_overhead"], threads, _pct),
        )
    )
    out += [
        "",
        "Busy fraction of the threads' CPUs (cpu / (wall x CPUs used)); "
        "below ~0.9 the run did not get its CPUs (shared machine) or blocked (mutex):",
        "",
    ]
    rows = [
        [name, *(fmt(row["threads"][t]["busy"]) for t in threads)]
        for name, row in section["variants"].items()
    ]
    out.append(table(["variant", *(f"{t} thr" for t in threads)], rows))
    return "\n".join(out)


def _cpu_wall_rows(
    ratios: dict[str, Any], threads: Any, cell: Callable[[Any], str]
) -> list[list[str]]:
    """One row per name of ``ratios`` ({"cpu_ns": ..., "wall_ns": ...}): "cpu / wall" cells."""
    return [
        [
            name,
            *(
                f"{cell(ratios['cpu_ns'][name][t])} / {cell(ratios['wall_ns'][name][t])}"
                for t in threads
            ),
        ]
        for name in ratios["cpu_ns"]
    ]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"
