"""The pytest plugin driven through real pytest runs (``pytester.runpytest_subprocess``).

Every inner stress run uses ``--rseq-smoke`` (0.1 s) so these stay cheap.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

SEED_FILE_TEST = """
import json, os
import pytest
from pytest_rseq import Chaos

def _log(result):
    with open(os.path.join(os.environ["SEED_LOG_DIR"], "seeds.jsonl"), "a") as fh:
        fh.write(json.dumps({"test": os.environ["PYTEST_CURRENT_TEST"].split(" ")[0],
                             "seed": result.seed, "threads": result.threads}) + "\\n")

@pytest.mark.rseq(threads=3)
def test_counter(rseq_stress):
    result = rseq_stress("counter")
    _log(result)
    result.assert_consistent()

def test_two_runs(rseq_stress):
    for _ in range(2):
        result = rseq_stress("counter", threads=2)
        _log(result)
        result.assert_consistent()

def test_canary_is_caught(rseq_stress):
    result = rseq_stress("canary_racy", threads=4)
    _log(result)
    assert not result.ok
"""

FAILING_TEST = """
def test_broken(rseq_stress):
    rseq_stress("canary_racy", threads=4).assert_consistent()
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An inner pytest run in a subprocess, every stress as a smoke run."""
    return pytester.runpytest_subprocess("--rseq-smoke", *args)


def seeds_of(pytester: pytest.Pytester) -> dict[str, list[int]]:
    """Run seeds per test from the inner tests' log, then clear the log."""
    log = pytester.path / "seeds.jsonl"
    found: dict[str, list[int]] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        found.setdefault(entry["test"], []).append(entry["seed"])
    log.unlink()
    return found


@pytest.fixture
def seeded(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester project with three stress tests that log their run seeds."""
    monkeypatch.setenv("SEED_LOG_DIR", str(pytester.path))
    pytester.makepyfile(test_seeded=SEED_FILE_TEST)
    return pytester


def header_seed(result: pytest.RunResult) -> int:
    match = re.search(r"^rseq: repeat with --rseq-seed=(\d+)", result.stdout.str(), re.M)
    assert match, result.stdout.str()
    return int(match.group(1))


def test_options_group_and_ini_keys(pytester: pytest.Pytester) -> None:
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    assert "rseq stress testing (pytest-rseq):" in help_text
    for flag in ("seed", "duration", "threads", "chaos", "path", "registration", "json"):
        assert f"--rseq-{flag}" in help_text and f"rseq_{flag} " in help_text
    assert "--rseq-allow-hotplug" in help_text and "--rseq-smoke" in help_text


def test_ini_values_are_defaults_and_flags_win(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nrseq_threads = 3\nrseq_chaos = cs_delay=8\nrseq_path = both\n")
    pytester.makepyfile(
        """
        def test_defaults(rseq_stress):
            r = rseq_stress("counter")
            print("GOT", r.threads, r.path, "cs_delay=8" in r.repro)
            r.assert_consistent()
        """
    )
    result = run(pytester, "-s")
    result.stdout.fnmatch_lines(["*GOT 3 both True*"])
    result = run(pytester, "-s", "--rseq-threads=2", "--rseq-path=rseq")
    result.stdout.fnmatch_lines(["*GOT 2 rseq True*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rseq-duration=abc"], "--rseq-duration: invalid value 'abc'"),
        (["--rseq-threads=0"], "--rseq-threads: invalid value '0'"),
        (["--rseq-chaos=default,signal_hz=5"], "unknown chaos field 'signal_hz'"),
        (["--rseq-chaos=hotplug_hz=1"], "needs --rseq-allow-hotplug"),
        (["--rseq-registration=kernel"], "--rseq-registration: invalid value 'kernel'"),
        (["--rseq-seed=soon"], "--rseq-seed: invalid value 'soon'"),
        (["-o", "rseq_duration=-1"], "ini rseq_duration: invalid value '-1'"),
        (["-p", "no:cacheprovider", "--rseq-seed=last"], "no previous seed"),
    ],
)
def test_bad_values_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_marker_keywords_are_checked_against_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rseq(durations=1)
        def test_typo(rseq_stress):
            pass

        @pytest.mark.rseq(path="sideways")
        def test_bad_value(rseq_stress):
            pass

        @pytest.mark.rseq(duration=0.05, threads=2, path="both", registration="auto")
        def test_fine(rseq_stress):
            rseq_stress().assert_consistent()
        """
    )
    result = run(pytester, "--strict-markers", "-p", "no:xdist")
    result.assert_outcomes(passed=1, errors=2)
    out = result.stdout.str()
    assert "unknown keyword(s) durations; run() takes workload, threads" in out
    assert "path must be one of rseq, fallback, both; got 'sideways'" in out
    # The same with xdist: an error on the test, not a crashed worker.
    run(pytester, "--strict-markers", "-n", "2").assert_outcomes(passed=1, errors=2)


def test_header_has_fingerprint_and_seed_flag(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_capabilities(rseq_capabilities):
            assert rseq_capabilities["kernel"] and "owner" in rseq_capabilities
        """
    )
    result = run(pytester, "--rseq-seed=1234", "--rseq-threads=2")
    result.stdout.fnmatch_lines(
        [
            "rseq: kernel *, glibc *; rseq *, area owner * (__rseq_size *, feature size *",
            "rseq: *cpuset*; CPUs allowed *, online *",
            "rseq: repeat with --rseq-seed=1234 --rseq-threads=2 --rseq-smoke",
        ]
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("xdist", [["-p", "no:xdist"], ["-n", "2"]], ids=["no-xdist", "n2"])
def test_summary_printed_once(seeded: pytest.Pytester, xdist: list[str]) -> None:
    result = run(seeded, *xdist)
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    assert out.count("rseq summary") == 1, out
    result.stdout.fnmatch_lines(
        [
            "*= rseq summary =*",
            "run*path*registration*ops/s*aborts*migrations*signals*verdict",
            "4 stress run(s): 1 caught, 3 ok",
            "per-CPU distribution of counted ops (all runs):",
            "  cpu   0 *%*",
        ]
    )
    result.stdout.fnmatch_lines_random(
        ["test_seeded.py::test_counter*", "test_seeded.py::test_canary_is_caught*", "*rseq*caught"]
    )


def test_json_report_rows_and_hosts(seeded: pytest.Pytester) -> None:
    run(seeded, "-n", "2", "--rseq-json=out/rseq.json").assert_outcomes(passed=3)
    doc = json.loads((seeded.path / "out" / "rseq.json").read_text())
    assert [r["test"] for r in doc["rows"]].count("test_seeded.py::test_two_runs") == 2
    assert len(doc["rows"]) == 4
    hosts = {h["id"]: h for h in doc["hosts"]}
    for row in doc["rows"]:
        assert row["worker"] in ("gw0", "gw1")
        assert row["host"] in hosts
        assert row["worker"] in hosts[row["host"]]["workers"]
        assert row["ops"] > 0 and row["ops_per_s"] > 0
        assert sum(row["per_cpu"]) == row["observed"]
        assert row["verdict"] == ("bug" if "canary" in row["test"] else "ok")
        assert row["outcome"] == "passed"
    fp = next(iter(hosts.values()))["fingerprint"]
    assert {"kernel", "glibc", "owner", "glibc_rseq_size", "cpuset_writable", "hostname"} <= set(fp)
    assert doc["verdicts"] == {"ok": 3, "bug": 1}
    assert doc["totals"] == {"caught": 1, "ok": 3}
    assert sum(doc["per_cpu"]) == sum(sum(r["per_cpu"]) for r in doc["rows"])
    assert doc["flags"][0] == f"--rseq-seed={doc['seed']}"


def test_seed_is_derived_per_test_repeatable_and_last(seeded: pytest.Pytester) -> None:
    first = run(seeded)
    seed = header_seed(first)
    seeds = seeds_of(seeded)
    assert len(seeds["test_seeded.py::test_two_runs"]) == 2
    assert len({s for v in seeds.values() for s in v}) == 4  # every run its own seed

    again = run(seeded, "--rseq-seed=last", "-n", "2")
    assert header_seed(again) == seed
    assert seeds_of(seeded) == seeds  # same seeds on xdist workers as without xdist

    alone = run(seeded, f"--rseq-seed={seed}", "test_seeded.py::test_counter")
    name = "test_seeded.py::test_counter"
    assert seeds_of(seeded) == {name: seeds[name]}
    assert header_seed(alone) == seed

    other = run(seeded)
    assert header_seed(other) != seed and seeds_of(seeded) != seeds


def test_failure_prints_seed_and_a_command_that_repeats_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fail=FAILING_TEST)
    result = run(pytester, "-n", "2")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "ConsistencyError: rseq stress BUG: workload=canary_racy" in out
    match = re.search(r"repeat this test alone:\n\s+(python -m pytest .*)", out)
    assert match, out
    session_seed = header_seed(result)
    assert f"session seed {session_seed}; this test's run seeds: " in out
    run_seed = int(re.search(r"this test's run seeds: (\d+)", out).group(1))  # type: ignore[union-attr]

    argv = shlex.split(match.group(1))
    assert argv[:4] == ["python", "-m", "pytest", "test_fail.py::test_broken"]
    repeat = subprocess.run(
        [sys.executable, *argv[1:]], cwd=pytester.path, capture_output=True, text=True
    )
    assert repeat.returncode == 1, repeat.stdout
    assert f"this test's run seeds: {run_seed}" in repeat.stdout


def test_dist_each_one_summary_and_a_row_per_worker(seeded: pytest.Pytester) -> None:
    result = run(seeded, "-n", "2", "--dist", "each", "--rseq-json=each.json")
    result.assert_outcomes(passed=6)
    assert result.stdout.str().count("rseq summary") == 1
    doc = json.loads((seeded.path / "each.json").read_text())
    assert len(doc["rows"]) == 8
    assert {r["worker"] for r in doc["rows"]} == {"gw0", "gw1"}
    by_worker: dict[str, list[tuple[str, int]]] = {}
    for row in doc["rows"]:
        by_worker.setdefault(row["worker"], []).append((row["test"], row["seed"]))
    assert sorted(by_worker["gw0"]) == sorted(by_worker["gw1"])  # identical collection and seeds


def test_tx_popen_with_explicit_python(seeded: pytest.Pytester) -> None:
    tx = f"popen//python={sys.executable}"
    result = run(seeded, "-d", "--tx", tx, "--tx", tx, "--rseq-json=tx.json")
    result.assert_outcomes(passed=3)
    assert result.stdout.str().count("rseq summary") == 1
    doc = json.loads((seeded.path / "tx.json").read_text())
    assert len(doc["rows"]) == 4 and len(doc["hosts"]) >= 1
    assert all(h["fingerprint"]["executable"] == sys.executable for h in doc["hosts"])


def test_metrics_keep_junit_xml_strict(seeded: pytest.Pytester) -> None:
    run(seeded, "-n", "2", "--junitxml=junit.xml", "-o", "junit_family=xunit2").assert_outcomes(
        passed=3
    )
    root = ET.parse(seeded.path / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 3
    allowed = {"skipped", "error", "failure", "system-out", "system-err"}
    for case in cases:
        assert {child.tag for child in case} <= allowed
        assert set(case.attrib) <= {"classname", "name", "time", "file", "line"}


def test_rows_survive_a_crashed_worker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, signal

        def test_a_stress(rseq_stress):
            rseq_stress("counter", threads=2).assert_consistent()

        def test_b_crash():
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = run(pytester, "-n", "2", "--rseq-json=crash.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_a_stress*ok"])
    assert len(json.loads((pytester.path / "crash.json").read_text())["rows"]) == 1


def test_smoke_caps_duration_and_hotplug_needs_opt_in(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_rseq import Chaos

        @pytest.mark.rseq(duration=600)
        def test_long(rseq_stress):
            result = rseq_stress("counter", threads=2)
            assert "duration=0.1," in result.repro

        def test_hotplug(rseq_stress):
            rseq_stress("counter", chaos=Chaos(hotplug_hz=1))
        """
    )
    result = run(pytester, "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*needs --rseq-allow-hotplug*"])


def test_a_long_run_reports_progress_on_the_terminal(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_long(rseq_stress):
            rseq_stress("counter", threads=2, duration=3.0).assert_consistent()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:xdist")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["rseq: counter rseq finished after *s"])
