"""``capabilities()``: the fingerprint of what this machine offers rseq code."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


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
    """True when the ``rseq:rseq_ip_fixup`` tracepoint is visible to this uid.

    Looks only: mounts nothing, and an unreadable tracefs (non-root) is False.
    """
    from .perf import find_tracepoint

    return find_tracepoint(mount=False)[0]


MEMBARRIER_PRIVATE_EXPEDITED_RSEQ = 1 << 7


def membarrier_rseq() -> bool:
    """True when the kernel offers ``MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ`` (queried only)."""
    from .._native import load

    mask = int(load()[1].prseq_membarrier_query())
    return mask > 0 and bool(mask & MEMBARRIER_PRIVATE_EXPEDITED_RSEQ)


def cgroup_info() -> dict[str, Any]:
    """cgroup version holding cpusets, whether groups can be made, and why not."""
    from ..errors import CapabilityMissing
    from . import cpuset

    try:
        host = cpuset.find_host()
    except CapabilityMissing as exc:
        versions = {fstype for _, fstype, _ in cpuset._mounts()}
        version = 1 if "cgroup" in versions else 2 if "cgroup2" in versions else None
        return {"cgroup_version": version, "cpuset_writable": False, "cpuset_reason": str(exc)}
    return {"cgroup_version": host.version, "cpuset_writable": True, "cpuset_reason": None}


def capabilities() -> dict[str, Any]:
    """Return the fingerprint as a JSON-safe mapping.

    Keys: kernel, machine, glibc, owner (who registered this thread's area:
    ``"glibc"``, ``"own"`` or ``"none"``), rseq_available, syscall_errno,
    rseq_offset, glibc_rseq_size, glibc_rseq_flags, feature_size, align,
    usable_size, glibc_cpu_id, mm_cid_usable, node_id_usable, own_area_size,
    perf_tracepoints, membarrier_rseq, cgroup_version (of the hierarchy with
    cpusets), cpuset_writable, cpuset_reason, cpus_allowed, cpus_online,
    cpus_possible.
    """
    from .abi import probe_abi

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
        "membarrier_rseq": membarrier_rseq(),
        **cgroup_info(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "cpus_online": _read("/sys/devices/system/cpu/online"),
        "cpus_possible": _read("/sys/devices/system/cpu/possible"),
    }
