"""Metrics rows, host fingerprints, text tables, the per-CPU chart and the JSON.

Everything here handles JSON-safe primitives only: a row is built on the
process that ran the test, rides on the pytest report (through xdist too),
and is rendered or written on the controller.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from .._version import __version__
from ..engine.result import StressResult

BAR_WIDTH = 40
VOLATILE_KEYS = frozenset({"glibc_cpu_id"})
"""Fingerprint keys that differ between processes of one host (left out of ``host_id``)."""
ROW_FIELDS = (
    "workload",
    "path",
    "registration",
    "threads",
    "ops",
    "ops_per_s",
    "expected",
    "observed",
    "aborts",
    "migrations",
    "signals_delivered",
    "affinity_changes",
    "cpuset_shifts",
    "threads_started",
    "forks",
    "membarriers",
    "invariant_violations",
    "crash",
    "seed",
    "duration_s",
    "per_cpu",
    "ok",
    "error",
    "reasons",
    "repro",
    "verdict",
    "aborts_by_cause",
)


def make_row(
    result: StressResult, *, test: str, index: int, worker: str, host: str
) -> dict[str, Any]:
    """One JSON-safe row for the summary and the JSON report."""
    data = result.to_dict()
    row: dict[str, Any] = {"test": test, "index": index, "worker": worker, "host": host}
    row.update({k: data[k] for k in ROW_FIELDS})
    row["churn"] = max(0, result.threads_started - result.threads)
    row["showed_a_bug"] = result.showed_a_bug
    return row


def row_verdict(row: dict[str, Any]) -> str:
    """The run's own verdict: ``ok``, ``bug``, ``no-evidence`` or ``error``."""
    return str(row["verdict"])


def status(row: dict[str, Any]) -> str:
    """What the summary shows for a run: its verdict, read with the test's outcome.

    ``FAILED: <verdict>`` when the test failed; ``caught`` when the run showed
    a bug and the test passed (it expected the bug); ``missed`` for a canary
    run that showed none; otherwise the verdict.
    """
    word = row_verdict(row)
    if word == "ok" and str(row.get("workload", "")).startswith("canary_"):
        word = "missed"
    outcome = row.get("outcome", "passed")
    if outcome == "failed":
        return f"FAILED: {word}"
    if outcome == "skipped":
        return f"skipped: {word}"
    return "caught" if word == "bug" else word


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Runs per status, failures grouped as ``failed (<verdict>)``; failures first."""
    counts: dict[str, int] = {}
    for row in rows:
        shown = status(row)
        key = f"failed ({shown.split(': ', 1)[1]})" if shown.startswith("FAILED: ") else shown
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (not kv[0].startswith("failed"), kv[0])))


def totals_line(rows: Sequence[dict[str, Any]]) -> str:
    """E.g. ``4 stress run(s): 2 failed (bug), 2 ok``."""
    parts = ", ".join(f"{n} {what}" for what, n in totals(rows).items())
    return f"{len(rows)} stress run(s): {parts}"


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


def per_cpu_totals(rows: Iterable[dict[str, Any]]) -> list[int]:
    """Ops per CPU shard, summed over ``rows``."""
    totals: list[int] = []
    for row in rows:
        for i, value in enumerate(row.get("per_cpu") or []):
            if i >= len(totals):
                totals.extend([0] * (i + 1 - len(totals)))
            totals[i] += int(value)
    return totals


def per_cpu_chart(rows: Iterable[dict[str, Any]], bar: str = "#") -> list[str]:
    """A bar per CPU shard: how the run's ops spread over the CPUs."""
    totals = per_cpu_totals(rows)
    grand = sum(totals)
    if not grand:
        return ["per-CPU distribution: no ops counted"]
    lines = ["per-CPU distribution of counted ops (all runs):"]
    peak = max(totals)
    for cpu, value in enumerate(totals):
        length = round(BAR_WIDTH * value / peak) if peak else 0
        lines.append(
            f"  cpu {cpu:>3} {bar * length:<{BAR_WIDTH}} {100 * value / grand:5.1f}%  {value:,}"
        )
    return lines


def json_document(
    rows: Sequence[dict[str, Any]],
    hosts: dict[str, dict[str, Any]],
    *,
    seed: int,
    flags: Sequence[str],
    controller: dict[str, Any],
) -> dict[str, Any]:
    """The ``--rseq-json`` document: rows, per-CPU totals, and each host's fingerprint."""
    workers: dict[str, set[str]] = {}
    for row in rows:
        workers.setdefault(row["host"], set()).add(row["worker"])
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return {
        "pytest_rseq": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": seed,
        "flags": list(flags),
        "controller": controller,
        "hosts": [
            {"id": hid, "workers": sorted(workers.get(hid, ())), "fingerprint": fp}
            for hid, fp in sorted(hosts.items())
        ],
        "rows": list(rows),
        "per_cpu": per_cpu_totals(rows),
        "verdicts": counts,
        "totals": totals(rows),
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` (parents created), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
