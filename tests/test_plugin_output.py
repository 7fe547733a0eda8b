"""What the plugin prints, through real pytest runs: header, summary, tracebacks, skips, progress.

Every inner stress run is a smoke run (0.1 s) except the two progress tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

TWO_FAILING_TWO_PASSING = """
def test_counter_is_exact(rseq_stress):
    rseq_stress("counter", threads=2).assert_consistent()


def test_counter_on_both_paths(rseq_stress):
    rseq_stress("counter", threads=2, path="both").assert_consistent()


def test_clobbered_cpu_id_start_is_consistent(rseq_stress):
    rseq_stress("canary_clobber_cpu_id_start", threads=2).assert_consistent()


def test_clobbered_cpu_range_is_consistent(rseq_stress):
    rseq_stress("canary_clobber_cpu_range", threads=2).assert_consistent()
"""
"""Two passing tests and two that FAIL on a canary. The clobbering canaries break an
invariant on every op, so their runs show a bug without depending on chaos or load."""

HEADER_START = "rseq: kernel "
REPEAT = "rseq: repeat with --rseq-seed="


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An inner pytest run in a subprocess, every stress as a smoke run."""
    return pytester.runpytest_subprocess("--rseq-smoke", *args)


def summary_section(result: pytest.RunResult) -> list[str]:
    """The lines of the ``rseq summary`` section, up to the seed line."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "rseq summary" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("session seed:"))
    return lines[start : end + 1]


def plugin_lines(result: pytest.RunResult) -> list[str]:
    """Lines the plugin printed: ``rseq: ...`` lines and the summary's title."""
    return [line for line in result.outlines if line.startswith("rseq") or "rseq summary" in line]


def test_no_header_and_no_summary_without_rseq_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert plugin_lines(result) == [], result.stdout.str()
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=1)
    assert plugin_lines(result) == [], result.stdout.str()
    verbose = run(pytester, "-v")  # -v shows it even without rseq tests
    verbose.stdout.fnmatch_lines([f"{HEADER_START}*", "rseq: *cpuset*", f"{REPEAT}*"])


@pytest.mark.parametrize(
    "test_code",
    [
        "def test_caps(rseq_capabilities):\n    assert rseq_capabilities\n",
        "import pytest\n\n@pytest.mark.rseq(threads=2)\ndef test_marked():\n    pass\n",
    ],
    ids=["fixture", "marker"],
)
def test_header_once_after_collection_with_rseq_tests(
    pytester: pytest.Pytester, test_code: str
) -> None:
    pytester.makepyfile(test_code)
    result = run(pytester, "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["collected 1 item", f"{HEADER_START}*", "rseq: *", f"{REPEAT}*"])
    assert result.stdout.str().count(REPEAT) == 1


def test_header_under_xdist_at_the_first_rseq_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "def test_plain():\n    pass\n\n"
        "def test_counter(rseq_stress):\n    rseq_stress('counter', threads=2)\n"
    )
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert out.count(REPEAT) == 1 and out.count(HEADER_START) == 1, out


@pytest.mark.parametrize("columns", [100, 80])
def test_failed_canary_tests_are_failures_in_a_summary_that_fits(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    pytester.makepyfile(test_two_and_two=TWO_FAILING_TWO_PASSING)
    result = run(pytester, "-p", "no:xdist")
    result.assert_outcomes(passed=2, failed=2)
    lines = summary_section(result)
    text = "\n".join(lines)
    assert "4 stress run(s): 2 failed (bug), 2 ok" in lines, text
    assert "caught" not in text
    assert sum(line.rstrip().endswith("FAILED: bug") for line in lines) == 2, text
    assert max(len(line) for line in lines) <= columns, text
    for name in (
        "test_counter_is_exact",
        "test_counter_on_both_paths",
        "test_clobbered_cpu_id_start_is_consistent",
        "test_clobbered_cpu_range_is_consistent",
    ):
        assert f"test_two_and_two.py::{name}" in text  # whole, from the file name on


def test_a_failure_shows_the_test_line_not_plugin_source(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest_rseq

        def test_bad_workload(rseq_stress):
            rseq_stress("countr")

        def test_bad_threads():
            pytest_rseq.run("counter", threads=0)

        def test_clobbered(rseq_stress):
            rseq_stress("canary_clobber_cpu_range", threads=2).assert_consistent()
        """
    )
    result = run(pytester, "-p", "no:xdist")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            '>       rseq_stress("countr")',
            "E       ValueError: unknown workload 'countr'; built-in workloads: counter*",
            '>       pytest_rseq.run("counter", threads=0)',
            "E       ValueError: threads must be between 1 and *, got 0",
            '>       rseq_stress("canary_clobber_cpu_range", threads=2).assert_consistent()',
            "E       pytest_rseq.errors.ConsistencyError: rseq stress BUG: *",
        ]
    )
    for plugin_source in ("runner.py", "fixtures.py", "result.py", "workload.py", "def run("):
        assert plugin_source not in out, out
    # --full-trace still shows every frame.
    full = run(pytester, "-p", "no:xdist", "--full-trace", "-k", "bad_threads")
    assert "runner.py" in full.stdout.str()


def test_a_skip_from_the_fixture_names_the_test_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_skipper="""
        from pytest_rseq import Chaos

        def test_hotplug(rseq_stress):
            rseq_stress("counter", chaos=Chaos(hotplug_hz=1))
        """
    )
    result = run(pytester, "-rs", "-p", "no:xdist")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] test_skipper.py:4: *needs --rseq-allow-hotplug"])
    assert "fixtures.py" not in result.stdout.str()


def test_xdist_controller_prints_a_line_per_finished_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_two_and_two=TWO_FAILING_TWO_PASSING)
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "rseq: [[]gw?[]] test_two_and_two.py::test_counter_is_exact: ok (counter rseq, * s)",
            "rseq: [[]gw?[]] test_two_and_two.py::test_counter_on_both_paths: ok*",
            "rseq: [[]gw?[]] test_two_and_two.py::test_clobbered_cpu_id_start_is_consistent: "
            "FAILED: bug*",
            "rseq: [[]gw?[]] test_two_and_two.py::test_clobbered_cpu_range_is_consistent: "
            "FAILED: bug*",
        ]
    )
    lines = summary_section(result)
    assert "4 stress run(s): 2 failed (bug), 2 ok" in lines


def test_xdist_controller_heartbeat_for_a_run_over_10_s(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_long="""
        def test_long(rseq_stress):
            rseq_stress("counter", threads=1, duration=13.0).assert_consistent()
        """
    )
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "rseq: [[]gw?[]] test_long.py::test_long still running after 1? s",
            "rseq: [[]gw?[]] test_long.py::test_long: ok (counter rseq, 1?.? s)",
        ]
    )


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _driver_pids(pid: int) -> list[int]:
    """The descendants of ``pid`` that run the stress driver (a run's child process)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "pytest_rseq.engine.driver" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def test_ctrl_c_says_interrupted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_long(rseq_stress):
            rseq_stress("counter", threads=1, duration=60.0)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # As a terminal's Ctrl-C finds it: a shell starts background jobs with
        # SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
        preexec_fn=_sigint_default,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("rseq: counter rseq started"):
            break
    # Ctrl-C once the run's own child process (the driver) exists: the run is
    # in progress (any child would do only if the session had no other).
    while not _driver_pids(proc.pid) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        drivers = _driver_pids(proc.pid)
        proc.kill()
        for pid in drivers:  # its own session: not killed with pytest
            os.kill(pid, signal.SIGKILL)
        pytest.fail("pytest ignored Ctrl-C")
    out = "".join(seen) + rest
    assert "rseq: counter rseq interrupted after " in out, out
    assert "finished after" not in out
