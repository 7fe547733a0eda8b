"""``capabilities()``: the fingerprint of what this machine offers rseq code."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

TRACEFS_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def _glibc_version() -> str | None:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def perf_tracepoints() -> bool:
    """True when the ``rseq:rseq_ip_fixup`` tracepoint is visible in tracefs."""
    return any(Path(root, "events", "rseq", "rseq_ip_fixup").is_dir() for root in TRACEFS_ROOTS)


def capabilities() -> dict[str, Any]:
    """Return the fingerprint as a JSON-safe mapping.

    Keys: kernel, machine, glibc, owner (who registered this thread's area:
    ``"glibc"``, ``"own"`` or ``"none"``), rseq_available, syscall_errno,
    rseq_offset, glibc_rseq_size, glibc_rseq_flags, feature_size, align,
    usable_size, glibc_cpu_id, mm_cid_usable, node_id_usable, own_area_size,
    perf_tracepoints, cpus_allowed, cpus_online, cpus_possible.
    """
    from ._child import probe_abi

    abi = probe_abi()
    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "glibc": _glibc_version(),
        "owner": abi["owner"],
        "rseq_available": bool(abi["available"]),
        "syscall_errno": abi["syscall_errno"],
        "rseq_offset": abi["rseq_offset"],
        "glibc_rseq_size": abi["glibc_size"],
        "glibc_rseq_flags": abi["glibc_flags"],
        "feature_size": abi["feature_size"],
        "align": abi["align"],
        "usable_size": abi["usable_size"],
        "glibc_cpu_id": abi["glibc_cpu_id"],
        "mm_cid_usable": bool(abi["mm_cid_usable"]),
        "node_id_usable": bool(abi["node_id_usable"]),
        "own_area_size": abi["own_size"],
        "perf_tracepoints": perf_tracepoints(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "cpus_online": _read("/sys/devices/system/cpu/online"),
        "cpus_possible": _read("/sys/devices/system/cpu/possible"),
    }
