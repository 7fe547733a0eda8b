"""The summary's status words, totals and layout, and the xdist heartbeat, on hand-made rows."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pytest_rseq.plugin import rows as report_rows
from pytest_rseq.plugin import summary
from pytest_rseq.plugin.progress import Heartbeat

LONG_ID = (
    "tests/integration/very/deep/folder/test_a_file_with_a_long_name.py"
    "::TestAClass::test_a_function_with_a_long_name[param-1]"
)
CAUSES = {"signal": 12, "membarrier": 3, "preemption": 12_330}


def row(test: str = "t.py::test_a", **fields: Any) -> dict[str, Any]:
    """A row as the plugin makes it (``rows.make_row``), with the figures the summary shows."""
    base: dict[str, Any] = {
        "test": test,
        "index": 0,
        "worker": "main",
        "workload": "counter",
        "path": "rseq",
        "registration": "glibc",
        "ops_per_s": 190_139_037.0,
        "aborts": 12_345,
        "migrations": 2,
        "signals_delivered": 4_500,
        "churn": 0,
        "ok": True,
        "verdict": "ok",
        "showed_a_bug": False,
        "error": None,
        "per_cpu": [100, 50],
        "outcome": "passed",
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({"verdict": "ok"}, "ok"),
        ({"verdict": "bug", "outcome": "failed"}, "FAILED: bug"),
        ({"verdict": "bug"}, "caught"),  # the test passed: it expected the bug
        ({"verdict": "no-evidence", "outcome": "failed"}, "FAILED: no-evidence"),
        ({"verdict": "error"}, "error"),
        ({"verdict": "ok", "outcome": "failed"}, "FAILED: ok"),
        ({"verdict": "ok", "workload": "canary_racy"}, "missed"),
        ({"verdict": "bug", "outcome": "skipped"}, "skipped: bug"),
    ],
)
def test_status_reads_the_verdict_with_the_test_outcome(fields: dict[str, Any], shown: str) -> None:
    assert report_rows.status(row(**fields)) == shown


def test_totals_count_failed_tests_as_failures() -> None:
    rows = [
        row("t.py::test_racy_a", workload="canary_racy", verdict="bug", outcome="failed"),
        row("t.py::test_racy_b", workload="canary_racy", ok=False, verdict="bug",
            showed_a_bug=True, outcome="failed"),
        row("t.py::test_ok_a", verdict="ok"),
        row("t.py::test_ok_b"),
    ]  # fmt: skip
    assert report_rows.totals(rows) == {"failed (bug)": 2, "ok": 2}
    assert summary.totals_line(rows) == "4 stress run(s): 2 failed (bug), 2 ok"
    lines = summary.summary_lines(rows)
    assert not any("caught" in line for line in lines)
    caught = [row(verdict="bug"), row(verdict="ok")]
    assert summary.totals_line(caught) == "2 stress run(s): 1 caught, 1 ok"


def test_shorten_id_keeps_the_file_start_and_the_function() -> None:
    assert summary.shorten_id("t.py::test_a", 20) == "t.py::test_a"
    for width in (100, 80, 60):
        short = summary.shorten_id(LONG_ID, width)
        assert len(short) == width
        assert short.startswith("tests/integ")
        assert short.endswith("::test_a_function_with_a_long_name[param-1]")
        assert "..." in short
    tiny = summary.shorten_id(LONG_ID, 30)
    assert len(tiny) == 30 and tiny.startswith("tests/") and tiny.endswith("[param-1]")


@pytest.mark.parametrize("width", [100, 80])
@pytest.mark.parametrize("causes", [None, CAUSES], ids=["no-causes", "causes"])
def test_summary_fits_the_width_and_keeps_ids_whole(
    width: int, causes: dict[str, int] | None
) -> None:
    extra = {} if causes is None else {"aborts_by_cause": causes}
    tests = [
        "tests/test_percpu_counter.py::test_counter_is_exact_under_default_chaos",
        "tests/test_percpu_counter.py::test_counter_on_both_paths",
        "tests/test_canaries.py::test_racy_counter_is_consistent",
        LONG_ID,
    ]
    rows = [
        row(tests[0], verdict="ok", **extra),
        row(tests[1], verdict="ok", worker="gw1", index=1, **extra),
        row(tests[2], workload="canary_racy", verdict="bug", outcome="failed", **extra),
        row(tests[3], workload="canary_racy", verdict="bug", outcome="failed", **extra),
    ]
    lines = summary.summary_lines(rows, width=width)
    assert max(len(line) for line in lines) <= width, "\n".join(lines)
    text = "\n".join(lines)
    for test in tests[:3]:
        assert test in text  # whole, not cut at the start
    assert "tests/integration/very/deep/" in text
    assert "::test_a_function_with_a_long_name[param-1]" in text
    assert sum(line.rstrip().endswith("FAILED: bug") for line in lines) == 2
    assert "4 stress run(s): 2 failed (bug), 2 ok" in lines
    if causes is not None and width == 100:
        assert "sig/mb/pre" in lines[0] and "12/3/12,330" in text
        assert "sig/mb/pre: aborts caused by a signal, a membarrier, a preemption" in lines


def test_short_ids_get_one_line_per_run() -> None:
    rows = [row(verdict="ok"), row("t.py::test_b", verdict="bug", outcome="failed")]
    lines = summary.summary_lines(rows, width=100)
    assert lines[0].split()[0] == "test"
    assert lines[2].startswith("t.py::test_a ") and lines[2].endswith("ok")
    assert lines[3].startswith("t.py::test_b ") and lines[3].endswith("FAILED: bug")


def test_narrow_terminal_leaves_out_columns_and_says_which() -> None:
    rows = [row(LONG_ID, verdict="ok", aborts_by_cause=CAUSES)]
    lines = summary.summary_lines(rows, width=80)
    assert "churn" not in lines[0] and "verdict" in lines[0]
    assert any(line.startswith("(left out at 80 columns: churn") for line in lines)


def test_heartbeat_names_tests_running_longer_than_the_threshold() -> None:
    now = [0.0]
    beat = Heartbeat(lambda line: None, after_s=10.0, interval_s=3600, clock=lambda: now[0])
    try:
        beat.started("t.py::test_long", "gw0")
        now[0] = 5.0
        beat.started("t.py::test_short", "gw1")
        assert beat.lines() == []
        now[0] = 12.0
        assert beat.lines() == ["rseq: [gw0] t.py::test_long still running after 12 s"]
        now[0] = 20.0
        assert len(beat.lines()) == 2
        beat.finished("t.py::test_long", "gw0")
        beat.finished("t.py::test_short")  # its worker died: any worker
        assert beat.lines() == []
    finally:
        beat.close()


def test_heartbeat_thread_emits_and_stops() -> None:
    lines: list[str] = []
    emitted = threading.Event()

    def emit(line: str) -> None:
        lines.append(line)
        emitted.set()

    beat = Heartbeat(emit, after_s=0.0, interval_s=0.01)
    beat.started("t.py::test_a", "gw0")
    assert emitted.wait(5)
    beat.close()
    assert lines[0].startswith("rseq: [gw0] t.py::test_a still running after ")


def test_run_line_keeps_the_id_whole_and_drops_details_first() -> None:
    from pytest_rseq.plugin.session import run_line

    failed = row(LONG_ID, worker="gw1", index=1, workload="canary_racy", verdict="bug",
                 outcome="failed", duration_s=1.04)  # fmt: skip
    assert run_line(failed, 400) == (
        f"rseq: [gw1] {LONG_ID} #1: FAILED: bug (canary_racy rseq, 1.0 s)"
    )
    assert run_line(failed, 80) == f"rseq: [gw1] {LONG_ID} #1: FAILED: bug"
