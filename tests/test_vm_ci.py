"""The CI scripts' VM switches: a bad value is refused by name before anything runs.

Each script runs from a copy in a temporary folder, so even a broken check could only
touch that folder (``.ci/run`` starts by recreating ``.venv`` beside it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CI = Path(__file__).resolve().parent.parent / ".ci"


def _run_copy(tmp_path: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / ".ci").mkdir()
    copy = tmp_path / ".ci" / script
    shutil.copy2(CI / script, copy)
    return subprocess.run(
        [str(copy)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ci_run_refuses_a_bad_vm_switch_by_name(tmp_path: Path) -> None:
    proc = _run_copy(tmp_path, "run", PYTEST_RSEQ_CI_VM="yes")
    assert proc.returncode == 64, proc.stdout + proc.stderr
    assert "PYTEST_RSEQ_CI_VM must be 1, 0 or require, not 'yes'" in proc.stderr
    assert not (tmp_path / ".venv").exists()  # refused before the first step


@pytest.mark.parametrize(
    ("mode", "code", "words"),
    [
        ("fast", 64, "PYTEST_RSEQ_CI_ARM64 must be full, gate or off, not 'fast'"),
        ("off", 0, "arm64: skipped (PYTEST_RSEQ_CI_ARM64=off)"),
    ],
)
def test_ci_arm64_mode(tmp_path: Path, mode: str, code: int, words: str) -> None:
    proc = _run_copy(tmp_path, "arm64", PYTEST_RSEQ_CI_ARM64=mode)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert words in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ci"]  # nothing else done
