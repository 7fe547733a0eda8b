"""``--rseq-json`` / ``rseq_json`` that cannot be written is a usage error at start (exit 4),
naming the option and the path; nothing runs. Missing folders under a writable one are
created when the report is written, as before."""

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
    (pytester.path / "a-file").write_text("")
    pytester.makepyfile(TEST_FILE.format(marker=str(marker)))
    return pytester.runpytest_subprocess(*args), marker


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a-file/report.json", "a-file is not a directory"),
        ("a-file/deeper/report.json", "a-file is not a directory"),
        (".", "is a directory"),
        ("/proc/report.json", "cannot write in /proc"),
        ("/proc/missing/report.json", "cannot write in /proc"),
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
    pytester.makeini("[pytest]\nrseq_json = a-file/report.json\n")
    result, marker = _run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini rseq_json: invalid value 'a-file/report.json'*"])
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
    result.stderr.fnmatch_lines(["*--rseq-json*ro/report.json*cannot write in*ro*"])
    assert not marker.exists()


def test_writable_paths_are_accepted_and_the_check_leaves_nothing(
    pytester: pytest.Pytester,
) -> None:
    """An existing folder, and missing folders under a writable one (created at the end)."""
    (pytester.path / "out").mkdir()
    for value in ("out/report.json", "new/deeper/report.json"):
        result, marker = _run(pytester, f"--rseq-json={value}")
        assert result.ret == 0, result.stderr.str()
        assert marker.exists()
    assert sorted(p.name for p in (pytester.path / "out").iterdir()) == ["report.json"]
    assert (pytester.path / "new" / "deeper" / "report.json").exists()
    assert not list(pytester.path.glob("**/.rseq-json-probe-*"))
