"""Fingerprint of the native sources, shared by the build and the import check.

The build embeds this hash in the compiled core; importing from a source
checkout recomputes it, so an editable install whose C was edited after the
last build refuses to load instead of running stale code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SOURCE_SUFFIXES = (".c", ".h")
BENCH_ONLY = ("bench.c", "bench.h")
"""native/ files compiled into the benchmark module only, never into the core."""


def source_files(project_root: Path) -> list[Path]:
    """Return the C sources and headers that make up the compiled core."""
    native = project_root / "native"
    header = project_root / "pytest_rseq" / "include" / "pytest_rseq.h"
    files = sorted(
        p
        for p in native.rglob("*")
        if p.suffix in SOURCE_SUFFIXES and p.is_file() and p.name not in BENCH_ONLY
    )
    return [*files, header]


def source_hash(project_root: Path, extra: tuple[str, ...] = ()) -> str:
    """Return a sha256 over the names and contents of the native sources.

    ``extra`` names more files (relative to the project root) to hash after them.
    """
    digest = hashlib.sha256()
    for path in [*source_files(project_root), *(project_root / name for name in extra)]:
        digest.update(path.relative_to(project_root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
