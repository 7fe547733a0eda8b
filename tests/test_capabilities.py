"""capabilities() against what glibc and the kernel say through other channels."""

from __future__ import annotations

import ctypes
import json
import os
import struct
from pathlib import Path

from pytest_rseq import capabilities

AT_RSEQ_FEATURE_SIZE = 27
AT_RSEQ_ALIGN = 28


def _auxv() -> dict[int, int]:
    data = Path("/proc/self/auxv").read_bytes()
    pairs = struct.iter_unpack("QQ", data)
    return dict(pairs)


def _glibc_rseq_size() -> int | None:
    libc = ctypes.CDLL(None)
    try:
        return ctypes.c_uint.in_dll(libc, "__rseq_size").value
    except ValueError:
        return None


def test_fingerprint_matches_auxv_and_glibc() -> None:
    caps = capabilities()
    auxv = _auxv()
    assert caps["feature_size"] == auxv.get(AT_RSEQ_FEATURE_SIZE, 0)
    assert caps["align"] == auxv.get(AT_RSEQ_ALIGN, 0)
    size = _glibc_rseq_size()
    assert caps["glibc_rseq_size"] == (size or 0)
    assert caps["owner"] == ("glibc" if size else "none")
    assert caps["cpus_allowed"] == sorted(os.sched_getaffinity(0))
    json.dumps(caps)


def test_fingerprint_on_this_kind_of_machine() -> None:
    """Debian glibc 2.36 registers 20 bytes; the kernel announces 28, aligned 32 (measured)."""
    caps = capabilities()
    if caps["glibc"] != "glibc 2.36" or not caps["rseq_available"]:
        import pytest

        pytest.skip(f"not the reference machine ({caps['glibc']}, kernel {caps['kernel']})")
    assert caps["owner"] == "glibc"
    assert caps["glibc_rseq_size"] == 20
    assert caps["feature_size"] == 28
    assert caps["align"] == 32
    # librseq's 20/32 rule: usable = min(32, feature size), so mm_cid is usable.
    assert caps["usable_size"] == 28
    assert caps["mm_cid_usable"] and caps["node_id_usable"]
