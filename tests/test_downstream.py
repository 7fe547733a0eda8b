"""The example downstream project (examples/downstream): built from source with the
machine's C compiler, its own pytest suite run through the plugin, and its libraries
linted and run in "own" registration mode from here."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import pytest_rseq
from pytest_rseq import Workload, _native

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "downstream"
CC = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler on this machine")


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("percpu_build_lib", EXAMPLE / "build_lib.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example_libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The example's libraries, compiled from source by its own build step."""
    built: dict[str, Path] = _build_module().build(tmp_path_factory.mktemp("percpu"))
    return built


def test_example_suite_passes_through_the_plugin(
    example_libs: dict[str, Path], tmp_path: Path
) -> None:
    env = {**os.environ, "PERCPU_BUILD_DIR": str(example_libs["libpercpu.so"].parent)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            f"--basetemp={tmp_path / 'base'}",
            "-rfEs",
        ],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    summary = re.search(r"(\d+) passed", out)
    assert summary and int(summary.group(1)) >= 15, out[-3000:]
    assert not re.search(r"\d+ failed", out.splitlines()[-1]), out[-3000:]
    # The deliberately weak test fails mutation testing (xfail strict), its survivors named.
    assert "1 xfailed" in out.splitlines()[-1], out[-3000:]
    assert re.search(r"test_weak_single_thread_signals_only .*: killed \d/4", out), out[-3000:]
    assert "survived late-start@counter_op" in out, out[-3000:]


def test_example_correct_library_passes_lint(example_libs: dict[str, Path]) -> None:
    assert pytest_rseq.lint(example_libs["libpercpu.so"]) == []


def test_example_broken_library_fails_lint_on_its_bad_signature(
    example_libs: dict[str, Path],
) -> None:
    findings = pytest_rseq.lint(example_libs["libpercpu_broken.so"])
    assert [f.check for f in findings] == ["signature"]
    assert findings[0].function and findings[0].function.startswith("counter_bad_signature_op")


@pytest.mark.parametrize("symbol", ["percpu_counter", "percpu_freelist"])
def test_own_mode_hands_the_workload_a_real_rseq_area(
    example_libs: dict[str, Path], symbol: str
) -> None:
    """The example finds its area with prseq_rseq_area(); under "own" that is the
    harness's heap area (glibc's registration is off), and ops fail with -ENOSYS
    if the helper returned NULL."""
    result = pytest_rseq.run(
        Workload.from_library(example_libs["libpercpu.so"], symbol),
        registration="own",
        threads=2,
        duration=0.2,
    )
    result.assert_consistent()
    assert result.path == "rseq" and result.details["owner"] == "own"
    assert result.details["abi"]["glibc_size"] == 0
    assert result.ops > 0


def test_example_cross_compiles_for_aarch64_and_lints_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The aarch64 sections cannot run here; the linter checks them statically."""
    cross = shutil.which("aarch64-linux-gnu-gcc")
    if cross is None:
        pytest.skip("no aarch64 cross compiler on this machine")
    monkeypatch.setenv("CC", cross)
    libs = _build_module().build(tmp_path)
    assert pytest_rseq.lint(libs["libpercpu.so"]) == []
    findings = pytest_rseq.lint(libs["libpercpu_broken.so"])
    assert [f.check for f in findings] == ["signature"]
    sig = _native.load()[1].PRSEQ_RSEQ_SIG_AARCH64
    assert f"{sig:#010x}" in findings[0].message


LINTED_TEST = """
from pytest_rseq import Workload


def test_runs_the_library(rseq_stress):
    workload = Workload.from_library({path!r}, {symbol!r})
    rseq_stress(workload, threads=2, duration=0.1)
"""


@pytest.mark.parametrize(
    ("library", "symbol", "lint_flag", "outcome"),
    [
        ("libpercpu_broken.so", "percpu_counter_racy", False, {"passed": 1}),
        ("libpercpu_broken.so", "percpu_counter_racy", True, {"failed": 1}),
        ("libpercpu.so", "percpu_counter", True, {"passed": 1}),
    ],
)
def test_rseq_lint_option_lints_the_library_before_running_it(
    example_libs: dict[str, Path],
    pytester: pytest.Pytester,
    library: str,
    symbol: str,
    lint_flag: bool,
    outcome: dict[str, int],
) -> None:
    """--rseq-lint refuses a library with a bad section even when the test would pass."""
    pytester.makepyfile(LINTED_TEST.format(path=str(example_libs[library]), symbol=symbol))
    args = ["-p", "no:xdist", "--rseq-lint"] if lint_flag else ["-p", "no:xdist"]
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(**outcome)
    if outcome.get("failed"):
        result.stdout.fnmatch_lines(["*LintError*", "*signature*"])
