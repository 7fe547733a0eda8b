"""Why a run that saw nothing wrong is no evidence: the missing items, explained.

The native core decides what is missing (``PRSEQ_EVIDENCE_*`` bits in
``struct prseq_result.evidence_missing``); this names each item, says what to
change so the run shows it, and what ended the run.
"""

from __future__ import annotations

import errno
from typing import Any

from .chaos import Chaos
from .deadlines import stall_allowance_s
from .injectors import INJECTORS, Injector
from .spec import RunSpec

# The PRSEQ_EVIDENCE_* bits of the native core, by name (values read from the core).
EVIDENCE_BITS = (
    "aborts",
    "signal",
    "membarrier",
    "migration",
    "churn",
    "fork",
    "hotplug",
    "concurrency",
)


EVIDENCE_OWNERS: dict[str, Injector] = {
    inj.evidence: inj
    for inj in INJECTORS
    if inj.evidence and sum(i.evidence == inj.evidence for i in INJECTORS) == 1
}
"""The evidence items one injector alone asks for (a migration has two: affinity, cpuset)."""


def missing_evidence(mask: int) -> list[str]:
    """Names of the ``PRSEQ_EVIDENCE_*`` bits set in ``mask`` (the native core decides)."""
    from .._native import load

    lib = load()[1]
    return [n for n in EVIDENCE_BITS if mask & getattr(lib, f"PRSEQ_EVIDENCE_{n.upper()}")]


def _min_overlaps() -> int:
    """Overlapped migrations an rseq run of 2+ threads must show (the native core's rule)."""
    from .._native import load

    return int(load()[1].PRSEQ_MIN_OVERLAPPED_MIGRATIONS)


def _stall_note(run: dict[str, Any]) -> str:
    """How the run's stall time (no worker ended a batch) moved the cap, if it did."""
    stalled = float(run.get("stalled_s", 0.0))
    if stalled < 0.001:
        return ""
    credit = min(stalled, stall_allowance_s())
    return (
        f", moved by {credit:.2f} s: no worker ended a batch for {stalled:.2f} s of the run, "
        "a stopped or starved process"
    )


def _why_missing(name: str, chaos: Chaos, run: dict[str, Any]) -> str:
    """What the run did not show, and what to change so it does."""
    secs = f"{run.get('duration_s', 0.0):.2f} s"
    rseq = run.get("path") == "rseq"
    owner = EVIDENCE_OWNERS.get(name)
    asked = f"{owner.field}={getattr(chaos, owner.field):g} requested but" if owner else ""
    if name == "aborts":
        return (
            f"no critical section was aborted in {secs}: raise cs_delay or signals_hz, "
            "oversubscribe the CPUs, or use a longer duration"
        )
    if name == "signal":
        if not rseq:
            return f"{asked} no signal reached a worker"
        return (
            f"{asked} no signal aborted a section in "
            f"{secs} ({run.get('signals_delivered', 0)} delivered): raise signals_hz or "
            "cs_delay, or use a longer duration"
        )
    if name == "membarrier":
        if not rseq:
            return f"{asked} no fence was issued"
        return (
            f"{asked} no membarrier fence "
            f"aborted a section in {secs} ({run.get('membarriers', 0)} fences): raise "
            "membarrier_hz or cs_delay, or use a longer duration"
        )
    if name == "migration":
        text = (
            f"no worker migrated between CPUs in {secs}: add or raise affinity_hz "
            "(Chaos.default() has it), or use a longer duration"
        )
        if rseq and int(run.get("threads", 0)) > 1:
            text = (
                f"{run.get('overlapped_migrations', 0)} overlapped migration(s) in {secs}, "
                f"{_min_overlaps()} needed (a worker moved while another kept running on "
                f"the CPU it left; {run.get('migrations', 0)} migrations in all): add or "
                "raise affinity_hz (Chaos.default() has it), or use a longer duration"
            )
        if chaos.cpuset_hz > 0:
            last = errno.errorcode.get(run.get("cpuset_errno", 0), run.get("cpuset_errno"))
            text += (
                f" (cpuset.cpus: {run.get('cpuset_shifts', 0)} writes, "
                f"{run.get('cpuset_errors', 0)} refused, last errno {last}, "
                f"last list {run.get('cpuset_last')!r})"
            )
        return text
    if name == "churn":
        return (
            f"{asked} no worker thread was replaced "
            f"(threads_started={run.get('threads_started', 0)}): raise churn_hz or the duration"
        )
    if name == "fork":
        return f"{asked} no fork child completed its ops: raise fork_hz or the duration"
    if name == "hotplug":
        return f"{asked} no CPU went offline or online"
    return (
        f"the workers were seen on {run.get('distinct_cpus', 0)} CPU(s), never in parallel "
        "on two: use more threads or a longer duration"
    )


def evidence_reasons(spec: RunSpec, run: dict[str, Any], label: str) -> list[str]:
    """Why a run that saw nothing wrong is no evidence (empty: it is).

    The native core decides (``run["evidence_missing"]``, ``PRSEQ_EVIDENCE_*``);
    this explains each missing item, what to change, and what ended the run.
    """
    missing = missing_evidence(int(run.get("evidence_missing", 0)))
    if not missing:
        return []
    if label == "fallback" and spec.path == "both":
        ended = "the fallback half runs the rseq half's op counts and is never extended"
    elif spec.ops_per_thread:
        ended = "the op budget (ops_per_thread) ended the run first: raise it or drop it"
    else:
        ended = (
            f"the run went on {run.get('extended_s', 0.0):.2f} s past its duration, up to "
            f"the evidence cap ({spec.resolved_evidence_cap:g}x the duration{_stall_note(run)})"
        )
    return [f"no evidence ({label}): {_why_missing(n, spec.chaos, run)}; {ended}" for n in missing]
