"""``--rseq-json`` / ``rseq_json`` that cannot be written is a usage error at start (exit 4),
naming the option and the path; nothing runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TEST_FILE = """
def test_runs(tmp_path_factory):
    open({marker!r}, "w").close()
"""


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, Path]:
    marker = pytester.path / "test-ran"
    pytester.makepyfile(TEST_FILE.format(marker=str(marker)))
    return pytester.runpytest_subprocess(*args), marker


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("missing-dir/report.json", "does not exist"),
        (".", "is a directory"),
        ("/proc/report.json", "cannot write there"),
    ],
)
def test_unwritable_json_path_is_a_usage_error(
    pytester: pytest.Pytester, value: str, why: str
) -> None:
    result, marker = _run(pytester, f"--rseq-json={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--rseq-json: invalid value {value!r}*{why}*"])
    assert not marker.exists()


def test_unwritable_json_path_from_the_ini_key_names_the_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nrseq_json = nowhere/report.json\n")
    result, marker = _run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini rseq_json: invalid value 'nowhere/report.json'*"])
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 directory anyway")
def test_read_only_directory_is_a_usage_error(pytester: pytest.Pytester) -> None:
    folder = pytester.path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result, marker = _run(pytester, "--rseq-json=ro/report.json")
    finally:
        folder.chmod(0o755)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--rseq-json*ro/report.json*cannot write there*"])
    assert not marker.exists()


def test_writable_path_is_accepted_and_probe_leaves_nothing(pytester: pytest.Pytester) -> None:
    (pytester.path / "out").mkdir()
    result, marker = _run(pytester, "--rseq-json=out/report.json")
    assert result.ret == 0
    assert marker.exists()
    assert [p.name for p in (pytester.path / "out").iterdir()] == ["report.json"]
