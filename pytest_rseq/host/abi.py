"""The rseq ABI of this process, as the native core's ``prseq_abi_probe`` reports it."""

from __future__ import annotations

from typing import Any

from .._native import load

OWNERS = {0: "none", 1: "glibc", 2: "own", 3: "workload"}


_ABI_FIELDS = (
    "glibc_symbols",
    "rseq_offset",
    "glibc_size",
    "glibc_flags",
    "feature_size",
    "align",
    "usable_size",
    "glibc_cpu_id",
    "syscall_errno",
    "available",
    "owner",
    "mm_cid_usable",
    "node_id_usable",
    "own_size",
    "own_align",
)


def probe_abi() -> dict[str, Any]:
    """Return the rseq ABI of this process, as ``struct prseq_abi_info`` reports it."""
    ffi, lib = load()
    info = ffi.new("struct prseq_abi_info *")
    lib.prseq_abi_probe(info)
    data: dict[str, Any] = {name: int(getattr(info, name)) for name in _ABI_FIELDS}
    data["owner"] = OWNERS.get(data["owner"], "none")
    return data
