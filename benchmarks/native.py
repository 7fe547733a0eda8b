"""The benchmarks' tight native loops (native/bench.c), a cffi module of their own.

The shipped core (``pytest_rseq._prseq``) holds no benchmark code. This module,
``_prseq_bench``, is compiled on first use from the checkout, into
``build/bench/<hash of the sources>/``: a changed source gets a new build (and
the older ones are removed), an unchanged one is reused, and nothing of it is
installed or packaged. Building on demand rather than in setup.py keeps the
benchmark code out of every wheel and sdist install, and keeps it current with
the checkout the benchmarks run from.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build" / "bench"


def _load_path(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name} from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build_key() -> str:
    sources = _load_path("_prseq_sources", ROOT / "pytest_rseq" / "_sources.py")
    extra = (*(f"native/{name}" for name in sources.BENCH_ONLY), "native/build.py")
    return str(sources.source_hash(ROOT, extra))


def _compile(target: Path) -> None:
    """Compile the module into ``target`` (via a private directory, then one rename)."""
    build = _load_path("_prseq_build", ROOT / "native" / "build.py")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tmp-", dir=target.parent))
    try:
        build.bench_builder().compile(tmpdir=str(work), verbose=False)
        try:
            os.rename(work, target)
        except OSError:
            if not target.is_dir():  # not another process's build that won the race
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    for old in target.parent.iterdir():  # builds of sources that are gone
        if old != target and len(old.name) == 16 and not old.name.startswith("tmp-"):
            shutil.rmtree(old, ignore_errors=True)


@lru_cache(maxsize=1)
def load_bench() -> tuple[Any, Any]:
    """Return ``(ffi, lib)`` of the benchmark module, building it first when needed."""
    target = BUILD_DIR / _build_key()
    if not any(target.glob("_prseq_bench*.so")):
        _compile(target)
    module_file = next(target.glob("_prseq_bench*.so"))
    module = _load_path("_prseq_bench", module_file)
    return module.ffi, module.lib
