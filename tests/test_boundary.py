"""Names and numbers that cross the C/Python boundary: C defines them, Python must agree.

The native core defines each of these once (prseq_core.h, pytest_rseq.h,
workloads.c) and exports it through the cffi cdef. Where Python keeps its own
copy (for use before the core is loaded, or as public API), these tests fail
as soon as the two disagree.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_rseq._native import load
from pytest_rseq.elf.lint import SIGNATURES
from pytest_rseq.engine import driver as _child
from pytest_rseq.engine import evidence, oracle, spec, workload


@pytest.fixture(scope="module")
def core() -> tuple[Any, Any]:
    return load()


def _constants(lib: Any, prefix: str) -> dict[str, int]:
    """The core's integer constants named ``prefix*``, by the rest of their name."""
    return {n[len(prefix) :]: getattr(lib, n) for n in dir(lib) if n.startswith(prefix)}


def test_builtin_workloads_are_the_cores(core: tuple[Any, Any]) -> None:
    ffi, lib = core
    names = []
    while (name := lib.prseq_builtin_name(len(names))) != ffi.NULL:
        names.append(ffi.string(name).decode())
    assert tuple(names) == workload.BUILTIN_WORKLOADS


def test_thread_limit_and_result_arrays(core: tuple[Any, Any]) -> None:
    ffi, lib = core
    assert spec.MAX_THREADS == lib.PRSEQ_MAX_THREADS
    fields = dict(ffi.typeof("struct prseq_result").fields)
    assert fields["slot_ops"].type.length == lib.PRSEQ_MAX_THREADS
    assert fields["shards"].type.length == lib.PRSEQ_MAX_SHARDS


def test_owners_and_paths(core: tuple[Any, Any]) -> None:
    _, lib = core
    owners = {value: name.lower() for name, value in _constants(lib, "PRSEQ_OWNER_").items()}
    assert owners == _child.OWNERS
    paths = {value: name.lower() for name, value in _constants(lib, "PRSEQ_PATH_").items()}
    assert paths == _child.PATHS


def test_every_violation_kind_has_a_description(core: tuple[Any, Any]) -> None:
    ffi, _ = core
    kinds = ffi.typeof("enum prseq_violation").elements
    assert set(kinds) == set(oracle.VIOLATIONS), kinds


def test_every_evidence_bit_has_a_name(core: tuple[Any, Any]) -> None:
    _, lib = core
    bits = _constants(lib, "PRSEQ_EVIDENCE_")
    assert {name.lower() for name in bits} == set(evidence.EVIDENCE_BITS)
    assert sorted(bits.values()) == [1 << i for i in range(len(bits))]


def test_linter_signatures_are_the_cores(core: tuple[Any, Any]) -> None:
    _, lib = core
    assert SIGNATURES == {
        "EM_X86_64": lib.PRSEQ_RSEQ_SIG_X86_64,
        "EM_AARCH64": lib.PRSEQ_RSEQ_SIG_AARCH64,
    }
