"""The benchmarks run and write well-formed JSON; the native loops they time count right.

No timing is checked here: numbers belong in docs/benchmarks.md, not in tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("fastpath", "injectors", "detection", "gate", "soak")


@pytest.fixture(scope="module")
def quick_json(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## 1. ns per increment" in proc.stdout
    assert f"JSON written to {out}" in proc.stdout
    return json.loads(out.read_text())


def test_quick_run_writes_every_section(quick_json: dict) -> None:
    assert quick_json["schema"] == "pytest-rseq-benchmarks/1"
    assert quick_json["quick"] is True
    assert set(quick_json["sections"]) == set(SECTIONS)
    assert set(quick_json["load"]) == set(SECTIONS)
    for load in quick_json["load"].values():
        assert load["wall_s"] >= 0 and load["others_cpus"] >= 0
    assert quick_json["machine"]["cpus_allowed"] >= 1


def test_fastpath_has_every_variant_and_thread_count(quick_json: dict) -> None:
    fp = quick_json["sections"]["fastpath"]
    assert fp["threads"] == [1, 2, 4, 8]
    expected = {
        "harness_counter",
        "harness_counter_mm_cid",
        "builtin_cpu_id",
        "builtin_mm_cid",
        "rseq_cpu_id",
        "rseq_mm_cid",
        "atomic",
        "getcpu_shard",
        "mutex",
    }
    assert set(fp["variants"]) == expected
    for name, row in fp["variants"].items():
        for t in ("1", "2", "4", "8"):
            cell = row["threads"][t]
            assert cell["ops"] > 0, (name, t)
            assert cell["cpu_ns"]["median"] > 0 and cell["wall_ns"]["median"] > 0, (name, t)
    for key in ("cpu_ns", "wall_ns"):
        assert set(fp["speedup_vs_atomic"][key]["harness_counter"]) == {"1", "2", "4", "8"}
        assert isinstance(fp["harness_overhead"][key]["counter_vs_same_code"]["2"], float)


def test_injector_and_detection_rows_are_complete(quick_json: dict) -> None:
    inj = quick_json["sections"]["injectors"]
    fields = {r["injector"] for r in inj["rows"]}
    assert fields == {
        "signals_hz",
        "affinity_hz",
        "cpuset_hz",
        "churn_hz",
        "fork_hz",
        "membarrier_hz",
    }
    for row in inj["rows"]:
        # A rate, or the error that kept it from being measured: never neither.
        assert row["achieved_hz"] is not None or row["errors"], row
    det = quick_json["sections"]["detection"]
    pairs = {(r["canary"], r["preset"]) for r in det["rows"]}
    assert ("canary_racy", "default") in pairs and ("canary_bad_signature", "none") in pairs
    for row in det["rows"]:
        assert row["caught"] <= row["trials"]
        assert row["trials"] > 0 or row["errors"], row
    latency = det["latency"]
    assert {r["canary"] for r in latency["rows"]} >= {"canary_exit_loss", "canary_stale_cpu"}
    for row in latency["rows"]:
        # A duration only when every run of that rung caught it.
        assert row["rungs"], row
        last = row["rungs"][-1]
        assert (row["always_caught_at_s"] is not None) == (last["caught"] == latency["runs"])


def test_must_show_is_judged_from_the_run(quick_json: dict) -> None:
    ms = quick_json["must_show"]
    assert set(ms["rseq_2x_faster_than_atomic_at_2plus_threads"]) == {"cpu_ns", "wall_ns"}
    assert "holds" in ms["canary_racy_default_caught_always_median_under_50ms"]
    assert set(ms["injector_rates"]) == {"signals_hz", "affinity_hz", "cpuset_hz", "churn_hz"}


def test_soak_counts_every_run_and_prints_one_line_per_half(quick_json: dict) -> None:
    soak = quick_json["sections"]["soak"]
    assert isinstance(soak["seed"], int)
    for half in ("correct", "canaries"):
        part = soak[half]
        assert sum(part["counts"].values()) == part["runs"] == len(part["results"]) > 0
        for result in part["results"]:
            assert result["verdict"] in ("ok", "bug", "no-evidence", "error")
            assert result["verdict"] == "ok" or result["reasons"], result
    claims = quick_json["must_show"]["soak_no_false_alarm_no_canary_ok"]
    assert claims["runs"] == soak["correct"]["runs"]


def test_gate_section_says_why_when_absent(quick_json: dict) -> None:
    gate = quick_json["sections"]["gate"]
    if gate["available"]:
        assert gate["modes"]["--quick"]["exits"][0] in (0, 1, 2)
    else:
        assert "not merged" in gate["reason"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--only", "bogus"], "bogus"),
        (["--repeats", "0"], "'0'"),
        (["--trials", "x"], "'x'"),
        (["--runs", "0"], "'0'"),
    ],
)
def test_bad_arguments_name_the_value(args: list[str], needle: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert needle in proc.stderr


def _tight(variant: int, threads: int, ops: int) -> tuple[int, object]:
    from benchmarks.native import load_bench

    ffi, lib = load_bench()
    out = ffi.new("struct prseq_bench_result *")
    return lib.prseq_bench_tight(variant, threads, ops, out), out


@pytest.mark.parametrize("variant", range(7))
def test_every_tight_loop_counts_every_op(variant: int) -> None:
    from benchmarks.native import load_bench

    _, lib = load_bench()
    assert variant < lib.PRSEQ_BENCH_NR_VARIANTS
    rc, out = _tight(variant, 4, 200_003)
    assert rc == 0
    assert out.ops == 4 * 200_003
    assert out.total == out.ops  # a lost or invented count would show here
    assert out.wall_ns > 0


def test_tight_loop_rejects_bad_input() -> None:
    from benchmarks.native import load_bench

    ffi, lib = load_bench()
    for variant, threads, ops in ((99, 1, 1), (0, 0, 1), (0, 1, 0)):
        rc, out = _tight(variant, threads, ops)
        assert rc < 0 and out.error > 0
        assert ffi.string(out.errmsg)
    assert lib.prseq_bench_variant_name(lib.PRSEQ_BENCH_NR_VARIANTS) == ffi.NULL


def test_shipped_core_holds_no_benchmark_code() -> None:
    from pytest_rseq._native import load

    ffi, lib = load()
    assert not [name for name in dir(lib) if "bench" in name.lower()]
    with pytest.raises(ffi.error):
        ffi.typeof("struct prseq_bench_result")


@pytest.mark.parametrize("workload", ["counter", "counter_mm_cid"])
def test_harness_batch_fast_path_counts_exact_budgets(workload: str) -> None:
    """The built-in counters run a batch per call; odd budgets must still come out exact."""
    import pytest_rseq

    res = pytest_rseq.run(
        workload, threads=3, ops_per_thread=64 * 1000 + 37, duration=30, isolate=False
    )
    # The budget ends the run (in milliseconds), evidence or not: the counts must be exact.
    assert res.verdict in ("ok", "no-evidence"), res.describe()
    assert res.ops == 3 * (64 * 1000 + 37)
    assert res.details["slot_ops"] == [64 * 1000 + 37] * 3
