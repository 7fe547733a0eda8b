"""The plugin's pieces in-process: chaos specs, flags, seeds, tables, chart, live line."""

from __future__ import annotations

import json
import threading

import pytest

from pytest_rseq import Chaos
from pytest_rseq.engine import seeds
from pytest_rseq.engine.result import StressResult
from pytest_rseq.gate import report
from pytest_rseq.plugin import check_marker, options, summary
from pytest_rseq.plugin import rows as report_rows
from pytest_rseq.plugin.options import Settings
from pytest_rseq.plugin.progress import LiveLine


def make_result(**overrides: object) -> StressResult:
    base: dict[str, object] = {
        "ok": True,
        "workload": "counter",
        "path": "rseq",
        "registration": "glibc",
        "threads": 2,
        "expected": 100,
        "observed": 100,
        "per_cpu": [60, 40],
        "ops": 100,
        "aborts": 3,
        "migrations": 1,
        "signals_delivered": 0,
        "affinity_changes": 0,
        "cpuset_shifts": 0,
        "threads_started": 5,
        "forks": 0,
        "membarriers": 0,
        "invariant_violations": 0,
        "crash": None,
        "seed": 7,
        "duration_s": 0.5,
    }
    base.update(overrides)
    return StressResult(**base)  # type: ignore[arg-type]


def test_chaos_spec_presets_and_overrides() -> None:
    assert options.parse_chaos("none") == Chaos()
    assert options.parse_chaos("default") == Chaos.default()
    spec = options.parse_chaos("default, signals_hz=5000,cs_delay=16")
    assert spec == Chaos(**{**Chaos.default().to_dict(), "signals_hz": 5000, "cs_delay": 16})
    for bad, why in [
        ("chaotic", "unknown preset 'chaotic'"),
        ("signals_hz=lots", "signals_hz needs a number"),
        ("signals_hz=-1", "must be finite and >= 0"),
        ("fork_hz=1e9", "above the limit"),
    ]:
        with pytest.raises(pytest.UsageError, match=why):
            options.parse_chaos(bad)


def test_flags_repeat_the_settings() -> None:
    settings = Settings(
        duration=0.5,
        threads=3,
        chaos=Chaos(signals_hz=100, cs_delay=4),
        path="both",
        registration="own",
        smoke=True,
    )
    flags = options.as_flags(settings, 42)
    assert flags == [
        "--rseq-seed=42",
        "--rseq-duration=0.5",
        "--rseq-threads=3",
        "--rseq-chaos=signals_hz=100,cs_delay=4",
        "--rseq-path=both",
        "--rseq-registration=own",
        "--rseq-smoke",
    ]
    chaos_value = flags[3].split("=", 1)[1]
    assert options.parse_chaos(chaos_value) == settings.chaos
    assert options.as_flags(Settings(chaos=Chaos()), 1)[1] == "--rseq-chaos=none"


def test_derived_seeds_are_stable_distinct_and_63_bit() -> None:
    a = seeds.derive(1, "t.py::test_a", 0)
    assert a == seeds.derive(1, "t.py::test_a", 0)
    others = {
        seeds.derive(2, "t.py::test_a", 0),
        seeds.derive(1, "t.py::test_b", 0),
        seeds.derive(1, "t.py::test_a", 1),
    }
    assert a not in others and len(others) == 3
    assert all(0 <= s < 2**63 for s in [a, *others])


def test_marker_check_names_keyword_and_value() -> None:
    assert check_marker((), {"threads": 2, "chaos": Chaos.default()}) is None
    assert "positional" in (check_marker(("counter",), {}) or "")
    assert "unknown keyword(s) thread;" in (check_marker((), {"thread": 2}) or "")
    assert "threads must be between 1 and" in (check_marker((), {"threads": 0}) or "")
    assert "chaos must be a Chaos" in (check_marker((), {"chaos": "default"}) or "")
    assert "isolate must be True or False" in (check_marker((), {"isolate": "yes"}) or "")


def test_rows_are_json_safe_and_carry_the_run_verdict() -> None:
    row = report_rows.make_row(make_result(), test="t::a", index=0, worker="gw0", host="h-1")
    assert json.loads(json.dumps(row)) == row
    assert row["churn"] == 3 and row["verdict"] == "ok"
    assert row["aborts_by_cause"] == {"signal": 0, "membarrier": 0, "preemption": 3}

    def verdict(**overrides: object) -> str:
        row = report_rows.make_row(
            make_result(**overrides), test="t", index=0, worker="m", host="h"
        )
        return str(row["verdict"])

    # Results built by hand: StressResult infers the verdict from ok, lost counts and error.
    assert verdict(ok=False, observed=90) == "bug"
    assert verdict(workload="canary_racy", ok=False, crash="SIGSEGV") == "bug"
    assert verdict(ok=False, error="injector failed") == "error"
    assert verdict(ok=False) == "no-evidence"


def test_rows_take_the_results_verdict_and_abort_causes_when_it_has_them() -> None:
    causes = {"signal": 2, "membarrier": 0, "preemption": 1}

    class Newer(StressResult):
        def to_dict(self) -> dict[str, object]:
            return {**super().to_dict(), "verdict": "no-evidence", "aborts_by_cause": causes}

    base = make_result()
    newer = Newer(**{f: getattr(base, f) for f in base.__dataclass_fields__})
    row = report_rows.make_row(newer, test="t::a", index=0, worker="main", host="h")
    assert row["verdict"] == "no-evidence" and row["aborts_by_cause"] == causes


def test_summary_table_and_per_cpu_chart() -> None:
    rows = [
        report_rows.make_row(make_result(), test="t::a", index=0, worker="main", host="h"),
        report_rows.make_row(
            make_result(per_cpu=[0, 100, 20], ok=False, observed=90),
            test="t::b",
            index=1,
            worker="gw1",
            host="h",
        ),
    ]
    rows = [{**rows[0], "outcome": "passed"}, {**rows[1], "outcome": "failed"}]
    lines = summary.summary_lines(rows, width=120)
    assert lines[0].split() == [
        "test", "path", "registration", "ops/s", "aborts", "sig/mb/pre", "migrations", "signals",
        "churn", "verdict",
    ]  # fmt: skip
    assert lines[2].startswith("t::a ") and lines[2].endswith("ok")
    assert lines[3].startswith("t::b #1 [gw1]") and lines[3].endswith("FAILED: bug")
    assert "2 stress run(s): 1 failed (bug), 1 ok" in lines
    assert report_rows.per_cpu_totals(rows) == [60, 140, 20]
    chart = report_rows.per_cpu_chart(rows)
    assert chart[2] == "  cpu   1 " + "#" * 40 + "  63.6%  140"
    assert chart[1].count("#") == round(40 * 60 / 140)
    assert report_rows.per_cpu_chart([]) == ["per-CPU distribution: no ops counted"]


def test_host_id_ignores_the_cpu_the_probe_ran_on() -> None:
    fp = {"hostname": "h", "kernel": "6.18", "glibc_cpu_id": 0}
    assert report.host_id(fp) == report.host_id({**fp, "glibc_cpu_id": 1})
    assert report.host_id(fp) != report.host_id({**fp, "kernel": "6.19"})


def test_fingerprint_lines_say_unavailable_and_cgroup() -> None:
    fp = {
        "kernel": "6.18",
        "machine": "x86_64",
        "glibc": "glibc 2.36",
        "rseq_available": False,
        "owner": "none",
        "glibc_rseq_size": 0,
        "feature_size": 28,
        "align": 32,
        "mm_cid_usable": False,
        "cgroup_version": 2,
        "cpuset_writable": False,
        "cpuset_reason": "no cpuset controller",
        "cpus_allowed": [0, 2],
        "cpus_online": "0-3",
    }
    first, second = report.fingerprint_lines(fp)
    assert "rseq UNAVAILABLE, area owner none (__rseq_size 0, feature size 28" in first
    assert second == "cpuset not writable (no cpuset controller); CPUs allowed 0,2, online 0-3"
    fp.update(cpuset_writable=True, cgroup_version=1)
    assert report.fingerprint_lines(fp)[1].startswith("cgroup v1 cpuset writable;")


def test_live_line_rewrites_on_a_tty_and_logs_elsewhere() -> None:
    emitted: list[tuple[str, bool]] = []
    ticks = threading.Event()
    now = [100.0]

    def emit(text: str, rewrite: bool) -> None:
        emitted.append((text, rewrite))
        if len(emitted) >= 3:
            ticks.set()

    with LiveLine(emit, "counter rseq", 10.0, tty=True, clock=lambda: now[0], interval_s=0.01):
        now[0] = 105.0
        assert ticks.wait(5)
    assert emitted[0] == ("", False)
    assert ("rseq: counter rseq running   5.0 s of 10.0 s ( 50%)", True) in emitted
    assert emitted[-1] == ("rseq: counter rseq finished after 5.0 s", True)

    logged: list[tuple[str, bool]] = []
    with LiveLine(lambda t, r: logged.append((t, r)), "x", 4.0, tty=False, clock=lambda: 0.0):
        pass
    assert logged == [
        ("rseq: x started, deadline 4.0 s", False),
        ("rseq: x finished after 0.0 s", False),
    ]


@pytest.mark.parametrize(
    ("error", "ending"),
    [(KeyboardInterrupt, "interrupted"), (ValueError, "stopped by ValueError")],
)
def test_live_line_says_how_a_run_ended(error: type[BaseException], ending: str) -> None:
    logged: list[str] = []
    line = LiveLine(lambda t, r: logged.append(t), "x", 4.0, tty=False, clock=lambda: 0.0)
    with pytest.raises(error), line:
        raise error()
    assert logged[1:] == [f"rseq: x {ending} after 0.0 s"]


def test_a_row_gets_the_outcome_of_its_test() -> None:
    from types import SimpleNamespace

    from pytest_rseq.plugin import _with_outcome

    row = report_rows.make_row(
        make_result(ok=False, observed=90), test="t::a", index=0, worker="main", host="h"
    )
    failed = SimpleNamespace(outcome="failed", passed=False)
    assert _with_outcome(row, failed) == {**row, "outcome": "failed"}  # type: ignore[arg-type]
    assert row["verdict"] == "bug"


@pytest.mark.parametrize("bad", ["abc", "0", "-5", "nan", "inf"])
def test_child_grace_env_rejects_a_bad_value_by_name(bad: str) -> None:
    from pytest_rseq.engine.deadlines import GRACE_ENV, child_grace_s

    with pytest.raises(ValueError, match=f"{GRACE_ENV}='{bad}'"):
        child_grace_s(bad)


def test_child_grace_env_default_and_value() -> None:
    from pytest_rseq.engine.deadlines import child_grace_s

    assert child_grace_s(None) == child_grace_s("") == 30.0
    assert child_grace_s("600") == 600.0
