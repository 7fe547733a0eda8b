"""Report rows: one JSON-safe row per stress run, its status, the totals, the per-CPU chart
and the ``--rseq-json`` document.

A row is built on the process that ran the test, rides on the pytest report
(through xdist too), and is rendered or written on the controller. Its fields
are the :class:`StressResult`'s (``details`` left out), counters included:
a counter added to the C result struct shows up here with no list to extend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from .._version import __version__
from ..engine.result import StressResult

BAR_WIDTH = 40
ROW_FIELDS: tuple[str, ...] = (
    *(f.name for f in fields(StressResult) if f.name != "details"),
    "ops_per_s",
)
"""The result's fields a row carries (every field but ``details``, plus ``ops_per_s``)."""


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
