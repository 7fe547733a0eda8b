"""cffi builders (API mode): the native core, pytest_rseq._prseq, and the benchmarks' loops.

The cdef is read from the real headers (the parts between the cffi-cdef
markers), and the package version and a hash of the sources are compiled in,
so pytest_rseq refuses to import a stale build.

``ffibuilder`` is the shipped core (setup.py builds it). ``bench_builder()``
is native/bench.c over its own copy of the core sources it calls, as a
separate module that is never shipped: benchmarks/native.py builds it on
first use.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from cffi import FFI

NATIVE = Path(__file__).resolve().parent
ROOT = NATIVE.parent
INCLUDE = ROOT / "pytest_rseq" / "include"
SOURCES = [
    "abi.c",
    "util.c",
    "workloads.c",
    "counters.c",
    "canaries.c",
    "harness.c",
    "setup.c",
    "supervise.c",
    "worker.c",
    "collect.c",
    "chaos.c",
    "chaos_cpu.c",
    "chaos_sys.c",
    "chaos_fork.c",
    "evidence.c",
    "aim.c",
    "loader.c",
]
"""The core's C files: everything the shipped module is compiled from."""
BENCH_SOURCES = ["bench.c", "abi.c", "util.c", "workloads.c", "counters.c", "canaries.c"]
"""The benchmark module's C files: bench.c and the core code it runs."""
BENCH_MODULE = "_prseq_bench"
CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-fno-strict-aliasing"]
_MARKED = re.compile(r"/\* cffi-cdef-begin \*/(.*?)/\* cffi-cdef-end \*/", re.S)


def read_cdef(*headers: Path) -> str:
    """Return the cffi-cdef sections of the given headers, in order."""
    parts = []
    for header in headers:
        found = _MARKED.findall(header.read_text())
        if not found:
            raise RuntimeError(f"{header} has no cffi-cdef section")
        parts.extend(found)
    return "\n".join(parts)


def _load_module(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _relative(path: Path) -> str:
    # setuptools wants source paths relative to the project root (the cwd).
    return os.path.relpath(path, os.getcwd())


VERSION = _load_module("_prseq_version", ROOT / "pytest_rseq" / "_version.py").__version__
SOURCE_HASH = _load_module("_prseq_sources", ROOT / "pytest_rseq" / "_sources.py").source_hash(ROOT)

ffibuilder = FFI()
ffibuilder.cdef(read_cdef(INCLUDE / "pytest_rseq.h", NATIVE / "prseq_core.h"))
ffibuilder.set_source(
    "pytest_rseq._prseq",
    f"""
#include "prseq_core.h"
const char *prseq_build_version(void) {{ return "{VERSION}"; }}
const char *prseq_source_hash(void) {{ return "{SOURCE_HASH}"; }}
""",
    sources=[_relative(NATIVE / name) for name in SOURCES],
    include_dirs=[_relative(NATIVE), _relative(INCLUDE)],
    # Hidden by default: loader.c puts this module in the global scope, so only
    # PyInit__prseq and prseq_harness_rseq_area may be visible to workloads.
    extra_compile_args=[*CFLAGS, "-fvisibility=hidden"],
    libraries=["pthread"],
)


def bench_builder() -> FFI:
    """Return the builder of the benchmark module (``_prseq_bench``, absolute paths).

    Its cdef is bench.h alone; the core code it calls is compiled into it
    hidden, so it shares no symbol with the shipped core.
    """
    ffi = FFI()
    ffi.cdef(read_cdef(NATIVE / "bench.h"))
    ffi.set_source(
        BENCH_MODULE,
        '#include "bench.h"\n',
        sources=[str(NATIVE / name) for name in BENCH_SOURCES],
        include_dirs=[str(NATIVE), str(INCLUDE)],
        extra_compile_args=[*CFLAGS, "-fvisibility=hidden"],
        libraries=["pthread"],
    )
    return ffi


if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(ROOT / "build" / "cffi"), verbose=True)
