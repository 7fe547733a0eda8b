"""The host fingerprint and the text tables the gate and the pytest summary print."""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import sys
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from .._version import __version__

VOLATILE_KEYS = frozenset({"glibc_cpu_id"})
"""Fingerprint keys that differ between processes of one host (left out of ``host_id``)."""


@lru_cache(maxsize=1)
def host_fingerprint() -> dict[str, Any]:
    """This host's fingerprint: ``capabilities()`` plus host name and Python.

    The native core is not needed: without it, ``native_error`` says why;
    ``probe_error`` holds any other failure of a probe.
    """
    fp: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "pytest_rseq": __version__,
    }
    try:
        from ..host.capabilities import capabilities

        fp.update(capabilities())
    except Exception as exc:  # the fingerprint must never break a run
        # Only a missing or stale core is "no native core"; anything else is a probe bug.
        key = "native_error" if isinstance(exc, ImportError) else "probe_error"
        fp[key] = f"{type(exc).__name__}: {exc}"
    return fp


def host_id(fp: dict[str, Any]) -> str:
    """A short stable name for a fingerprint: host name plus a hash of the rest."""
    stable = {k: v for k, v in fp.items() if k not in VOLATILE_KEYS}
    text = json.dumps(stable, sort_keys=True, default=str)
    return f"{fp.get('hostname', '?')}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _cpus(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def fingerprint_lines(fp: dict[str, Any]) -> list[str]:
    """The fingerprint in two lines (kernel, glibc, registration; cgroup and CPUs)."""
    if "native_error" in fp:
        first = f"kernel {platform.release()}; native core unavailable: {fp['native_error']}"
    elif "probe_error" in fp:
        first = f"kernel {platform.release()}; probing this host failed: {fp['probe_error']}"
    else:
        avail = "available" if fp.get("rseq_available") else "UNAVAILABLE"
        first = (
            f"kernel {fp.get('kernel')} {fp.get('machine')}, {fp.get('glibc')}; rseq {avail}, "
            f"area owner {fp.get('owner')} (__rseq_size {fp.get('glibc_rseq_size')}, "
            f"feature size {fp.get('feature_size')}, align {fp.get('align')}, "
            f"mm_cid {'yes' if fp.get('mm_cid_usable') else 'no'})"
        )
    if fp.get("cpuset_writable"):
        cpuset = f"cgroup v{fp.get('cgroup_version')} cpuset writable"
    elif "cgroup_version" in fp:
        cpuset = f"cpuset not writable ({fp.get('cpuset_reason') or 'no cpuset cgroup'})"
    else:
        cpuset = "cpuset unknown"
    second = (
        f"{cpuset}; CPUs allowed {_cpus(fp.get('cpus_allowed', '?'))}, "
        f"online {fp.get('cpus_online', '?')}"
    )
    return [first, second]


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Left-aligned text columns, numbers right-aligned, two spaces apart."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [bool(cells) and all(_is_number(r[i]) for r in cells) for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if numeric[i] else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(list(headers)), line(["-" * w for w in widths]), *(line(r) for r in cells)]


def _is_number(text: str) -> bool:
    return text.replace(",", "").replace(".", "").replace("/", "").isdigit()


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
