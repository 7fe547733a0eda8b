"""Builds the example's libraries once per test session (or uses $PERCPU_BUILD_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from build_lib import LIBRARIES, build


@pytest.fixture(scope="session")
def percpu_libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{library file name: path} of libpercpu.so (correct) and libpercpu_broken.so."""
    prebuilt = os.environ.get("PERCPU_BUILD_DIR")
    if prebuilt:
        libs = {name: Path(prebuilt) / name for name in LIBRARIES}
        missing = [str(p) for p in libs.values() if not p.is_file()]
        if missing:
            raise pytest.UsageError(f"PERCPU_BUILD_DIR lacks {', '.join(missing)}")
        return libs
    return build(tmp_path_factory.mktemp("percpu-build"))
